// meddiff demo: the whole pipeline on built-in phantoms, no data and no download.
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/demo_config.h"
#include "core/checkpoint.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/log.h"
#include "core/version.h"
#include "pipeline/device.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <fstream>
#include <iostream>

namespace meddiff::cli {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Last value of `key` in a metrics.jsonl file (or NaN).
double last_metric(const fs::path& path, const std::string& key) {
  std::ifstream in(path);
  std::string line;
  double v = std::nan("");
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_object() && j.contains(key)) v = j[key].get<double>();
  }
  return v;
}

// The per-label check of a sample folder's pairs, as a Markdown section: per label the training
// range, the synthetic medians and how many pairs pass; and the phantoms' expected contrasts.
std::string pair_check_report(const fs::path& manifest, const std::string& title, Modality modality) {
  struct Row {
    std::vector<double> medians;
    int64_t passed = 0;
    std::vector<double> range;
  };
  std::map<int64_t, std::pair<std::string, Row>> rows;
  int64_t pairs = 0, all_passed = 0, contrast_ok = 0, contrast_n = 0;
  std::ifstream in(manifest);
  std::string line;
  const bool ct = modality == Modality::CT;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_object() || !j.contains("qc")) continue;
    ++pairs;
    all_passed += j["qc"].value("passed", false) ? 1 : 0;
    std::map<std::string, double> med;
    for (const auto& l : j["qc"]["labels"]) {
      auto& [name, row] = rows[l.value("label", int64_t{0})];
      name = l.value("name", "");
      row.medians.push_back(l.value("median", 0.0));
      row.passed += l.value("passed", false) ? 1 : 0;
      row.range = l.value("range", std::vector<double>{});
      med[name] = l.value("median", 0.0);
    }
    // the phantoms' contrasts: MR lesions brighter than brain; CT lung < -600 HU, bone > 300 HU, nodules > -300 HU
    if (!ct && med.count("lesion") && med.count("brain")) {
      ++contrast_n;
      contrast_ok += med["lesion"] > med["brain"] ? 1 : 0;
    }
    if (ct && med.count("lung") && med.count("bone")) {
      ++contrast_n;
      contrast_ok += med["lung"] < -600 && med["bone"] > 300 && (!med.count("nodule") || med["nodule"] > -300) ? 1 : 0;
    }
  }
  std::string s = fmt::format("## Per-label check: `{}`\n\n{} of {} pairs pass (inside every label with at least 8 voxels, the "
                              "synthetic median lies in the range of the training images' medians, the default rule; {}).\n\n"
                              "| label | accepted range | synthetic medians (min / median / max) | pairs passing |\n|---|---|---|---|\n",
                              title, all_passed, pairs, ct ? "HU" : "MR output units 0-1000");
  for (auto& [label, nr] : rows) {
    auto& [name, row] = nr;
    std::sort(row.medians.begin(), row.medians.end());
    s += fmt::format("| {} ({}) | [{:.0f}, {:.0f}] | {:.0f} / {:.0f} / {:.0f} | {} of {} |\n", name, label,
                     row.range.size() == 2 ? row.range[0] : 0.0, row.range.size() == 2 ? row.range[1] : 0.0, row.medians.front(),
                     row.medians[row.medians.size() / 2], row.medians.back(), row.passed, row.medians.size());
  }
  if (contrast_n > 0)
    s += fmt::format("\n{}: {} of {} pairs.\n", ct ? "Lung median below -600 HU, bone above 300 HU and nodules above -300 HU"
                                                 : "Lesion median brighter than the brain's",
                     contrast_ok, contrast_n);
  return s + "\n";
}

// The downstream segmentation table of `meddiff eval --downstream seg` as a Markdown section.
std::string downstream_summary(const nlohmann::json& d, Modality modality) {
  std::string s = fmt::format(
      "## Does the synthetic data help a segmenter? (`eval/report.md`, {})\n\n**{}.**\n\n{}\n\n"
      "| label | Dice: {} real | + {} synthetic pairs | synthetic only | gain (per seed) | verdict |\n|---|---|---|---|---|---|\n",
      modality == Modality::CT ? "CT" : "MR", d["summary"].get<std::string>(), d["protocol"].get<std::string>(),
      d["counts"]["real_train"].get<int64_t>(), d["counts"]["synthetic"].get<int64_t>());
  auto dice = [](const nlohmann::json& row, const char* cfg) {
    if (!row.contains("dice") || !row["dice"].contains(cfg)) return std::string("-");
    return fmt::format("{:.3f}", row["dice"][cfg]["mean"].get<double>());
  };
  for (const auto& row : d["labels"]) {
    if (!row.contains("gain")) continue;
    s += fmt::format("| {} | {} | {} | {} | {:+.3f} ({:+.3f}) | {} |\n", row["name"].get<std::string>(), dice(row, "real"),
                     dice(row, "real+synthetic"), dice(row, "synthetic"), row["gain"]["mean"].get<double>(),
                     fmt::join(row["gain"]["seeds"].get<std::vector<double>>(), ", "), row["gain"]["verdict"].get<std::string>());
  }
  return s + "\n";
}

// The headline numbers of `meddiff eval` as a Markdown section.
std::string eval_summary(const fs::path& eval_json, Modality modality) {
  auto j = nlohmann::json::parse(read_text(eval_json));
  const auto& f = j["fidelity"];
  const auto& d = j["diversity"];
  std::string s = fmt::format(
      "## Eval (`eval/report.md`)\n\n{} synthetic volumes (`samples/`) against {} held-out real phantoms (`heldout/`), "
      "{} training phantoms for the memorisation audit.\n\n| metric | value |\n|---|---|\n"
      "| Fréchet distance (VQ-GAN latent features) | {:.4f} |\n| precision / recall | {:.3f} / {:.3f} |\n"
      "| density / coverage | {:.3f} / {:.3f} |\n| MS-SSIM synthetic / real pairs | {:.4f} / {:.4f} |\n"
      "| intensity histogram intersection | {:.4f} |\n",
      j["counts"]["synthetic"].get<int64_t>(), j["counts"]["real"].get<int64_t>(), j["counts"]["train"].get<int64_t>(),
      f["frechet_distance"].get<double>(), f["precision"].get<double>(), f["recall"].get<double>(), f["density"].get<double>(),
      f["coverage"].get<double>(), d["ms_ssim_synthetic"].get<double>(), d["ms_ssim_real"].get<double>(),
      j["intensity"]["histogram_intersection"].get<double>());
  if (j.contains("memorisation")) {
    const auto& m = j["memorisation"];
    s += fmt::format("| nearest-training NCC, synthetic median / max | {:.4f} / {:.4f} |\n| nearest-training NCC, held-out max | {:.4f} |\n"
                     "| near-copies (NCC > {:.4f} and distance ratio < {:.3f}) | {} |\n",
                     m["synthetic_ncc"]["median"].get<double>(), m["synthetic_ncc"]["max"].get<double>(),
                     m["held_out_ncc"]["max"].get<double>(), m["threshold_ncc"].get<double>(),
                     m["threshold_distance_ratio"].get<double>(), m["near_copies"].size());
  }
  if (j.contains("downstream")) s += "\n" + downstream_summary(j["downstream"], modality);
  return s + "\n";
}

}  // namespace

int run_demo(const Args_t& args) {
  Args a("demo",
         "Run the whole pipeline on built-in phantoms: a two-class dataset, a small VQ-GAN, a small class-conditional "
         "latent diffusion model, samples of each class as NIfTI, DICOM and PNG, and a report (about 25 minutes on 2 "
         "CPU cores; --quick: a toy-size smoke run in under 2 minutes).");
  a.add()("out", "Output folder", cxxopts::value<std::string>()->default_value("demo-out"))
      ("modality", "mr (heads with lesions) or ct (chests with nodules)", cxxopts::value<std::string>()->default_value("mr"))
      ("quick", "Toy size, for smoke tests")
      ("device", "auto, cpu, cuda", cxxopts::value<std::string>()->default_value("auto"))
      ("set", "Override a key of the demo's config: key.path=value (repeatable), e.g. vqgan_train.label_balance=0",
       cxxopts::value<std::vector<std::string>>())
      ("print-config", "Print the demo's config (with --set applied) and exit");
  auto r = a.parse(args);
  Modality modality = parse_modality(r["modality"].as<std::string>());
  if (modality == Modality::Unknown) usage_fail("--modality must be mr or ct");
  bool quick = r.count("quick") > 0;
  fs::path out = r["out"].as<std::string>();
  RunConfig cfg = demo_config(modality, quick);
  if (r.count("set")) cfg = with_overrides(config_to_json(cfg), r["set"].as<std::vector<std::string>>());
  if (r.count("print-config")) {
    std::cout << config_to_json(cfg).dump(2) << "\n";
    return 0;
  }
  std::string device = r["device"].as<std::string>();
  choose_device(device);
  cfg.vqgan_train.device = device;
  cfg.ldm_train.device = device;
  // The demo writes several folders and files: only into a new or empty folder, never beside other files.
  if (fs::exists(out) && (!fs::is_directory(out) || !fs::is_empty(out)))
    fail("{}: is not empty (an earlier demo?); the demo needs a new or empty --out", out.string());
  fs::create_directories(out);
  auto t_all = std::chrono::steady_clock::now();
  std::string mod = modality == Modality::CT ? "ct" : "mr";
  int64_t n = quick ? 8 : 24;
  std::string shape = quick ? "16,16,16" : "32,32,32";
  std::string spacing = modality == Modality::CT ? (quick ? "3,3,4" : "1.5,1.5,2.5") : (quick ? "2,2,2" : "1,1,1.2");  // x,y,z mm
  // Held-out phantoms: the test set of eval and of the downstream segmenter. 16 (8 per class): two sets of 4 per class
  // differ by up to 22 % in a label's median, as much as the effects eval is there to show.
  const int64_t n_heldout = quick ? n / 3 : 16;

  log_info("demo 1/5: phantoms ({} {} cases, and {} held-out label maps)", n, mod, n_heldout);
  auto t0 = std::chrono::steady_clock::now();
  run_phantoms({"--modality", mod, "--count", std::to_string(n), "--shape", shape, "--spacing", spacing, "--seed", "1",
                "--out", (out / "data").string()});
  // Held-out cases (another seed): their label maps drive paired sampling of unseen anatomy.
  run_phantoms({"--modality", mod, "--count", std::to_string(n_heldout), "--shape", shape, "--spacing", spacing, "--seed", "2",
                "--out", (out / "heldout").string()});
  double t_data = seconds_since(t0);
  cfg.data.manifest = fs::absolute(out / "data/manifest.json").string();
  cfg.validate();
  write_text_atomically(out / "config.json", config_to_json(cfg).dump(2) + "\n");
  std::string config = (out / "config.json").string();

  const std::string ae_name = cfg.autoencoder.is_kl() ? "KL autoencoder" : "VQ-GAN";
  log_info("demo 2/5: {} ({} steps)", ae_name, cfg.vqgan_train.steps);
  t0 = std::chrono::steady_clock::now();
  run_train_vqgan({"--config", config, "--out", (out / "vqgan").string()});
  double t_vq = seconds_since(t0);

  log_info("demo 3/5: latent diffusion ({} steps)", cfg.ldm_train.steps);
  t0 = std::chrono::steady_clock::now();
  run_train_ldm({"--config", config, "--vqgan", (out / "vqgan/last.pt").string(), "--out", (out / "ldm").string()});
  double t_ldm = seconds_since(t0);

  // enough pairs for the downstream check: a few real cases plus many synthetic pairs, as a user with scarce labels has
  const int64_t pairs = quick ? 8 : 48, seg_real = quick ? 2 : 4;
  log_info("demo 4/5: sampling {} image + label pairs from the mask bank and {} from the held-out label maps, DDIM {} steps, "
           "guidance {}", pairs, n_heldout, cfg.sample.steps, cfg.sample.guidance);
  t0 = std::chrono::steady_clock::now();
  run_sample({"--ldm", (out / "ldm/last.pt").string(), "-n", std::to_string(pairs), "--format", "nifti,dicom,png", "--seed", "1",
              "--device", device, "--out", (out / "samples").string()});
  run_sample({"--ldm", (out / "ldm/last.pt").string(), "-n", std::to_string(n_heldout), "--format", "nifti,png", "--seed", "1",
              "--labels", (out / "heldout/manifest.json").string(), "--device", device, "--out", (out / "samples_heldout").string()});
  double t_sample = seconds_since(t0);

  log_info("demo 5/5: eval of samples/ against the held-out phantoms, memorisation audit against the training phantoms, "
           "downstream segmentation with {} real cases", seg_real);
  t0 = std::chrono::steady_clock::now();
  run_eval({"--real", (out / "heldout").string(), "--synthetic", (out / "samples").string(), "--train", (out / "data").string(),
            "--vqgan", (out / "vqgan/last.pt").string(), "--device", device, "--downstream", "seg", "--seg-cases",
            std::to_string(seg_real), "--seg-iterations", quick ? "20" : "600", "--seg-seeds", quick ? "1" : "3", "--out",
            (out / "eval").string()});
  double t_eval = seconds_since(t0);

  double psnr = last_metric(out / "vqgan/metrics.jsonl", "val_psnr");
  double base = last_metric(out / "vqgan/metrics.jsonl", "val_psnr_mean_baseline");
  double ssim = last_metric(out / "vqgan/metrics.jsonl", "val_ssim");
  double vq_loss = last_metric(out / "vqgan/metrics.jsonl", "l1");
  double ldm_loss = last_metric(out / "ldm/metrics.jsonl", "loss");
  std::string report = fmt::format(
      "# meddiff demo ({}{})\n\n"
      "meddiff {} (git {}), LibTorch {}, device {}. Every volume under samples/ is SYNTHETIC.\n\n"
      "| stage | result | time |\n|---|---|---|\n"
      "| phantoms | {} {} cases, classes 0/1 alternating: `data/` | {:.0f} s |\n"
      "| {} | {} steps; weighted L1 {:.4f}; validation PSNR {:.2f} dB (mean-volume baseline {:.2f} dB), SSIM {:.4f}: `vqgan/last.pt` | {:.0f} s |\n"
      "| latent diffusion | {} steps; loss {:.4f}: `ldm/last.pt` | {:.0f} s |\n"
      "| sampling | {} image + label pairs from the mask bank (`samples/`) and {} from held-out label maps (`samples_heldout/`), DDIM {} steps, guidance {} | {:.0f} s |\n"
      "| eval | `eval/report.md`, `eval/eval.json` (summary below) | {:.0f} s |\n"
      "| total | | {:.0f} s |\n\n"
      "## Files\n\n"
      "- `samples/synth_NNNNNN.nii.gz` + `synth_NNNNNN_label.nii.gz`: the synthetic image and the label map it was generated "
      "for ({}); `samples/synth_NNNNNN_dicom/` and "
      "`_label_dicom/`: DICOM series of both (DERIVED\\SECONDARY, synthetic identity); `samples/synth_NNNNNN.png`: axial | "
      "coronal | sagittal with the label outlines in white; `samples/manifest.jsonl`: one line per pair (seed, class, "
      "sampler, checkpoint SHA-256s, the per-label check). Each pair has its label map's class ({}).\n"
      "- `samples_heldout/`: the same for label maps of phantoms the models never saw (`heldout/`).\n"
      "- `vqgan/previews/`: validation input / reconstruction / |difference|; `ldm/previews/`: one sample per class during training.\n"
      "- `vqgan/metrics.jsonl`, `ldm/metrics.jsonl`: training curves; `config.json`: the resolved config.\n",
      mod, quick ? ", --quick" : "", version(), git_hash(), torch_version(), device, n, mod, t_data, ae_name, cfg.vqgan_train.steps,
      vq_loss, psnr, base, ssim, t_vq, cfg.ldm_train.steps, ldm_loss, t_ldm, pairs, n_heldout, cfg.sample.steps, cfg.sample.guidance,
      t_sample, t_eval, seconds_since(t_all),
      fmt::format("a training label map, randomly flipped, rotated, scaled and deformed; stage 2 learned {} such copies of "
                  "each case", cfg.ldm_train.augment_copies),
      modality == Modality::CT ? "class 1 should show lung nodules" : "class 1 should show bright lesions");
  report += "\n## Pairs (axial | coronal | sagittal, label outlines in white)\n\n";
  for (const char* folder : {"samples", "samples_heldout"})
    for (int i = 0; i < 2; ++i) {
      auto png = fmt::format("{}/synth_{:06d}.png", folder, i);
      if (fs::exists(out / png)) report += fmt::format("![{}]({})\n", png, png);
    }
  report += "\n" + pair_check_report(out / "samples/manifest.jsonl", "samples/", modality) +
            pair_check_report(out / "samples_heldout/manifest.jsonl", "samples_heldout/", modality);
  report += eval_summary(out / "eval/eval.json", modality);
  write_text_atomically(out / "report.md", report);
  log_info("demo: done in {:.0f} s; report {}", seconds_since(t_all), (out / "report.md").string());
  return 0;
}

}  // namespace meddiff::cli
