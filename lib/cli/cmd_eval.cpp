// meddiff eval: fidelity, diversity and a memorisation audit of a synthetic dataset.
#include "cli/args.h"
#include "cli/commands.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/log.h"
#include "core/output_policy.h"
#include "core/progress.h"
#include "data/distribution_metrics.h"
#include "data/manifest.h"
#include "data/metrics.h"
#include "data/nearest_volume.h"
#include "data/preview.h"
#include "io/png.h"
#include "io/volume_reader.h"
#include "pipeline/autoencoder.h"
#include "pipeline/device.h"
#include "pipeline/eval_features.h"
#include "pipeline/loaded_models.h"

#include <algorithm>
#include <random>
#include <regex>

namespace meddiff::cli {
namespace {
namespace fs = std::filesystem;

// A set of volumes: a manifest (file or glob) or a folder (its manifest.json when it has one, else
// every image in it except label maps "*_label.*").
std::vector<TrainingVolume> load_set(const std::string& source, const LoadedVQGAN& vq, const std::string& what) {
  std::string src = source;
  if (fs::is_directory(src) && fs::exists(fs::path(src) / "manifest.json")) src = (fs::path(src) / "manifest.json").string();
  Manifest m = load_manifest(src);
  std::vector<ManifestEntry> entries;
  for (const auto& e : m.entries)
    if (e.image.filename().string().find("_label.") == std::string::npos) entries.push_back(e);
  if (entries.size() < 2) fail("{}: --{} needs at least 2 volumes (found {})", source, what, entries.size());
  io::ReadOptions ro;
  ro.modality = vq.data.modality_enum();
  std::vector<TrainingVolume> out;
  Progress progress("reading " + what, static_cast<int64_t>(entries.size()));
  for (const auto& e : entries) {
    out.push_back(preprocess(io::read_volume(e.image, ro), vq.data, e.class_label, e.image.string()));
    if (!torch::isfinite(out.back().x).all().item<bool>()) fail("{}: holds NaN or infinite values", e.image.string());
    progress.update(static_cast<int64_t>(out.size()));
  }
  progress.finish();
  return out;
}

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

double mean_ms_ssim(const std::vector<TrainingVolume>& set, int64_t pairs, uint64_t seed, std::vector<double>* values) {
  for (auto [i, j] : random_pairs(set.size(), pairs, seed)) values->push_back(ms_ssim3d(set[i].x[0], set[j].x[0]));
  double s = 0;
  for (double v : *values) s += v;
  return s / static_cast<double>(std::max<size_t>(1, values->size()));
}

// Histogram of [-1, 1] values in `bins` bins, as fractions.
std::vector<double> histogram(const std::vector<TrainingVolume>& set, int64_t bins) {
  auto h = torch::zeros({bins}, torch::kDouble);
  for (const auto& v : set) h += torch::histc(v.x.to(torch::kDouble), bins, -1, 1);
  h /= h.sum().clamp_min(1);
  return std::vector<double>(h.data_ptr<double>(), h.data_ptr<double>() + bins);
}

// The memorisation audit's image: at most 64 voxels along any axis (average pooling), detail band.
torch::Tensor audit_grid(const torch::Tensor& x) {  // [1, D, H, W] -> [d, h, w]
  int64_t m = std::max({x.size(1), x.size(2), x.size(3)});
  int64_t f = (m + 63) / 64;
  auto v = x.unsqueeze(0).to(torch::kFloat);
  if (f > 1) v = torch::avg_pool3d(v, f);
  return band_pass(v[0][0]);
}

}  // namespace

int run_eval(const Args_t& args) {
  Args a("eval",
         "Compare synthetic volumes with real ones (Fréchet distance, precision/recall, density/coverage in the VQ-GAN's "
         "latent feature space; MS-SSIM diversity; intensity histograms) and audit them for copies of training volumes. "
         "Writes eval.json, report.md and closest-pair PNGs to --out.");
  a.add()("real", "Held-out real volumes: a folder or manifest (not used for training)", cxxopts::value<std::string>())
      ("synthetic", "Synthetic volumes: a sample folder or manifest", cxxopts::value<std::string>())
      ("train", "Training volumes for the memorisation audit: a folder or manifest", cxxopts::value<std::string>())
      ("vqgan", "VQ-GAN checkpoint: its data settings prepare every volume, its encoder gives the features", cxxopts::value<std::string>())
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
  OutputRules rules;
  rules.inputs = {real_src, synth_src, vq_path};
  if (r.count("train")) rules.inputs.push_back(r["train"].as<std::string>());
  rules.force = r.count("force") > 0;
  rules.folder = true;
  rules.owned_what = "an eval written by meddiff";
  rules.foreign_entry = [](const fs::path& d) -> std::string {
    static const std::regex ours(R"((eval\.json|report\.md|closest_\d+\.png|\.meddiff.*))");
    for (const auto& e : fs::directory_iterator(d))
      if (!std::regex_match(e.path().filename().string(), ours)) return "'" + e.path().filename().string() + "'";
    return "";
  };
  check_output(out, rules);
  torch::Device device = choose_device(r["device"].as<std::string>());
  LoadedVQGAN vq = load_vqgan(vq_path, device);
  auto real = load_set(real_src, vq, "real"), synth = load_set(synth_src, vq, "synthetic");
  std::vector<TrainingVolume> train;
  if (r.count("train")) train = load_set(r["train"].as<std::string>(), vq, "train");

  AutoencoderRun run;
  run.budget_bytes = memory_budget_bytes(vq.sample.max_memory_gib, device);
  auto fr = latent_features(vq.model, real, run, device), fs_ = latent_features(vq.model, synth, run, device);
  nlohmann::json j;
  j["protocol"] = {{"features", "vqgan-latent: per-channel mean and standard deviation and a 2x2x2 average pooling of the "
                                "VQ-GAN encoder's pre-quantisation latent"},
                   {"feature_dim", fr.features.size(1)}, {"vqgan", fs::path(vq_path).filename().string()},
                   {"vqgan_step", vq.step}, {"normalisation", "the VQ-GAN's data settings (its training normalisation)"},
                   {"k", k}, {"pairs", pairs}, {"seed", seed}, {"audit_max_shift", max_shift}};
  j["counts"] = {{"real", real.size()}, {"synthetic", synth.size()}, {"train", train.size()}};
  ManifoldMetrics mm = manifold_metrics(fr.features, fs_.features, k);
  j["fidelity"] = {{"frechet_distance", frechet_distance(fr.features, fs_.features)}, {"precision", mm.precision},
                   {"recall", mm.recall}, {"density", mm.density}, {"coverage", mm.coverage}, {"k_used", mm.k}};
  std::vector<double> ms_real, ms_synth;
  j["diversity"] = {{"ms_ssim_synthetic", mean_ms_ssim(synth, pairs, seed, &ms_synth)},
                    {"ms_ssim_real", mean_ms_ssim(real, pairs, seed + 1, &ms_real)},
                    {"note", "mean MS-SSIM of random pairs within each set: lower is more diverse"}};
  auto hr = histogram(real, 32), hs = histogram(synth, 32);
  double inter = 0;
  for (size_t i = 0; i < hr.size(); ++i) inter += std::min(hr[i], hs[i]);
  j["intensity"] = {{"bins", 32}, {"range", {-1, 1}}, {"window", {real.front().window.lo, real.front().window.hi}},
                    {"histogram_real", hr}, {"histogram_synthetic", hs}, {"histogram_intersection", inter}};

  std::vector<std::pair<double, size_t>> ranked;  // synthetic volumes by their nearest training NCC
  if (!train.empty()) {
    std::vector<torch::Tensor> grid;
    for (const auto& t : train) grid.push_back(audit_grid(t.x));
    NccIndex index(grid, max_shift);
    auto ft = latent_features(vq.model, train, run, device);
    auto nearest_latent = [&](const torch::Tensor& z) {  // RMS distance of flattened latents
      auto d = (ft.latents - z.unsqueeze(0)).pow(2).flatten(1).mean(1).sqrt();
      return d.min().item<double>();
    };
    auto audit = [&](const std::vector<TrainingVolume>& set, const LatentFeatures& f, const std::string& what) {
      std::vector<NccIndex::Match> m;
      std::vector<double> lat;
      Progress p("audit " + what, static_cast<int64_t>(set.size()));
      for (size_t i = 0; i < set.size(); ++i) {
        m.push_back(index.nearest(audit_grid(set[i].x)));
        lat.push_back(nearest_latent(f.latents[static_cast<int64_t>(i)]));
        p.update(static_cast<int64_t>(i + 1));
      }
      p.finish();
      return std::make_pair(m, lat);
    };
    auto [mh, lh] = audit(real, fr, "held-out");
    auto [ms, ls] = audit(synth, fs_, "synthetic");
    std::vector<double> nh, ns;
    for (const auto& x : mh) nh.push_back(x.ncc);
    for (const auto& x : ms) ns.push_back(x.ncc);
    // Calibration: a real scan that was not trained on is, at most, this close to a training scan; a
    // synthetic volume closer than that by half the remaining way to 1 is flagged as a near-copy.
    const double hmax = *std::max_element(nh.begin(), nh.end());
    const double threshold = hmax + 0.5 * (1 - hmax);
    nlohmann::json flagged = nlohmann::json::array(), per = nlohmann::json::array();
    for (size_t i = 0; i < synth.size(); ++i) {
      const auto& x = ms[i];
      nlohmann::json e = {{"file", fs::path(synth[i].source).filename().string()}, {"nearest_train", fs::path(train[static_cast<size_t>(x.index)].source).filename().string()},
                          {"ncc", x.ncc}, {"shift", x.shift}, {"latent_distance", ls[i]}, {"near_copy", x.ncc > threshold}};
      per.push_back(e);
      if (x.ncc > threshold) flagged.push_back(e["file"]);
      ranked.emplace_back(x.ncc, i);
    }
    std::sort(ranked.rbegin(), ranked.rend());
    j["memorisation"] = {
        {"method", fmt::format("nearest training volume by normalised cross-correlation of the detail band (Gaussian "
                               "blur sigma 1.5 minus sigma 4 voxels), maximised over shifts of up to {} voxels per axis, on a "
                               "grid of at most 64 voxels per axis; latent distance: RMS difference of the encoder latents",
                               max_shift)},
        {"held_out_ncc", summary(nh)}, {"synthetic_ncc", summary(ns)}, {"held_out_latent_distance", summary(lh)},
        {"synthetic_latent_distance", summary(ls)}, {"threshold_ncc", threshold},
        {"threshold_rule", "max held-out NCC + half of (1 - that maximum)"}, {"near_copies", flagged},
        {"volumes", per}};
    // The closest pairs side by side: synthetic (top) and its nearest training volume (bottom).
    for (size_t n = 0; n < std::min<size_t>(4, ranked.size()); ++n) {
      size_t i = ranked[n].second;
      const auto& t = train[static_cast<size_t>(ms[i].index)];
      auto panel = vconcat({orthogonal_panel(synth[i].x[0], synth[i].geometry, {-1, 1}), orthogonal_panel(t.x[0], t.geometry, {-1, 1})});
      io::write_png(panel, out / fmt::format("closest_{}.png", n + 1),
                    {{"Description", fmt::format("meddiff eval: synthetic {} (top), nearest training volume {} (bottom), NCC {:.4f}",
                                                 fs::path(synth[i].source).filename().string(), fs::path(t.source).filename().string(), ms[i].ncc)}});
    }
  }
  write_text_atomically(out / "eval.json", j.dump(2) + "\n");

  std::string md = fmt::format(
      "# meddiff eval\n\nReal (held-out): {} volumes from `{}`; synthetic: {} from `{}`{}.\nFeatures: {} ({} values per volume), "
      "volumes prepared with the data settings of `{}` (step {}).\n\n## Fidelity and diversity\n\n| metric | value |\n|---|---|\n"
      "| Fréchet distance (VQ-GAN latent features) | {:.4f} |\n| precision / recall (k = {}) | {:.3f} / {:.3f} |\n"
      "| density / coverage | {:.3f} / {:.3f} |\n| mean MS-SSIM, synthetic pairs | {:.4f} |\n| mean MS-SSIM, real pairs | {:.4f} |\n"
      "| intensity histogram intersection | {:.4f} |\n\nProtocol: Fréchet distance of Gaussians fitted to the two feature sets "
      "(Heusel et al.), k-NN precision/recall (Kynkäänniemi et al.), density/coverage (Naeem et al.), all in the VQ-GAN latent "
      "feature space (not comparable with 2-D Inception or MedicalNet numbers of other papers). MS-SSIM: {} random pairs per set, "
      "seed {}.\n",
      real.size(), real_src, synth.size(), synth_src, train.empty() ? "" : fmt::format("; training: {}", train.size()),
      j["protocol"]["features"].get<std::string>(), fr.features.size(1), vq_path, vq.step, j["fidelity"]["frechet_distance"].get<double>(),
      mm.k, mm.precision, mm.recall, mm.density, mm.coverage, j["diversity"]["ms_ssim_synthetic"].get<double>(),
      j["diversity"]["ms_ssim_real"].get<double>(), inter, pairs, seed);
  if (!train.empty()) {
    const auto& mj = j["memorisation"];
    md += fmt::format(
        "\n## Memorisation audit\n\n{}.\n\n| nearest-training NCC | median | max |\n|---|---|---|\n| held-out real | {:.4f} | {:.4f} |\n"
        "| synthetic | {:.4f} | {:.4f} |\n\nNear-copy threshold: NCC > {:.4f} ({}). Flagged: {} of {}{}.\n\n",
        mj["method"].get<std::string>(), mj["held_out_ncc"]["median"].get<double>(), mj["held_out_ncc"]["max"].get<double>(),
        mj["synthetic_ncc"]["median"].get<double>(), mj["synthetic_ncc"]["max"].get<double>(), mj["threshold_ncc"].get<double>(),
        mj["threshold_rule"].get<std::string>(), mj["near_copies"].size(), synth.size(),
        mj["near_copies"].empty() ? "" : fmt::format(": {}", fmt::join(mj["near_copies"].get<std::vector<std::string>>(), ", ")));
    for (size_t n = 0; n < std::min<size_t>(4, ranked.size()); ++n)
      md += fmt::format("![closest pair {}](closest_{}.png)\n", n + 1, n + 1);
  }
  write_text_atomically(out / "report.md", md);
  log_info("eval: Fréchet distance {:.4f}, precision {:.3f}, recall {:.3f}{}; {}", j["fidelity"]["frechet_distance"].get<double>(),
           mm.precision, mm.recall,
           train.empty() ? std::string() : fmt::format(", {} near-copies", j["memorisation"]["near_copies"].size()),
           (out / "eval.json").string());
  return 0;
}

}  // namespace meddiff::cli
