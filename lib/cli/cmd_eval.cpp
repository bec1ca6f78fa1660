// meddiff eval: fidelity, diversity and a memorisation audit of a synthetic dataset.
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/eval_sets.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/log.h"
#include "core/output_policy.h"
#include "core/progress.h"
#include "data/distribution_metrics.h"
#include "data/label_statistics.h"
#include "data/manifest.h"
#include "data/metrics.h"
#include "data/nearest_volume.h"
#include "data/plot.h"
#include "data/preview.h"
#include "io/png.h"
#include "io/volume_reader.h"
#include "pipeline/autoencoder.h"
#include "pipeline/device.h"
#include "pipeline/eval_features.h"
#include "pipeline/loaded_models.h"

#include <algorithm>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <regex>

namespace meddiff::cli {
namespace {
namespace fs = std::filesystem;

// Random distinct pairs (i, j), i < j, from a fixed seed.
std::vector<std::pair<size_t, size_t>> random_pairs(size_t n, int64_t count, uint64_t seed) {
  std::vector<std::pair<size_t, size_t>> all;
  for (size_t i = 0; i < n; ++i)
    for (size_t j = i + 1; j < n; ++j) all.emplace_back(i, j);
  std::mt19937_64 rng(seed);
  std::shuffle(all.begin(), all.end(), rng);
  if (static_cast<int64_t>(all.size()) > count) all.resize(static_cast<size_t>(count));
  return all;
}

nlohmann::json summary(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  double sum = 0;
  for (double x : v) sum += x;
  auto q = [&](double p) { return v[static_cast<size_t>(std::round(p * static_cast<double>(v.size() - 1)))]; };
  return {{"n", v.size()}, {"mean", sum / static_cast<double>(v.size())}, {"min", v.front()}, {"median", q(0.5)}, {"max", v.back()}};
}

// Mean MS-SSIM of random pairs of a set, reading the two volumes of each pair again.
double mean_ms_ssim(const SetSummary& set, const DataParams& p, int64_t pairs, uint64_t seed, const std::string& what) {
  auto chosen = random_pairs(set.entries.size(), pairs, seed);
  double sum = 0;
  Progress progress("MS-SSIM " + what, static_cast<int64_t>(chosen.size()));
  int64_t done = 0;
  for (auto [i, j] : chosen) {
    sum += ms_ssim3d(load_eval_volume(set.entries[i], p).x[0], load_eval_volume(set.entries[j], p).x[0]);
    progress.update(++done);
  }
  progress.finish();
  return sum / static_cast<double>(std::max<size_t>(1, chosen.size()));
}

// Voxel counts as fractions.
std::vector<double> fractions(const torch::Tensor& counts) {
  auto h = counts / counts.sum().clamp_min(1);
  return std::vector<double>(h.data_ptr<double>(), h.data_ptr<double>() + h.numel());
}

// (1 - NCC of the nearest) / (1 - NCC of the second-nearest): small for a copy of one training scan.
double distance_ratio(const NccIndex::Match& m) {
  if (m.second < -0.5) return 1.0;
  return (1 - m.ncc) / std::max(1e-12, 1 - m.second);
}

// The memorisation audit's image: at most 64 voxels along any axis (average pooling), detail band.
torch::Tensor audit_grid(const torch::Tensor& x) {  // [1, D, H, W] -> [d, h, w]
  int64_t m = std::max({x.size(1), x.size(2), x.size(3)});
  int64_t f = (m + 63) / 64;
  auto v = x.unsqueeze(0).to(torch::kFloat);
  if (f > 1) v = torch::avg_pool3d(v, f);
  return band_pass(v[0][0]);
}


// Fidelity of one feature space: Fréchet distance and the k-NN metrics.
nlohmann::json fidelity(const torch::Tensor& real, const torch::Tensor& synth, int64_t k, const std::string& features,
                        const std::string& protocol) {
  ManifoldMetrics mm = manifold_metrics(real, synth, k);
  return {{"features", features}, {"protocol", protocol}, {"feature_dim", real.size(1)},
          {"frechet_distance", frechet_distance(real, synth)}, {"precision", mm.precision}, {"recall", mm.recall},
          {"density", mm.density}, {"coverage", mm.coverage}, {"k_used", mm.k}};
}

// Scanner-like units of prepared volumes: HU for CT (the fixed window), MR output units (0 at the
// window's low end, data.mr_output_max at its high end) for MR, whose windows differ per volume.
struct Units {
  std::string name;
  double lo = 0, hi = 1;
  torch::Tensor operator()(const torch::Tensor& x) const { return lo + (x + 1) * (0.5 * (hi - lo)); }
};

Units units_of(const DataParams& d) {
  if (d.modality_enum() == Modality::CT) return {"HU", d.ct_window[0], d.ct_window[1]};
  return {fmt::format("MR output units (0 and {:.0f} = the per-volume window's ends)", d.mr_output_max), 0.0, d.mr_output_max};
}

nlohmann::json label_table(const std::vector<LabelStatistics>& real, const std::vector<LabelStatistics>& synth,
                           const std::vector<std::string>& names) {
  nlohmann::json rows = nlohmann::json::array();
  for (size_t k = 0; k < real.size(); ++k) {
    const auto& r = real[k];
    const auto& s = synth[k];
    nlohmann::json row = {{"label", k}, {"name", k < names.size() ? names[k] : (k == 0 ? "background" : fmt::format("label_{}", k))},
                          {"real", {{"volumes", r.volumes}, {"fraction", r.fraction_mean}, {"median_mean", r.median_mean}, {"median_sd", r.median_sd}}},
                          {"synthetic", {{"volumes", s.volumes}, {"fraction", s.fraction_mean}, {"median_mean", s.median_mean}, {"median_sd", s.median_sd}}}};
    // how far the synthetic mean median lies from the real one, in real standard deviations
    if (r.volumes > 1 && s.volumes > 0 && r.median_sd > 0) row["median_difference_in_real_sd"] = (s.median_mean - r.median_mean) / r.median_sd;
    rows.push_back(row);
  }
  return rows;
}

}  // namespace

int run_eval(const Args_t& args) {
  Args a("eval",
         "Compare synthetic volumes with real ones (Fréchet distance, precision/recall, density/coverage in a feature space; "
         "MS-SSIM diversity; intensity histograms; per-label statistics) and audit them for copies of training volumes. "
         "Writes eval.json, report.md and PNG plots to --out.");
  a.add()("real", "Held-out real volumes: a folder or manifest (not used for training)", cxxopts::value<std::string>())
      ("synthetic", "Synthetic volumes: a sample folder, its manifest.jsonl, a folder or a manifest", cxxopts::value<std::string>())
      ("train", "Training volumes for the memorisation audit: a folder or manifest", cxxopts::value<std::string>())
      ("vqgan", "VQ-GAN checkpoint: its data settings prepare every volume, its encoder gives the latent features", cxxopts::value<std::string>())
      ("features", "Feature space of the fidelity numbers: vqgan (the VQ-GAN's latents), 3d:FILE (a TorchScript network "
                   "taking [B,C,D,H,W] volumes, e.g. MedicalNet) or 2d:FILE (a TorchScript network applied to every slice of the "
                   "three planes, the MAISI protocol)", cxxopts::value<std::string>()->default_value("vqgan"))
      ("feature-input", "Input of a --features network: zscore (per volume), unit ([0,1]) or raw ([-1,1])",
       cxxopts::value<std::string>()->default_value("zscore"))
      ("feature-channels", "Input channels of a --features network (the volume or slice repeated)", cxxopts::value<int64_t>()->default_value("1"))
      ("feature-size", "Resample volumes (3d: D,H,W) or slices (2d: H,W) for the --features network (default: as they are)",
       cxxopts::value<std::string>()->default_value(""))
      ("out", "Folder for eval.json, report.md and the PNGs", cxxopts::value<std::string>())
      ("seed", "Seed of the random pairs", cxxopts::value<uint64_t>()->default_value("0"))
      ("pairs", "Random pairs per set for MS-SSIM", cxxopts::value<int64_t>()->default_value("32"))
      ("k", "Neighbours for precision/recall and density/coverage", cxxopts::value<int64_t>()->default_value("5"))
      ("max-shift", "Audit: shifts (voxels of the audit grid, per axis) searched for the best correlation", cxxopts::value<int64_t>()->default_value("2"))
      ("device", "auto, cpu, cuda, cuda:N", cxxopts::value<std::string>()->default_value("auto"))
      ("force", "Replace an earlier eval in --out");
  auto r = a.parse(args);
  const std::string real_src = required(r, "real"), synth_src = required(r, "synthetic"), vq_path = required(r, "vqgan");
  const fs::path out = required(r, "out");
  const uint64_t seed = r["seed"].as<uint64_t>();
  const int64_t pairs = r["pairs"].as<int64_t>(), k = r["k"].as<int64_t>(), max_shift = r["max-shift"].as<int64_t>();
  if (pairs < 1 || k < 1 || max_shift < 0 || max_shift > 8) usage_fail("--pairs and --k must be >= 1 and --max-shift within 0..8");
  const std::string features = r["features"].as<std::string>();
  FeatureInput fin;
  fin.norm = r["feature-input"].as<std::string>();
  fin.channels = r["feature-channels"].as<int64_t>();
  if (fin.norm != "zscore" && fin.norm != "unit" && fin.norm != "raw") usage_fail("--feature-input must be zscore, unit or raw (got '{}')", fin.norm);
  if (fin.channels < 1 || fin.channels > 16) usage_fail("--feature-channels must be within 1..16 (got {})", fin.channels);
  if (auto sz = r["feature-size"].as<std::string>(); !sz.empty()) {
    const bool two = features.rfind("2d:", 0) == 0;
    if (two) {
      auto v = parse_int2(sz, "--feature-size");
      fin.size = {1, v[0], v[1]};
    } else {
      fin.size = parse_int3(sz, "--feature-size");
    }
    for (size_t i = two ? 1 : 0; i < 3; ++i)
      if (fin.size[i] < 4 || fin.size[i] > 1024) usage_fail("--feature-size: sizes must be within 4..1024 (got '{}')", sz);
  }
  OutputRules rules;
  rules.inputs = {real_src, synth_src, vq_path};
  if (r.count("train")) rules.inputs.push_back(r["train"].as<std::string>());
  if (features != "vqgan") rules.inputs.push_back(features.substr(features.find(':') + 1));
  rules.force = r.count("force") > 0;
  rules.folder = true;
  rules.owned_what = "an eval written by meddiff";
  rules.foreign_entry = [](const fs::path& d) -> std::string {
    static const std::regex ours(R"((eval\.json|report\.md|closest_\d+\.png|histogram\.png|\.meddiff.*))");
    for (const auto& e : fs::directory_iterator(d))
      if (!std::regex_match(e.path().filename().string(), ours)) return "'" + e.path().filename().string() + "'";
    return "";
  };
  check_output(out, rules);
  torch::Device device = choose_device(r["device"].as<std::string>());
  std::optional<FeatureNetwork> net;
  if (features != "vqgan") net.emplace(features, device);
  LoadedVQGAN vq = load_vqgan(vq_path, device);
  const Units units = units_of(vq.data);
  const int64_t bins = 64;
  const bool audited = r.count("train") > 0;
  // One pass over each set, one volume in memory at a time.
  SummaryOptions so;
  so.vqgan = &vq.model;
  so.run.budget_bytes = memory_budget_bytes(vq.sample.max_memory_gib, device);
  so.device = device;
  so.net = net ? &*net : nullptr;
  so.net_input = fin;
  so.bins = bins;
  so.units = units;
  if (audited) so.audit_grid = audit_grid;
  so.keep_latents = audited;
  SetSummary real = summarise_set(real_src, vq.data, "real", so), synth = summarise_set(synth_src, vq.data, "synthetic", so);
  SetSummary train;
  if (audited) {
    SummaryOptions to = so;
    to.net = nullptr;
    train = summarise_set(r["train"].as<std::string>(), vq.data, "train", to);
  }

  nlohmann::json j;
  j["inputs"] = {{"real", real_src}, {"synthetic", synth_src}, {"train", audited ? r["train"].as<std::string>() : ""},
                 {"vqgan", fs::path(vq_path).filename().string()}, {"vqgan_step", vq.step}};
  j["settings"] = {{"normalisation", "the VQ-GAN's data settings (its training normalisation, shape and spacing)"},
                   {"features", features}, {"k", k}, {"pairs", pairs}, {"seed", seed}, {"audit_max_shift", max_shift}};
  j["counts"] = {{"real", real.entries.size()}, {"synthetic", synth.entries.size()}, {"train", train.entries.size()}};
  const std::string latent_protocol =
      "vqgan-latent: per-channel mean and standard deviation and a 2x2x2 average pooling of the VQ-GAN encoder's "
      "pre-quantisation latent (meddiff's own; not comparable with other papers' numbers)";
  j["fidelity_by_features"]["vqgan"] = fidelity(real.latent_features, synth.latent_features, k, "vqgan", latent_protocol);
  j["fidelity"] = j["fidelity_by_features"]["vqgan"];
  if (net) {
    j["settings"]["feature_input"] = {{"norm", fin.norm}, {"channels", fin.channels},
                                      {"size", fin.size[0] > 0 ? nlohmann::json(fin.size) : nlohmann::json("as prepared")}};
    nlohmann::json f;
    if (!net->slice_wise()) {
      f = fidelity(real.net_features, synth.net_features, k, features,
                   "3-D network features, spatially averaged, one vector per volume (as HA-GAN and WDM with MedicalNet)");
    } else {
      f = fidelity(real.net_features, synth.net_features, k, features,
                   "2-D network on every slice of the three planes (as MAISI): Fréchet distance per plane over the slices' "
                   "features, and their mean; precision/recall and density/coverage on per-volume means of the slice features");
      const char* plane[3] = {"axial", "coronal", "sagittal"};
      double sum = 0;
      for (size_t p = 0; p < 3; ++p) {
        double d = frechet_distance(real.planes[p], synth.planes[p]);
        f["frechet_distance_planes"][plane[p]] = d;
        sum += d;
      }
      f["frechet_distance"] = sum / 3;
    }
    j["fidelity_by_features"][features] = f;
    j["fidelity"] = f;
  }
  j["diversity"] = {{"ms_ssim_synthetic", mean_ms_ssim(synth, vq.data, pairs, seed, "synthetic")},
                    {"ms_ssim_real", mean_ms_ssim(real, vq.data, pairs, seed + 1, "real")},
                    {"note", "mean 3-D MS-SSIM of random pairs within each set: lower is more diverse"}};
  auto hr = fractions(real.histogram), hs = fractions(synth.histogram);
  double inter = 0;
  for (size_t i = 0; i < hr.size(); ++i) inter += std::min(hr[i], hs[i]);
  std::vector<double> edges;
  for (int64_t i = 0; i <= bins; ++i) edges.push_back(units.lo + (units.hi - units.lo) * static_cast<double>(i) / bins);
  j["intensity"] = {{"units", units.name}, {"bin_edges", edges}, {"histogram_real", hr}, {"histogram_synthetic", hs},
                    {"histogram_intersection", inter}};
  // PNGs are written after every number is computed, so a failure leaves no partial eval.
  std::vector<std::function<void()>> pngs;
  {
    auto sq = [](std::vector<double> v) { for (auto& x : v) x = std::sqrt(x); return v; };
    pngs.push_back([=] { io::write_png(histogram_plot(sq(hr), sq(hs)), out / "histogram.png",
                  {{"Description", fmt::format("meddiff eval: intensity histograms, {} bins from {:.0f} to {:.0f} {}; grey bars: real, "
                                               "white line: synthetic; height: square root of the voxel fraction",
                                               bins, units.lo, units.hi, units.name)}}); });
  }
  if (!real.labels.empty() || !synth.labels.empty()) {
    const int64_t num_labels = std::max({static_cast<int64_t>(vq.data.label_names.size()), real.labels.labels_seen(), synth.labels.labels_seen()});
    j["labels"] = {{"units", units.name},
                   {"note", "per label: volumes holding it (>= 8 voxels), its mean share of the voxels, and the mean and standard "
                            "deviation over volumes of the median intensity inside it"},
                   {"table", label_table(real.labels.summary(num_labels), synth.labels.summary(num_labels), vq.data.label_names)}};
  }

  std::vector<std::pair<double, size_t>> ranked;  // synthetic volumes by distance ratio, nearest-copy-like first
  if (audited) {
    NccIndex index(train.audit, max_shift);
    train.audit.clear();
    auto nearest_latent = [&](const torch::Tensor& z) {  // RMS distance of flattened latents
      auto d = (train.latents - z.unsqueeze(0)).pow(2).flatten(1).mean(1).sqrt();
      return d.min().item<double>();
    };
    auto audit = [&](const SetSummary& set, const std::string& what) {
      std::vector<NccIndex::Match> m;
      std::vector<double> lat;
      Progress p("audit " + what, static_cast<int64_t>(set.audit.size()));
      for (size_t i = 0; i < set.audit.size(); ++i) {
        m.push_back(index.nearest(set.audit[i]));
        lat.push_back(nearest_latent(set.latents[static_cast<int64_t>(i)]));
        p.update(static_cast<int64_t>(i + 1));
      }
      p.finish();
      return std::make_pair(m, lat);
    };
    auto [mh, lh] = audit(real, "held-out");
    auto [ms, ls] = audit(synth, "synthetic");
    std::vector<double> nh, ns, rh;
    for (const auto& x : mh) nh.push_back(x.ncc), rh.push_back(distance_ratio(x));
    for (const auto& x : ms) ns.push_back(x.ncc);
    // Calibration on the held-out real scans, which were not trained on: a near-copy is closer to its
    // nearest training scan than half of them are (distance 1 - NCC below their median), and much
    // closer to it than to the second-nearest: its distance ratio is below 3/4 of the smallest held-out
    // ratio. A copy's distance is mostly its noise, far below its distance to the other cases; an
    // unseen scan is about as far from its nearest training scan as from the next.
    const bool several = train.entries.size() > 1;
    const double threshold = summary(nh)["median"].get<double>();
    const double ratio_threshold = several ? 0.75 * *std::min_element(rh.begin(), rh.end()) : 0.0;
    auto near_copy = [&](const NccIndex::Match& x) {
      return several ? x.ncc > threshold && distance_ratio(x) < ratio_threshold : x.ncc >= 1 - 1e-9;
    };
    nlohmann::json flagged = nlohmann::json::array(), per = nlohmann::json::array();
    for (size_t i = 0; i < synth.entries.size(); ++i) {
      const auto& x = ms[i];
      nlohmann::json e = {{"file", synth.name(i)}, {"nearest_train", train.name(static_cast<size_t>(x.index))},
                          {"ncc", x.ncc}, {"second_ncc", x.second}, {"distance_ratio", distance_ratio(x)}, {"shift", x.shift},
                          {"latent_distance", ls[i]}, {"near_copy", near_copy(x)}};
      per.push_back(e);
      if (near_copy(x)) flagged.push_back(e["file"]);
      ranked.emplace_back(distance_ratio(x), i);
    }
    std::sort(ranked.begin(), ranked.end());
    j["memorisation"] = {
        {"method", fmt::format("nearest training volume by normalised cross-correlation of the detail band (Gaussian "
                               "blur sigma 1.5 minus sigma 4 voxels) in the central window (all but max-shift + 1 voxels at "
                               "each border), maximised over shifts of up to {} voxels per axis, on a grid of at most 64 voxels "
                               "per axis; latent distance: RMS difference of the encoder latents",
                               max_shift)},
        {"held_out_ncc", summary(nh)}, {"synthetic_ncc", summary(ns)}, {"held_out_latent_distance", summary(lh)},
        {"synthetic_latent_distance", summary(ls)}, {"held_out_distance_ratio", summary(rh)},
        {"threshold_ncc", threshold}, {"threshold_distance_ratio", ratio_threshold},
        {"threshold_rule", several ? "near-copy: NCC above the held-out scans' median NCC and distance ratio (1 - NCC) / "
                                     "(1 - second-nearest NCC) below 3/4 of the smallest held-out ratio"
                                   : "a single training volume: near-copy only at NCC 1"},
        {"near_copies", flagged},
        {"volumes", per}};
    // The closest pairs side by side: synthetic (top) and its nearest training volume (bottom).
    for (size_t n = 0; n < std::min<size_t>(4, ranked.size()); ++n) {
      size_t i = ranked[n].second;
      auto sv = load_eval_volume(synth.entries[i], vq.data), tv = load_eval_volume(train.entries[static_cast<size_t>(ms[i].index)], vq.data);
      auto panel = vconcat({orthogonal_panel(sv.x[0], sv.geometry, {-1, 1}), orthogonal_panel(tv.x[0], tv.geometry, {-1, 1})});
      std::map<std::string, std::string> text{{"Description", fmt::format("meddiff eval: synthetic {} (top), nearest training volume {} (bottom), NCC {:.4f}",
                                                 synth.name(i), train.name(static_cast<size_t>(ms[i].index)), ms[i].ncc)}};
      pngs.push_back([=] { io::write_png(panel, out / fmt::format("closest_{}.png", n + 1), text); });
    }
  }
  fs::create_directories(out);
  for (const auto& w : pngs) w();
  write_text_atomically(out / "eval.json", j.dump(2) + "\n");

  const auto& fj = j["fidelity"];
  std::string md = fmt::format(
      "# meddiff eval\n\nReal (held-out): {} volumes from `{}`; synthetic: {} from `{}`{}.\nVolumes prepared with the data settings "
      "of `{}` (step {}).\n\n## Fidelity and diversity\n\n| metric | value |\n|---|---|\n"
      "| Fréchet distance ({}) | {:.4f} |\n| precision / recall (k = {}) | {:.3f} / {:.3f} |\n"
      "| density / coverage | {:.3f} / {:.3f} |\n| mean MS-SSIM, synthetic pairs | {:.4f} |\n| mean MS-SSIM, real pairs | {:.4f} |\n"
      "| intensity histogram intersection | {:.4f} |\n\nFeatures: {} ({} values). Fréchet distance of Gaussians fitted to the two "
      "feature sets (Heusel et al.), k-NN precision/recall (Kynkäänniemi et al.), density/coverage (Naeem et al.). MS-SSIM: {} "
      "random pairs per set, seed {}.\n",
      real.entries.size(), real_src, synth.entries.size(), synth_src, audited ? fmt::format("; training: {}", train.entries.size()) : "", vq_path,
      vq.step, fj["features"].get<std::string>(), fj["frechet_distance"].get<double>(), fj["k_used"].get<int64_t>(),
      fj["precision"].get<double>(), fj["recall"].get<double>(), fj["density"].get<double>(), fj["coverage"].get<double>(),
      j["diversity"]["ms_ssim_synthetic"].get<double>(), j["diversity"]["ms_ssim_real"].get<double>(), inter,
      fj["protocol"].get<std::string>(), fj["feature_dim"].get<int64_t>(), pairs, seed);
  if (fj.contains("frechet_distance_planes"))
    md += fmt::format("\nFréchet distance per plane: axial {:.4f}, coronal {:.4f}, sagittal {:.4f}.\n",
                      fj["frechet_distance_planes"]["axial"].get<double>(), fj["frechet_distance_planes"]["coronal"].get<double>(),
                      fj["frechet_distance_planes"]["sagittal"].get<double>());
  if (net) {
    const auto& v = j["fidelity_by_features"]["vqgan"];
    md += fmt::format("\nIn the VQ-GAN latent feature space: Fréchet distance {:.4f}, precision / recall {:.3f} / {:.3f}.\n",
                      v["frechet_distance"].get<double>(), v["precision"].get<double>(), v["recall"].get<double>());
  }
  md += fmt::format("\n## Intensities\n\n![intensity histograms](histogram.png)\n\nHistograms of {} bins from {:.0f} to {:.0f} {}: "
                    "grey bars real, white line synthetic (height: square root of the voxel fraction). Intersection {:.4f} (1 = "
                    "identical).\n", bins, units.lo, units.hi, units.name, inter);
  if (j.contains("labels")) {
    md += fmt::format("\n## Per label ({})\n\n| label | real: volumes, share, median intensity | synthetic: volumes, share, median "
                      "intensity | difference / real sd |\n|---|---|---|---|\n", units.name);
    for (const auto& row : j["labels"]["table"]) {
      auto cell = [](const nlohmann::json& c) {
        if (c["volumes"].get<int64_t>() == 0) return std::string("absent");
        return fmt::format("{}, {:.2f} %, {:.0f} ± {:.0f}", c["volumes"].get<int64_t>(), 100 * c["fraction"].get<double>(),
                           c["median_mean"].get<double>(), c["median_sd"].get<double>());
      };
      md += fmt::format("| {} ({}) | {} | {} | {} |\n", row["name"].get<std::string>(), row["label"].get<int64_t>(), cell(row["real"]),
                        cell(row["synthetic"]),
                        row.contains("median_difference_in_real_sd") ? fmt::format("{:+.2f}", row["median_difference_in_real_sd"].get<double>()) : "-");
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
        mj["threshold_rule"].get<std::string>(), mj["near_copies"].size(), synth.entries.size(),
        mj["near_copies"].empty() ? "" : fmt::format(": {}", fmt::join(mj["near_copies"].get<std::vector<std::string>>(), ", ")));
    for (size_t n = 0; n < std::min<size_t>(4, ranked.size()); ++n)
      md += fmt::format("![closest pair {}](closest_{}.png)\n", n + 1, n + 1);
  }
  write_text_atomically(out / "report.md", md);
  log_info("eval: Fréchet distance {:.4f} ({}), precision {:.3f}, recall {:.3f}{}; {}", fj["frechet_distance"].get<double>(),
           fj["features"].get<std::string>(), fj["precision"].get<double>(), fj["recall"].get<double>(),
           !audited ? std::string() : fmt::format(", {} near-copies", j["memorisation"]["near_copies"].size()),
           (out / "eval.json").string());
  return 0;
}

}  // namespace meddiff::cli
