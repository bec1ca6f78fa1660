#include "cli/eval_request.h"

#include "cli/args.h"
#include "cli/autoencoder_option.h"
#include "core/config.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/output_policy.h"

#include <regex>

namespace meddiff::cli {
namespace fs = std::filesystem;

bool eval_output_name(const std::string& n) {
  static const std::regex ours(R"((eval\.json|report\.md|closest_\d+\.png|histogram\.png|\.meddiff.*))");
  return std::regex_match(n, ours) || is_temp_name(n);
}

EvalRequest parse_eval_request(const Args_t& args) {
  Args a("eval",
         "Compare synthetic volumes with real ones (Fréchet distance, precision/recall, density/coverage in a feature space; "
         "MS-SSIM diversity; intensity histograms; per-label statistics) and audit them for copies of training volumes. "
         "Writes eval.json, report.md and PNG plots to --out.");
  a.add()("real", "Held-out real volumes: a folder or manifest (not used for training: volumes also in --train are refused)",
          cxxopts::value<std::string>())
      ("synthetic", "Synthetic volumes: a sample folder, its manifest.jsonl, a folder or a manifest", cxxopts::value<std::string>())
      ("train", "Training volumes for the memorisation audit: a folder or manifest", cxxopts::value<std::string>())
      ("vqgan", "VQ-GAN checkpoint: its data settings prepare every volume, its encoder gives the latent features", cxxopts::value<std::string>())
      ("modality", kAutoencoderModalityHelp, cxxopts::value<std::string>())
      ("shape", "With an imported autoencoder: crop or pad every volume to x,y,z voxels (multiples of its downsampling; "
                "default: the first --real volume's size, rounded up)", cxxopts::value<std::string>())
      ("spacing", "With an imported autoencoder: resample every volume to x,y,z mm first (default: as the files are)",
       cxxopts::value<std::string>())
      ("features", "Feature space of the fidelity numbers: vqgan (the VQ-GAN's latents), 3d:FILE (a TorchScript network "
                   "taking [B,C,D,H,W] volumes, e.g. MedicalNet) or 2d:FILE (a TorchScript network applied to every slice of the "
                   "three planes, the MAISI protocol)", cxxopts::value<std::string>()->default_value("vqgan"))
      ("feature-input", "Input of a --features network: zscore (per volume), unit ([0,1]) or raw ([-1,1])",
       cxxopts::value<std::string>()->default_value("zscore"))
      ("feature-channels", "Input channels of a --features network (the volume or slice repeated)", cxxopts::value<int64_t>()->default_value("1"))
      ("feature-size", "Resample volumes (3d: x,y,z) or slices (2d: x,y = columns,rows) for the --features network (default: "
                       "as they are)",
       cxxopts::value<std::string>()->default_value(""))
      ("out", "Folder for eval.json, report.md and the PNGs", cxxopts::value<std::string>())
      ("seed", "Seed of the random pairs", cxxopts::value<uint64_t>()->default_value("0"))
      ("pairs", "Random pairs per set for MS-SSIM", cxxopts::value<int64_t>()->default_value("32"))
      ("k", "Neighbours for precision/recall and density/coverage", cxxopts::value<int64_t>()->default_value("5"))
      ("max-shift", "Audit: shifts (voxels of the audit grid, per axis) searched for the best correlation", cxxopts::value<int64_t>()->default_value("2"))
      ("device", "auto, cpu, cuda, cuda:N", cxxopts::value<std::string>()->default_value("auto"))
      ("downstream", "seg: also train a compact segmentation U-Net on the real training cases, on them plus the synthetic "
                     "pairs, and on the pairs alone, and score each on the held-out --real cases (per-label Dice, ASSD, HD95; "
                     "the gain of adding the pairs); none: no downstream check", cxxopts::value<std::string>()->default_value("none"))
      ("seg-train", "--downstream: the real labelled training cases of the segmenter (default: --train)", cxxopts::value<std::string>())
      ("seg-cases", "--downstream: use only the first N of them (a few real cases, as when labels are scarce; 0 = all)",
       cxxopts::value<int64_t>()->default_value("0"))
      ("seg-iterations", "--downstream: training iterations per run (the fixed budget)", cxxopts::value<int64_t>()->default_value("600"))
      ("seg-channels", "--downstream: base channels of the segmentation U-Net (8: minutes on a CPU at 32^3; more on a GPU)",
       cxxopts::value<int64_t>()->default_value("8"))
      ("seg-lr", "--downstream: Adam learning rate", cxxopts::value<double>()->default_value("0.003"))
      ("seg-lr-poly", "--downstream: > 0: the learning rate decays as lr (1 - iteration / iterations)^this, nnU-Net's poly "
                      "schedule; 0: constant", cxxopts::value<double>()->default_value("0.9"))
      ("seg-seeds", "--downstream: training runs per training set (seeds 0..N-1)", cxxopts::value<int64_t>()->default_value("2"))
      ("seg-batch", "--downstream: cases per iteration", cxxopts::value<int64_t>()->default_value("2"))
      ("seg-min-effect", "--downstream: a gain helps or hurts only beyond the seed spread and this Dice difference",
       cxxopts::value<double>()->default_value("0.005"))
      ("seg-synthetic-share", "--downstream: share of each batch drawn from the synthetic pairs when they are added to the real "
                              "cases (each slot is synthetic with this probability)", cxxopts::value<double>()->default_value("0.5"))
      ("force", "Replace a finished eval in --out (an unfinished one, without eval.json, is replaced anyway)");
  auto r = a.parse(args);
  EvalRequest q;
  q.real = required(r, "real");
  q.synthetic = required(r, "synthetic");
  q.vqgan = required(r, "vqgan");
  q.out = required(r, "out");
  if (r.count("train")) q.train = r["train"].as<std::string>();
  if (r.count("modality")) q.modality = r["modality"].as<std::string>();
  if (r.count("shape")) {
    q.shape = reversed_axes(parse_int3(r["shape"].as<std::string>(), "--shape"));  // x,y,z -> [D, H, W]
    for (auto v : q.shape)
      if (v < 4 || v > 2048) usage_fail("--shape: sizes must be within 4..2048 voxels (got '{}')", r["shape"].as<std::string>());
  }
  if (r.count("spacing")) {
    q.spacing = parse_double3(r["spacing"].as<std::string>(), "--spacing");
    for (auto v : q.spacing)
      if (!(v > 0 && v <= 100)) usage_fail("--spacing: mm must be within (0, 100] (got '{}')", r["spacing"].as<std::string>());
  }
  q.seed = r["seed"].as<uint64_t>();
  q.pairs = r["pairs"].as<int64_t>();
  q.k = r["k"].as<int64_t>();
  q.max_shift = r["max-shift"].as<int64_t>();
  if (q.pairs < 1 || q.k < 1 || q.max_shift < 0 || q.max_shift > 8) usage_fail("--pairs and --k must be >= 1 and --max-shift within 0..8");
  q.features = r["features"].as<std::string>();
  auto& fin = q.feature_input;
  fin.norm = r["feature-input"].as<std::string>();
  fin.channels = r["feature-channels"].as<int64_t>();
  if (fin.norm != "zscore" && fin.norm != "unit" && fin.norm != "raw") usage_fail("--feature-input must be zscore, unit or raw (got '{}')", fin.norm);
  if (fin.channels < 1 || fin.channels > 16) usage_fail("--feature-channels must be within 1..16 (got {})", fin.channels);
  if (auto sz = r["feature-size"].as<std::string>(); !sz.empty()) {
    const bool two = q.features.rfind("2d:", 0) == 0;
    if (two) {
      auto v = parse_int2(sz, "--feature-size");  // x, y (columns, rows)
      fin.size = {1, v[1], v[0]};
    } else {
      fin.size = reversed_axes(parse_int3(sz, "--feature-size"));  // x,y,z -> [D, H, W]
    }
    for (size_t i = two ? 1 : 0; i < 3; ++i)
      if (fin.size[i] < 4 || fin.size[i] > 1024) usage_fail("--feature-size: sizes must be within 4..1024 (got '{}')", sz);
  }
  q.device = r["device"].as<std::string>();
  q.force = r.count("force") > 0;
  const std::string ds = r["downstream"].as<std::string>();
  if (ds != "none" && ds != "seg") usage_fail("--downstream must be seg or none (got '{}')", ds);
  q.downstream = ds == "seg";
  if (r.count("seg-train")) q.seg_train = r["seg-train"].as<std::string>();
  q.seg_cases = r["seg-cases"].as<int64_t>();
  q.seg.iterations = r["seg-iterations"].as<int64_t>();
  q.seg.base_channels = r["seg-channels"].as<int64_t>();
  q.seg.lr = r["seg-lr"].as<double>();
  q.seg.lr_poly = r["seg-lr-poly"].as<double>();
  q.seg.seeds = r["seg-seeds"].as<int64_t>();
  q.seg.batch = r["seg-batch"].as<int64_t>();
  q.seg.synthetic_share = r["seg-synthetic-share"].as<double>();
  q.seg.min_effect = r["seg-min-effect"].as<double>();
  if (q.seg_cases < 0) usage_fail("--seg-cases must not be negative (got {})", q.seg_cases);
  try {
    q.seg.validate();
  } catch (const Error& e) {
    usage_fail("--seg-*: {}", e.what());
  }
  if (q.downstream && q.seg_train.empty() && q.train.empty())
    usage_fail("--downstream seg needs the real labelled training cases: --seg-train SET (or --train)");
  OutputRules rules;
  rules.inputs = {q.real, q.synthetic, q.vqgan};
  if (q.audited()) rules.inputs.push_back(q.train);
  if (!q.seg_train.empty()) rules.inputs.push_back(q.seg_train);
  if (q.features != "vqgan") rules.inputs.push_back(q.features.substr(q.features.find(':') + 1));
  std::error_code ec;
  // an unfinished eval (no eval.json: killed, or stopped by a full disk) is ours to replace
  rules.force = q.force || !fs::exists(q.out / "eval.json", ec);
  rules.folder = true;
  rules.owned_what = "a finished eval written by meddiff";
  rules.foreign_entry = [](const fs::path& d) -> std::string {
    for (const auto& e : fs::directory_iterator(d))
      if (!eval_output_name(e.path().filename().string())) return "'" + e.path().filename().string() + "'";
    return "";
  };
  check_output(q.out, rules);
  if (fs::is_directory(q.out, ec)) remove_stale_temps(q.out);
  return q;
}

}  // namespace meddiff::cli
