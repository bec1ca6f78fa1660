// meddiff eval: fidelity, diversity and a memorisation audit of a synthetic dataset.
// The pieces: the request and the output folder's rules (cli/eval_request.h), one streaming pass per
// set (cli/eval_sets.h), the audit (cli/eval_audit.h), the report (cli/eval_report.h). Every output
// is staged and appears together with eval.json, or not at all.
#include "cli/commands.h"
#include "cli/autoencoder_option.h"
#include "cli/eval_audit.h"
#include "cli/eval_downstream.h"
#include "cli/eval_report.h"
#include "cli/eval_request.h"
#include "cli/eval_sets.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/log.h"
#include "core/progress.h"
#include "data/distribution_metrics.h"
#include "data/label_statistics.h"
#include "data/metrics.h"
#include "data/nearest_volume.h"
#include "data/plot.h"
#include "data/preview.h"
#include "io/png.h"
#include "pipeline/autoencoder.h"
#include "pipeline/device.h"
#include "pipeline/eval_features.h"
#include "pipeline/loaded_models.h"

#include <algorithm>
#include <map>
#include <optional>
#include <random>

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

// Mean MS-SSIM of random pairs of a set, reading the two volumes of each pair again.
double mean_ms_ssim(const SetSummary& set, const DataParams& p, int64_t pairs, uint64_t seed, const std::string& what) {
  auto chosen = random_pairs(set.entries.size(), pairs, seed);
  double sum = 0;
  Progress progress("MS-SSIM " + what, static_cast<int64_t>(chosen.size()));
  int64_t done = 0;
  for (auto [i, j] : chosen) {
    auto a = load_eval_volume(set.entries[i], p).x, b = load_eval_volume(set.entries[j], p).x;
    double pair = 0;  // the channels' mean
    for (int64_t c = 0; c < a.size(0); ++c) pair += ms_ssim3d(a[c], b[c]);
    sum += pair / static_cast<double>(a.size(0));
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

// The memorisation audit's image: at most 64 voxels along any axis (average pooling), detail band; of the
// channels' mean (a copy of a training case copies every channel, so it copies their mean).
torch::Tensor audit_grid(const torch::Tensor& x) {  // [C, D, H, W] -> [d, h, w]
  int64_t m = std::max({x.size(1), x.size(2), x.size(3)});
  int64_t f = (m + 63) / 64;
  auto v = x.to(torch::kFloat).mean(0, /*keepdim=*/true).unsqueeze(0);
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
    // relative to the real mean median (meaningless near 0, e.g. MR background)
    if (r.volumes > 0 && s.volumes > 0 && r.median_mean != 0)
      row["median_relative_difference"] = (s.median_mean - r.median_mean) / std::abs(r.median_mean);
    // the step of intensity across the label's boundary, and how much of the real one the synthetic volumes keep
    for (const auto& [set, st] : {std::pair{"real", &r}, std::pair{"synthetic", &s}})
      if (st->edge_volumes > 0) {
        row[set]["edge_step"] = {{"volumes", st->edge_volumes}, {"mean", st->edge_step_mean}, {"sd", st->edge_step_sd}};
        row[set]["edge_agreement"] = {{"mean", st->edge_agreement_mean}, {"sd", st->edge_agreement_sd}};
      }
    if (r.edge_volumes > 0 && s.edge_volumes > 0 && r.edge_step_mean != 0) row["edge_step_kept"] = s.edge_step_mean / r.edge_step_mean;
    rows.push_back(row);
  }
  return rows;
}

// label_table per class of `real` that `synth` also has.
nlohmann::json label_tables_by_class(const SetSummary& real, const SetSummary& synth, int64_t num_labels,
                                     const std::vector<std::string>& names) {
  nlohmann::json by_class = nlohmann::json::array();
  for (const auto& [c, rs] : real.labels_by_class)
    if (auto it = synth.labels_by_class.find(c); it != synth.labels_by_class.end())
      by_class.push_back({{"class", c}, {"table", label_table(rs.summary(num_labels), it->second.summary(num_labels), names)}});
  return by_class;
}

// Fréchet distance and k-NN metrics of a user's feature network (3-D, or 2-D slice-wise per plane).
nlohmann::json network_fidelity(const FeatureNetwork& net, const SetSummary& real, const SetSummary& synth, int64_t k,
                                const std::string& features) {
  if (!net.slice_wise())
    return fidelity(real.net_features, synth.net_features, k, features,
                    "3-D network features, spatially averaged, one vector per volume (as HA-GAN and WDM with MedicalNet)");
  auto f = fidelity(real.net_features, synth.net_features, k, features,
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
  return f;
}

}  // namespace

int run_eval(const Args_t& args) {
  const EvalRequest q = parse_eval_request(args);
  torch::Device device = choose_device(q.device);
  std::optional<FeatureNetwork> net;
  if (q.features != "vqgan") net.emplace(q.features, device);
  LoadedAutoencoder vq = load_autoencoder_option(q.vqgan, q.modality, device);
  if (vq.network_xyz()) {
    vq.data.spacing = q.spacing;
    const auto f = vq.ae->downsample();
    vq.data.shape = imported_eval_grid(q.real, vq.data, q.shape, std::max({f[0], f[1], f[2]}));
  } else if (q.shape[0] > 0 || q.spacing[0] > 0) {
    usage_fail("--shape and --spacing are for an imported autoencoder; the {} {} prepares volumes with its own data settings",
               vq.kind(), q.vqgan);
  }
  const Units units = units_of(vq.data);
  const int64_t bins = 64;
  // One pass over each set, one volume in memory at a time.
  SummaryOptions so;
  so.autoencoder = vq.ae.get();
  so.run.budget_bytes = memory_budget_bytes(vq.sample.max_memory_gib, device);
  so.device = device;
  so.net = net ? &*net : nullptr;
  so.net_input = q.feature_input;
  so.bins = bins;
  so.units = units;
  if (q.audited()) so.audit_grid = audit_grid;
  so.keep_latents = q.audited();
  so.network_xyz = vq.network_xyz();
  SetSummary real = summarise_set(q.real, vq.data, "real", so);
  SetSummary train;
  if (q.audited()) {
    SummaryOptions to = so;
    to.net = nullptr;
    train = summarise_set(q.train, vq.data, "train", to);
    check_held_out(real, train);  // before the synthetic set: an overlap makes the audit meaningless
  }
  SetSummary synth = summarise_set(q.synthetic, vq.data, "synthetic", so);

  nlohmann::json j;
  j["inputs"] = {{"real", q.real}, {"synthetic", q.synthetic}, {"train", q.train},
                 {"vqgan", fs::path(q.vqgan).filename().string()}, {"vqgan_step", vq.step}};
  j["inputs"]["autoencoder_kind"] = vq.autoencoder.kind;
  if (vq.network_xyz()) j["inputs"]["imported"] = vq.imported;
  j["settings"] = {{"normalisation", vq.network_xyz() ? fmt::format("as MAISI and MONAI prepare {} for the {} (--modality {}), on a {} x {} x {} "
                                                                   "grid (x, y, z){}, seen in RAS (x, y, z) layout",
                                                                   vq.data.modality, vq.kind(), q.modality, vq.data.shape[2],
                                                                   vq.data.shape[1], vq.data.shape[0],
                                                                   q.spacing[0] > 0 ? fmt::format(" of {} mm", fmt::join(q.spacing, " x ")) : "")
                                                     : fmt::format("the {}'s data settings (its training normalisation, shape and spacing)", vq.kind())},
                   {"features", q.features}, {"k", q.k}, {"pairs", q.pairs}, {"seed", q.seed}, {"audit_max_shift", q.max_shift}};
  j["counts"] = {{"real", real.entries.size()}, {"synthetic", synth.entries.size()}, {"train", train.entries.size()}};
  const std::string latent_protocol = fmt::format(
      "vqgan-latent: per-channel mean and standard deviation and a 2x2x2 average pooling of the {} (meddiff's own; not "
      "comparable with other papers' numbers)",
      vq.autoencoder.is_kl() ? "KL autoencoder's posterior mean" : "VQ-GAN encoder's pre-quantisation latent");
  j["fidelity_by_features"]["vqgan"] = fidelity(real.latent_features, synth.latent_features, q.k, "vqgan", latent_protocol);
  j["fidelity"] = j["fidelity_by_features"]["vqgan"];
  if (net) {
    const auto& fin = q.feature_input;
    j["settings"]["feature_input"] = {{"norm", fin.norm}, {"channels", fin.channels},
                                      {"size", fin.size[0] > 0 ? nlohmann::json(fin.size) : nlohmann::json("as prepared")}};
    j["fidelity_by_features"][q.features] = network_fidelity(*net, real, synth, q.k, q.features);
    j["fidelity"] = j["fidelity_by_features"][q.features];
  }
  j["diversity"] = {{"ms_ssim_synthetic", mean_ms_ssim(synth, vq.data, q.pairs, q.seed, "synthetic")},
                    {"ms_ssim_real", mean_ms_ssim(real, vq.data, q.pairs, q.seed + 1, "real")},
                    {"note", "mean 3-D MS-SSIM of random pairs within each set: lower is more diverse"}};
  auto hr = fractions(real.histogram), hs = fractions(synth.histogram);
  double inter = 0;
  for (size_t i = 0; i < hr.size(); ++i) inter += std::min(hr[i], hs[i]);
  std::vector<double> edges;
  for (int64_t i = 0; i <= bins; ++i) edges.push_back(units.lo + (units.hi - units.lo) * static_cast<double>(i) / bins);
  j["intensity"] = {{"units", units.name}, {"bin_edges", edges}, {"histogram_real", hr}, {"histogram_synthetic", hs},
                    {"histogram_intersection", inter}};
  if (!real.labels.empty() || !synth.labels.empty()) {
    const int64_t num_labels = std::max({static_cast<int64_t>(vq.data.label_names.size()), real.labels.labels_seen(), synth.labels.labels_seen()});
    j["labels"] = {{"units", units.name},
                   {"note", "per label: volumes holding it (>= 8 voxels), its mean share of the voxels, and the mean and standard "
                            "deviation over volumes of the median intensity inside it; edge_step: the median of the label's voxels "
                            "touching another label minus that of the other voxels touching it (3x3x3), mean and sd over volumes; "
                            "edge_step_kept: synthetic / real (1: as sharp as the real edges, below 1: softer); edge_agreement: the Dice of the "
                            "label with the voxels within one voxel of it on its side of the midpoint of the two shells' medians "
                            "(1: the image's edge lies on the label's), mean and sd over the same volumes"},
                   {"table", label_table(real.labels.summary(num_labels), synth.labels.summary(num_labels), vq.data.label_names)}};
    // Per class when the sets have several: pooled medians mix classes in the sets' proportions, and MR volumes of
    // different classes normalise differently (a bright lesion lowers everything else)
    if (real.labels_by_class.size() > 1 || synth.labels_by_class.size() > 1)
      j["labels"]["by_class"] = label_tables_by_class(real, synth, num_labels, vq.data.label_names);
    // The same against the training cases: the mask bank's pairs reuse their label maps, and the model learned their
    // intensities, so this separates the model's error from the difference between the training and held-out sets
    if (!train.labels_by_class.empty())
      j["labels"]["by_class_vs_train"] = label_tables_by_class(train, synth, num_labels, vq.data.label_names);
  }
  if (q.downstream) j["downstream"] = downstream_check(q, real, synth, vq.data, device);
  std::optional<AuditResult> audit;
  if (q.audited()) {
    audit = memorisation_audit(real, synth, train, q.max_shift);
    j["memorisation"] = audit->json;
  }

  // Every file is staged, then all appear together, eval.json last: a failure (a full disk) or a kill
  // leaves the folder as it was, with at most temporaries the next run removes.
  StagedFiles staged;
  auto sq = [](std::vector<double> v) { for (auto& x : v) x = std::sqrt(x); return v; };
  staged.add(q.out / "histogram.png", [&](const fs::path& p) {
    io::write_png(histogram_plot(sq(hr), sq(hs)), p,
                  {{"Description", fmt::format("meddiff eval: intensity histograms, {} bins from {:.0f} to {:.0f} {}; grey bars: real, "
                                               "white line: synthetic; height: square root of the voxel fraction",
                                               bins, units.lo, units.hi, units.name)}});
  });
  size_t closest = 0;
  if (audit) {
    // The closest pairs side by side: synthetic (top) and its nearest training volume (bottom).
    closest = std::min<size_t>(4, audit->ranked.size());
    for (size_t n = 0; n < closest; ++n) {
      const size_t i = audit->ranked[n].second;
      const auto t = static_cast<size_t>(audit->nearest[i]);
      auto sv = load_eval_volume(synth.entries[i], vq.data), tv = load_eval_volume(train.entries[t], vq.data);
      auto panel = vconcat({orthogonal_panel(sv.x[0], sv.geometry, {-1, 1}), orthogonal_panel(tv.x[0], tv.geometry, {-1, 1})});
      const double ncc = audit->json["volumes"][i]["ncc"].get<double>();
      staged.add(q.out / fmt::format("closest_{}.png", n + 1), [&](const fs::path& p) {
        io::write_png(panel, p,
                      {{"Description", fmt::format("meddiff eval: synthetic {} (top), nearest training volume {} (bottom), NCC {:.4f}",
                                                   synth.name(i), train.name(t), ncc)}});
      });
    }
  }
  staged.add_text(q.out / "report.md", eval_report_markdown(j, q.vqgan, closest));
  staged.add_text(q.out / "eval.json", j.dump(2) + "\n");
  fs::create_directories(q.out);
  staged.commit();
  const auto& fj = j["fidelity"];
  log_info("eval: Fréchet distance {:.4f} ({}), precision {:.3f}, recall {:.3f}{}; {}", fj["frechet_distance"].get<double>(),
           fj["features"].get<std::string>(), fj["precision"].get<double>(), fj["recall"].get<double>(),
           !audit ? std::string() : fmt::format(", {} near-copies", j["memorisation"]["near_copies"].size()),
           (q.out / "eval.json").string());
  return 0;
}

}  // namespace meddiff::cli
