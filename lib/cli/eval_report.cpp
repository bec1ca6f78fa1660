#include "cli/eval_report.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <vector>

namespace meddiff::cli {

namespace {

// One row per class: the number of volumes and, per label, real / synthetic mean median (relative difference).
std::string class_table(const nlohmann::json& labels, const nlohmann::json& by_class) {
  std::string md = "| class | volumes real / synthetic |";
  for (const auto& row : labels) md += fmt::format(" {} |", row["name"].get<std::string>());
  md += "\n|---|---|";
  for (size_t k = 0; k < labels.size(); ++k) md += "---|";
  md += "\n";
  for (const auto& c : by_class) {
    int64_t nr = 0, ns = 0;
    for (const auto& row : c["table"]) {
      nr = std::max(nr, row["real"]["volumes"].get<int64_t>());
      ns = std::max(ns, row["synthetic"]["volumes"].get<int64_t>());
    }
    md += fmt::format("| {} | {} / {} |", c["class"].get<int64_t>(), nr, ns);
    for (const auto& row : c["table"]) {
      if (row["real"]["volumes"].get<int64_t>() == 0 || row["synthetic"]["volumes"].get<int64_t>() == 0) {
        md += " absent |";
        continue;
      }
      md += fmt::format(" {:.0f} / {:.0f}{} |", row["real"]["median_mean"].get<double>(), row["synthetic"]["median_mean"].get<double>(),
                        row.contains("median_relative_difference")
                            ? fmt::format(" ({:+.0f} %)", 100 * row["median_relative_difference"].get<double>())
                            : std::string());
    }
    md += "\n";
  }
  return md;
}

}  // namespace

std::string eval_report_markdown(const nlohmann::json& j, const std::string& vqgan_path, size_t closest) {
  const auto& fj = j["fidelity"];
  const auto& in = j["inputs"];
  const auto& counts = j["counts"];
  const bool audited = j.contains("memorisation");
  const auto& edges = j["intensity"]["bin_edges"];
  const size_t bins = edges.size() - 1;
  const std::string units = j["intensity"]["units"].get<std::string>();
  const double inter = j["intensity"]["histogram_intersection"].get<double>();
  std::string md = fmt::format(
      "# meddiff eval\n\nReal (held-out): {} volumes from `{}`; synthetic: {} from `{}`{}.\nVolumes prepared with the data settings "
      "of `{}` (step {}).\n\n## Fidelity and diversity\n\n| metric | value |\n|---|---|\n"
      "| Fréchet distance ({}) | {:.4f} |\n| precision / recall (k = {}) | {:.3f} / {:.3f} |\n"
      "| density / coverage | {:.3f} / {:.3f} |\n| mean MS-SSIM, synthetic pairs | {:.4f} |\n| mean MS-SSIM, real pairs | {:.4f} |\n"
      "| intensity histogram intersection | {:.4f} |\n\nFeatures: {} ({} values). Fréchet distance of Gaussians fitted to the two "
      "feature sets (Heusel et al.), k-NN precision/recall (Kynkäänniemi et al.), density/coverage (Naeem et al.). MS-SSIM: {} "
      "random pairs per set, seed {}.\n",
      counts["real"].get<size_t>(), in["real"].get<std::string>(), counts["synthetic"].get<size_t>(), in["synthetic"].get<std::string>(),
      audited ? fmt::format("; training: {}", counts["train"].get<size_t>()) : "", vqgan_path,
      in["vqgan_step"].get<int64_t>(), fj["features"].get<std::string>(), fj["frechet_distance"].get<double>(),
      fj["k_used"].get<int64_t>(), fj["precision"].get<double>(), fj["recall"].get<double>(), fj["density"].get<double>(),
      fj["coverage"].get<double>(), j["diversity"]["ms_ssim_synthetic"].get<double>(), j["diversity"]["ms_ssim_real"].get<double>(),
      inter, fj["protocol"].get<std::string>(), fj["feature_dim"].get<int64_t>(), j["settings"]["pairs"].get<int64_t>(),
      j["settings"]["seed"].get<uint64_t>());
  if (fj.contains("frechet_distance_planes"))
    md += fmt::format("\nFréchet distance per plane: axial {:.4f}, coronal {:.4f}, sagittal {:.4f}.\n",
                      fj["frechet_distance_planes"]["axial"].get<double>(), fj["frechet_distance_planes"]["coronal"].get<double>(),
                      fj["frechet_distance_planes"]["sagittal"].get<double>());
  if (fj["features"] != "vqgan") {
    const auto& v = j["fidelity_by_features"]["vqgan"];
    md += fmt::format("\nIn the VQ-GAN latent feature space: Fréchet distance {:.4f}, precision / recall {:.3f} / {:.3f}.\n",
                      v["frechet_distance"].get<double>(), v["precision"].get<double>(), v["recall"].get<double>());
  }
  md += fmt::format("\n## Intensities\n\n![intensity histograms](histogram.png)\n\nHistograms of {} bins from {:.0f} to {:.0f} {}: "
                    "grey bars real, white line synthetic (height: square root of the voxel fraction). Intersection {:.4f} (1 = "
                    "identical).\n", bins, edges.front().get<double>(), edges.back().get<double>(), units, inter);
  if (j.contains("labels")) {
    md += fmt::format("\n## Per label ({})\n\n| label | real: volumes, share, median intensity | synthetic: volumes, share, median "
                      "intensity | difference / real sd | edge step real / synthetic (kept) | edge agreement real / synthetic |\n"
                      "|---|---|---|---|---|---|\n", units);
    for (const auto& row : j["labels"]["table"]) {
      auto cell = [](const nlohmann::json& c) {
        if (c["volumes"].get<int64_t>() == 0) return std::string("absent");
        return fmt::format("{}, {:.2f} %, {:.0f} ± {:.0f}", c["volumes"].get<int64_t>(), 100 * c["fraction"].get<double>(),
                           c["median_mean"].get<double>(), c["median_sd"].get<double>());
      };
      std::string edge = "-";
      if (row["real"].contains("edge_step") && row["synthetic"].contains("edge_step"))
        edge = fmt::format("{:.0f} / {:.0f}{}", row["real"]["edge_step"]["mean"].get<double>(), row["synthetic"]["edge_step"]["mean"].get<double>(),
                           row.contains("edge_step_kept") ? fmt::format(" ({:.0f} %)", 100 * row["edge_step_kept"].get<double>()) : "");
      std::string agreement = "-";
      if (row["real"].contains("edge_agreement") && row["synthetic"].contains("edge_agreement"))
        agreement = fmt::format("{:.2f} / {:.2f}", row["real"]["edge_agreement"]["mean"].get<double>(),
                                row["synthetic"]["edge_agreement"]["mean"].get<double>());
      md += fmt::format("| {} ({}) | {} | {} | {} | {} | {} |\n", row["name"].get<std::string>(), row["label"].get<int64_t>(), cell(row["real"]),
                        cell(row["synthetic"]),
                        row.contains("median_difference_in_real_sd") ? fmt::format("{:+.2f}", row["median_difference_in_real_sd"].get<double>()) : "-",
                        edge, agreement);
    }
    if (j["labels"].contains("by_class"))
      md += "\nPer class (mean median intensity inside each label, real / synthetic, and the synthetic's relative difference):\n\n" +
            class_table(j["labels"]["table"], j["labels"]["by_class"]);
    if (j["labels"].contains("by_class_vs_train"))
      md += "\nThe same against the training cases (`--train`), whose intensities the model learned and whose label maps the mask "
            "bank's pairs reuse: what differs here is the model's error, what differs only above is the held-out set's difference "
            "from the training set:\n\n" +
            class_table(j["labels"]["table"], j["labels"]["by_class_vs_train"]);
  }
  if (j.contains("downstream")) {
    const auto& d = j["downstream"];
    md += fmt::format("\n## Downstream segmentation\n\n**{}.**\n\n{}. Real training cases: {} (from `{}`), synthetic pairs: {}, "
                      "held-out cases: {}.\n\n| label | Dice: real | real + synthetic | synthetic | gain (per seed) | verdict | "
                      "ASSD mm: real | real + synthetic |\n|---|---|---|---|---|---|---|---|\n",
                      d["summary"].get<std::string>(), d["protocol"].get<std::string>(), d["counts"]["real_train"].get<int64_t>(),
                      d["inputs"]["segmenter_training"].get<std::string>(), d["counts"]["synthetic"].get<int64_t>(),
                      d["counts"]["held_out"].get<int64_t>());
    auto cell = [](const nlohmann::json& row, const char* metric, const char* cfg) {
      if (!row.contains(metric) || !row[metric].contains(cfg) || row[metric][cfg]["seeds"].empty()) return std::string("-");
      return fmt::format("{:.3f}", row[metric][cfg]["mean"].get<double>());
    };
    for (const auto& row : d["labels"]) {
      std::string gain = "-", verdict = row.value("note", std::string("-"));
      if (row.contains("gain")) {
        gain = fmt::format("{:+.3f} ({:+.3f})", row["gain"]["mean"].get<double>(),
                           fmt::join(row["gain"]["seeds"].get<std::vector<double>>(), ", "));
        verdict = row["gain"]["verdict"].get<std::string>();
      }
      md += fmt::format("| {} ({}) | {} | {} | {} | {} | {} | {} | {} |\n", row["name"].get<std::string>(), row["label"].get<int64_t>(),
                        cell(row, "dice", "real"), cell(row, "dice", "real+synthetic"), cell(row, "dice", "synthetic"), gain, verdict,
                        cell(row, "assd_mm", "real"), cell(row, "assd_mm", "real+synthetic"));
    }
  }
  if (audited) {
    const auto& mj = j["memorisation"];
    md += fmt::format(
        "\n## Memorisation audit\n\n{}.\n\n| nearest-training NCC | median | max |\n|---|---|---|\n| held-out real | {:.4f} | {:.4f} |\n"
        "| synthetic | {:.4f} | {:.4f} |\n\nNear-copy thresholds: NCC > {:.4f} and distance ratio < {:.3f} (smallest held-out ratio "
        "{:.3f}; {}). Flagged: {} of {}{}.\n\nClosest pairs by distance ratio (synthetic on top, nearest training volume below):\n\n",
        mj["method"].get<std::string>(), mj["held_out_ncc"]["median"].get<double>(), mj["held_out_ncc"]["max"].get<double>(),
        mj["synthetic_ncc"]["median"].get<double>(), mj["synthetic_ncc"]["max"].get<double>(), mj["threshold_ncc"].get<double>(),
        mj["threshold_distance_ratio"].get<double>(), mj["held_out_distance_ratio"]["min"].get<double>(),
        mj["threshold_rule"].get<std::string>(), mj["near_copies"].size(), counts["synthetic"].get<size_t>(),
        mj["near_copies"].empty() ? "" : fmt::format(": {}", fmt::join(mj["near_copies"].get<std::vector<std::string>>(), ", ")));
    for (size_t n = 0; n < closest; ++n) md += fmt::format("![closest pair {}](closest_{}.png)\n", n + 1, n + 1);
  }
  return md;
}

}  // namespace meddiff::cli
