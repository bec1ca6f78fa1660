// meddiff sample: synthetic volumes from a trained latent diffusion model, as a resumable batch job.
//
// Volume i (0-based, global) has class --class, or i mod num_classes; its starting noise and every
// sampler step's noise come from (seed, i) alone, so batch size and sharding never change a volume.
// The job folder's bookkeeping (settings, finished volumes, manifest, locks) is cli/sample_job.h.
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/sample_job.h"
#include "cli/sample_labels.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/log.h"
#include "core/output_policy.h"
#include "core/progress.h"
#include "core/sha256.h"
#include "core/version.h"
#include "data/batches.h"
#include "data/intensity.h"
#include "data/label_check.h"
#include "data/label_maps.h"
#include "data/preview.h"
#include "io/png.h"
#include "io/volume_writer.h"
#include "pipeline/device.h"
#include "pipeline/generate.h"
#include "train/launch_env.h"

#include <chrono>
#include <iostream>
#include <regex>
#include <set>

namespace meddiff::cli {
namespace {

constexpr int64_t kMaxVolumes = 1000000;  // per output folder (file names and manifests stay manageable)

struct Shard {
  int64_t k = 1, n = 1;  // shard k of n, 1-based
};

Shard parse_shard(const std::string& s) {
  static const std::regex re(R"((\d{1,9})/(\d{1,9}))");
  std::smatch m;
  if (!std::regex_match(s, m, re)) usage_fail("--shard takes K/N, e.g. 2/8 (got '{}')", s);
  Shard sh{std::stoll(m[1].str()), std::stoll(m[2].str())};
  if (sh.n < 1 || sh.k < 1 || sh.k > sh.n) usage_fail("--shard K/N needs 1 <= K <= N (got '{}')", s);
  return sh;
}

std::set<std::string> parse_formats(const std::string& s) {
  std::set<std::string> out;
  for (const auto& f : split_commas(s)) {
    if (f != "nifti" && f != "dicom" && f != "png") usage_fail("--format: unknown format '{}' (nifti, dicom, png)", f);
    out.insert(f);
  }
  if (out.empty()) usage_fail("--format needs at least one of nifti, dicom, png");
  return out;
}

// A case name: letters, digits, '-' and '_' (no path separators, no dots), 1-64 characters.
std::string parse_name(const std::string& s) {
  static const std::regex re(R"([A-Za-z0-9][A-Za-z0-9_-]{0,63})");
  if (!std::regex_match(s, re))
    usage_fail("--name must be a plain name of letters, digits, '-' and '_' (1-64 characters), got '{}'", s);
  return s;
}

torch::Tensor noise_for(uint64_t seed, int64_t index, uint64_t stream, const std::array<int64_t, 4>& shape) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(step_seed(seed, index, stream));
  return torch::randn({shape[0], shape[1], shape[2], shape[3]}, gen);
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int run_sample(const Args_t& args) {
  Args a("sample",
         "Generate synthetic volumes with a trained latent diffusion model (resumable, shardable batch job). Writes "
         "NIfTI / DICOM / PNG, one sidecar JSON per volume, job.json (the job's settings) and OUT/manifest.jsonl.");
  a.add()("ldm", "LDM checkpoint (stage 2 last.pt)", cxxopts::value<std::string>())
      ("vqgan", "VQ-GAN checkpoint (default: the one the LDM was trained with)", cxxopts::value<std::string>())
      ("n", "Number of volumes (global count, across shards; at most 1000000)", cxxopts::value<int64_t>()->default_value("1"))
      ("class", "Class of every volume (default: volume i gets class i mod the number of classes)", cxxopts::value<int64_t>())
      ("guidance", "Classifier-free guidance weight (1 = none; default from the config)", cxxopts::value<double>())
      ("sampler", "ddpm, ddim or dpmpp2m (diffusion models); euler or heun (rectified-flow models); default from the config", cxxopts::value<std::string>())
      ("steps", "Sampler steps (default from the config)", cxxopts::value<int64_t>())
      ("eta", "DDIM eta (default from the config)", cxxopts::value<double>())
      ("dynamic-threshold", "Dynamic thresholding percentile, e.g. 0.995 (0 = off)", cxxopts::value<double>())
      ("grid", "Timesteps of ddpm/ddim/dpmpp2m: uniform (in t), logsnr or karras (default from the config)", cxxopts::value<std::string>())
      ("seed", "Seed: volume i depends only on (seed, i)", cxxopts::value<uint64_t>()->default_value("0"))
      ("batch", "Volumes per batch (default from the config)", cxxopts::value<int64_t>())
      ("precision", "fp32, or bf16 (CUDA only: the networks under bf16 autocast; the sampler update stays fp32)",
       cxxopts::value<std::string>()->default_value("fp32"))
      ("batch-networks", "Run the batch's volumes and the guidance pair in one network forward (faster on a GPU; the "
                         "same volumes up to float rounding, not bit-identical to the default one-volume forwards)")
      ("shard", "Do shard K of N: volumes i with i mod N = K-1", cxxopts::value<std::string>()->default_value("1/1"))
      ("format", "Comma-separated: nifti, dicom, png", cxxopts::value<std::string>()->default_value("nifti"))
      ("layout", "flat (synth_NNNNNN.*) or nnunet (imagesTr/<name>_NNNN_0000.nii.gz + dataset.json)",
       cxxopts::value<std::string>()->default_value("flat"))
      ("name", "Case name prefix for the nnunet layout (letters, digits, '-', '_')", cxxopts::value<std::string>()->default_value("meddiff"))
      ("device", "auto, cpu, cuda, cuda:N", cxxopts::value<std::string>()->default_value("auto"))
      ("max-memory", "Memory budget of the decoder in GiB (default: the config's sample.max_memory_gib, else automatic); "
                     "volumes larger than it decode in slabs, with the same result", cxxopts::value<double>())
      ("labels", "Label-conditioned models: the label maps to generate images for (a folder of label files or a manifest "
                 "with a label column); volume i takes map i mod their count", cxxopts::value<std::string>())
      ("mask-bank", "Label-conditioned models: the bank of training label maps (default: mask_bank.pt beside --ldm)",
       cxxopts::value<std::string>())
      ("augment-labels", "on or off: random flips, rotations, scalings and elastic deformation of each label map "
                         "(default: on for the mask bank, off for --labels)", cxxopts::value<std::string>())
      ("remove-label", "Comma-separated labels to remove from every map (e.g. 4: no lesion)", cxxopts::value<std::string>()->default_value(""))
      ("scale-label", "LABEL=FACTOR[,...]: scale a label's region about its centre (e.g. 4=1.5)", cxxopts::value<std::string>()->default_value(""))
      ("qc-retries", "Label-conditioned models: regenerate a pair whose per-label intensities fall outside the training "
                     "ranges up to this many times (next seeds), then keep it marked as failed", cxxopts::value<int64_t>()->default_value("3"))
      ("eval", "After sampling, run `meddiff eval` on the folder against these held-out real volumes (a folder or manifest); "
               "results in OUT/eval/", cxxopts::value<std::string>())
      ("eval-train", "With --eval: the training volumes for the memorisation audit (default: the LDM's data.manifest)",
       cxxopts::value<std::string>())
      ("force", "When --out was sampled with other settings: discard its volumes and start again")
      ("dry-run", "Print what would be done (counts, measured time and memory per volume) and write nothing")
      ("finalize", "Only rebuild OUT/manifest.jsonl (and dataset.json) from the finished volumes' sidecars")
      ("out", "Output folder", cxxopts::value<std::string>());
  auto r = a.parse(args);
  fs::path out = required(r, "out");
  SampleLayout layout;
  layout.kind = r["layout"].as<std::string>();
  if (layout.kind != "flat" && layout.kind != "nnunet") usage_fail("--layout must be flat or nnunet (got '{}')", layout.kind);
  layout.name = parse_name(r["name"].as<std::string>());
  SampleFolder folder(out, layout);
  auto dataset_json = [&](const std::string& modality, const std::vector<std::string>& names) {
    nlohmann::json labels = {{"background", 0}};
    for (size_t l = 1; l < names.size(); ++l) labels[names[l]] = l;
    return [&, modality, labels](int64_t count) {
      return nlohmann::json{{"channel_names", {{"0", modality == "CT" ? "CT" : "MRI"}}},
                            {"labels", labels},
                            {"numTraining", count},
                            {"file_ending", ".nii.gz"},
                            {"name", layout.name},
                            {"description", "SYNTHETIC volumes generated by meddiff; no patient data"}};
    };
  };
  if (r.count("finalize")) {
    folder.check_usable();
    auto job = folder.recorded_job();
    if (!job) fail("{}: no job.json; nothing sampled here to finalize", out.string());
    int64_t count = folder.rebuild(dataset_json((*job)["info"].value("modality", "MR"),
                                                (*job)["info"].value("label_names", std::vector<std::string>{})));
    log_info("sample --finalize: {} finished volume(s) in {}", count, (out / "manifest.jsonl").string());
    return 0;
  }
  std::string ldm_path = required(r, "ldm");
  int64_t n = r["n"].as<int64_t>();
  if (n < 1 || n > kMaxVolumes) usage_fail("-n must be within 1..{} (got {}); split larger jobs over several folders", kMaxVolumes, n);
  Shard shard = parse_shard(r["shard"].as<std::string>());
  if (r.count("eval-train") && !r.count("eval")) usage_fail("--eval-train needs --eval REAL");
  auto formats = parse_formats(r["format"].as<std::string>());
  if (layout.kind == "nnunet" && !formats.count("nifti")) usage_fail("--layout nnunet needs --format nifti");
  uint64_t seed = r["seed"].as<uint64_t>();
  const bool force = r.count("force") > 0, dry_run = r.count("dry-run") > 0;
  if (is_within(ldm_path, out)) fail("{}: holds the input {}; give another folder for the samples", out.string(), ldm_path);
  folder.check_usable();
  // Under torchrun or srun, rank r of N samples shard r+1/N: one command uses every GPU of a node.
  const LaunchEnv env = launch_env();
  if (env.distributed()) {
    if (r["shard"].as<std::string>() != "1/1")
      usage_fail("--shard {} in a launch of {} ranks: give one of them (rank r of N samples shard r+1/N)",
                 r["shard"].as<std::string>(), env.world_size);
    shard = {env.rank + 1, env.world_size};
    if (env.rank > 0) set_log_tag(fmt::format("[rank {}/{}] ", env.rank, env.world_size));
  }
  torch::Device device = rank_device(r["device"].as<std::string>(), env);

  LoadedLDM ldm = load_ldm(ldm_path, device);
  const auto& defaults = ldm.sample;
  SamplerParams sp;
  sp.sampler = r.count("sampler") ? r["sampler"].as<std::string>() : defaults.sampler;
  // steps 0 (the config default): the sampler's measured default
  sp.steps = r.count("steps") ? r["steps"].as<int64_t>() : defaults.steps;
  const bool known = sp.sampler == "ddpm" || sp.sampler == "ddim" || sp.sampler == "dpmpp2m" || sp.sampler == "euler" || sp.sampler == "heun";
  if (sp.steps == 0 && !r.count("steps") && known) sp.steps = default_steps(sp.sampler, ldm.sampler_T());
  sp.eta = r.count("eta") ? r["eta"].as<double>() : defaults.eta;
  sp.guidance = r.count("guidance") ? r["guidance"].as<double>() : defaults.guidance;
  sp.clip_x0 = defaults.clip_x0;
  sp.dynamic_threshold = r.count("dynamic-threshold") ? r["dynamic-threshold"].as<double>() : defaults.dynamic_threshold;
  sp.grid = r.count("grid") ? r["grid"].as<std::string>() : (ldm.rflow ? "uniform" : defaults.grid);
  sp.batch_networks = r.count("batch-networks") > 0;
  const std::string precision = r["precision"].as<std::string>();
  if (precision != "fp32" && precision != "bf16") usage_fail("--precision must be fp32 or bf16 (got '{}')", precision);
  if (precision == "bf16" && !device.is_cuda())
    usage_fail("--precision bf16 is for CUDA devices (on this CPU, bf16 convolutions were measured slower than fp32)");
  sp.bf16 = precision == "bf16";
  try {
    sp.validate(ldm.sampler_T());
  } catch (const Error& e) {
    usage_fail("{}", e.what());
  }
  const double terminal_alpha_bar = ldm.schedule.alpha_bar(ldm.schedule.T - 1);
  if (!ldm.rflow && ldm.prediction == Prediction::Eps && sp.sampler != "ddpm" && terminal_alpha_bar < 1e-3)
    log_warn("this model predicts eps and its schedule ends at alpha_bar {:.1e}: the first {} step divides by "
             "sqrt(alpha_bar), so samples may drift; ddpm, or a model trained with ldm.prediction = v, avoids this",
             terminal_alpha_bar, sp.sampler);
  int64_t batch = r.count("batch") ? r["batch"].as<int64_t>() : defaults.batch;
  if (batch < 1) usage_fail("--batch must be at least 1");
  std::optional<int64_t> fixed_class;
  if (r.count("class")) {
    fixed_class = r["class"].as<int64_t>();
    if (ldm.num_classes == 0) usage_fail("--class: this model is unconditional");
    if (*fixed_class < 0 || *fixed_class >= ldm.num_classes)
      usage_fail("--class must be within 0..{} for this model (got {})", ldm.num_classes - 1, *fixed_class);
  }
  fs::path vq_path;
  if (r.count("vqgan")) vq_path = r["vqgan"].as<std::string>();
  else vq_path = ldm.vqgan_path;
  if (vq_path.empty() || !fs::exists(vq_path))
    fail("{}: the VQ-GAN checkpoint the LDM was trained with is not at '{}'; pass --vqgan", ldm_path, vq_path.string());
  if (is_within(vq_path, out)) fail("{}: holds the input {}; give another folder for the samples", out.string(), vq_path.string());
  std::string vq_sha = sha256_file(vq_path), ldm_sha = sha256_file(ldm_path);
  if (!ldm.vqgan_sha256.empty() && vq_sha != ldm.vqgan_sha256)
    fail("{}: is not the VQ-GAN this LDM was trained with (SHA-256 {}..., expected {}...)", vq_path.string(),
         vq_sha.substr(0, 12), ldm.vqgan_sha256.substr(0, 12));
  LoadedVQGAN vq = load_vqgan(vq_path, device);
  double gib = r.count("max-memory") ? r["max-memory"].as<double>() : defaults.max_memory_gib;
  if (!(gib >= 0)) usage_fail("--max-memory must be a positive number of GiB (got {})", gib);
  AutoencoderRun decode;
  decode.budget_bytes = memory_budget_bytes(gib, device);

  // Paired sampling: a label map per volume, and the per-pair check.
  const bool paired = ldm.num_labels > 0;
  std::optional<LabelSource> label_source;
  const int64_t qc_retries = r["qc-retries"].as<int64_t>();
  if (qc_retries < 0 || qc_retries > 100) usage_fail("--qc-retries must be within 0..100 (got {})", qc_retries);
  if (paired) {
    std::optional<bool> augment;
    if (r.count("augment-labels")) {
      auto v = r["augment-labels"].as<std::string>();
      if (v != "on" && v != "off") usage_fail("--augment-labels must be on or off (got '{}')", v);
      augment = v == "on";
    }
    auto edits = parse_label_edits(r["remove-label"].as<std::string>(), r["scale-label"].as<std::string>(), ldm.num_labels);
    std::string user = r.count("labels") ? r["labels"].as<std::string>() : "";
    fs::path bank = r.count("mask-bank") ? fs::path(r["mask-bank"].as<std::string>()) : ldm.mask_bank;
    if (!user.empty() && is_within(user, out)) fail("{}: holds the input {}; give another folder for the samples", out.string(), user);
    label_source.emplace(ldm, user, bank, augment, edits);
  } else {
    for (const char* o : {"labels", "mask-bank", "augment-labels"})
      if (r.count(o)) usage_fail("--{}: this model is not conditioned on label maps (train it with data.labels = condition)", o);
    if (!r["remove-label"].as<std::string>().empty() || !r["scale-label"].as<std::string>().empty())
      usage_fail("--remove-label / --scale-label: this model is not conditioned on label maps");
  }

  // Everything that determines the volumes (and the files) of this folder.
  nlohmann::json formats_json = nlohmann::json::array();
  for (const auto& f : formats) formats_json.push_back(f);
  nlohmann::json settings = {
      {"ldm_sha256", ldm_sha},   {"vqgan_sha256", vq_sha},
      {"seed", seed},            {"class_rule", fixed_class ? fmt::format("fixed {}", *fixed_class)
                                                            : fmt::format("index mod {}", std::max<int64_t>(1, ldm.num_classes))},
      {"sampler", sp.sampler},   {"steps", sp.steps},
      {"eta", sp.eta},           {"guidance", sp.guidance},
      {"clip_x0", sp.clip_x0},   {"dynamic_threshold", sp.dynamic_threshold},
      {"precision", sp.bf16 ? "bf16" : "fp32"},     {"layout", layout.kind},
      {"formats", formats_json}, {"name", layout.kind == "nnunet" ? layout.name : ""}};
  if (sp.grid != "uniform") settings["grid"] = sp.grid;  // absent for uniform: folders sampled before the key keep matching
  if (sp.batch_networks) settings["batch_networks"] = true;  // volumes then depend on the batch they were made in
  if (paired) {
    settings["labels"] = label_source->settings();
    if (!fixed_class) settings["class_rule"] = fmt::format("the label map's class, else index mod {}", std::max<int64_t>(1, ldm.num_classes));
    settings["qc_retries"] = qc_retries;
  }
  nlohmann::json info = {{"modality", to_string(ldm.modality)}, {"ldm_step", ldm.step}, {"config", ldm.config},
                         {"label_names", ldm.label_names}};
  auto class_of = [&](int64_t i) { return fixed_class ? *fixed_class : (ldm.num_classes > 0 ? i % ldm.num_classes : 0); };
  const int64_t timesteps = network_evaluations(sp, ldm.schedule);  // per volume (x2 with guidance)

  std::vector<int64_t> mine;
  for (int64_t i = shard.k - 1; i < n; i += shard.n) mine.push_back(i);

  if (dry_run) {
    auto recorded = folder.recorded_settings();
    std::string diff = recorded ? settings_difference(*recorded, settings) : "";
    int64_t finished = 0;
    if (diff.empty())
      for (int64_t i : mine) finished += folder.finished(i) ? 1 : 0;
    // One network evaluation and one decode, measured on this device.
    torch::NoGradGuard ng;
    auto x = noise_for(seed, mine.front(), 0, ldm.latent_shape).unsqueeze(0).to(device);
    auto t = ldm.rflow ? torch::full({1}, 1000.0, torch::TensorOptions().dtype(torch::kFloat).device(device))
                       : torch::full({1}, ldm.schedule.T - 1, torch::TensorOptions().dtype(torch::kLong).device(device));
    auto c = torch::full({1}, class_of(mine.front()), torch::TensorOptions().dtype(torch::kLong).device(device));
    auto t0 = std::chrono::steady_clock::now();
    ldm.model->forward(x, t, ldm.num_classes > 0 ? c : torch::Tensor());
    synchronize(device);
    double t_net = seconds_since(t0);
    t0 = std::chrono::steady_clock::now();
    decode_latent(vq.model, ldm.norm.invert(x), decode);
    synchronize(device);
    double t_dec = seconds_since(t0);
    bool guided = (ldm.num_classes > 0 || paired) && sp.guidance != 1.0;
    double per_volume = static_cast<double>(timesteps) * t_net * (guided ? 2 : 1) + t_dec;
    int64_t todo = static_cast<int64_t>(mine.size()) - finished;
    std::cout << fmt::format(
        "dry run: {} volume(s) in {} (shard {}/{}: {} of them), {} already finished, {} to do\n"
        "  model: latent [{}], {} classes, {} {} steps, guidance {}, device {}\n"
        "  measured: U-Net {:.3f} s per evaluation ({} per volume), decode {:.3f} s: {:.1f} s per volume, about {} for this shard\n"
        "  peak memory: {:.0f} MiB host{}\n",
        n, out.string(), shard.k, shard.n, mine.size(), finished, todo, fmt::join(ldm.latent_shape, "x"),
        ldm.num_classes, sp.sampler, sp.steps, sp.guidance, device.str(), t_net, timesteps * (guided ? 2 : 1), t_dec,
        per_volume, format_duration(per_volume * static_cast<double>(todo)), peak_rss_mib(),
        device.is_cuda() ? fmt::format(", {:.0f} MiB CUDA", peak_device_mib(device)) : "");
    if (paired)
      std::cout << fmt::format("  label maps: {} ({} maps{}); a pair failing the per-label check is generated again up to {} "
                               "time(s), which the estimate leaves out\n",
                               label_source->settings().value("source", ""), label_source->count(),
                               label_source->settings().value("augment", false) ? ", augmented" : "", qc_retries);
    if (!diff.empty())
      std::cout << fmt::format("  note: {} was sampled with other settings ({}): refused without --force\n", out.string(), diff);
    return 0;
  }

  folder.lock_shard(shard.k, shard.n);
  folder.open(settings, info, force);
  auto ds_json = dataset_json(to_string(ldm.modality), ldm.label_names);
  folder.rebuild(ds_json);  // repairs a manifest line lost to a kill
  std::vector<int64_t> todo;
  for (int64_t i : mine)
    if (!folder.finished(i)) todo.push_back(i);
  if (static_cast<int64_t>(todo.size()) < static_cast<int64_t>(mine.size()))
    log_info("{}: {} of {} volumes already finished, skipped", out.string(), mine.size() - todo.size(), mine.size());
  IntensityParams ip = ldm.data.intensity();
  IntensityWindow w = output_window(ldm.modality, ip);
  Progress progress(fmt::format("sample ({} {} steps)", sp.sampler, sp.steps), static_cast<int64_t>(todo.size()) * timesteps);
  int64_t steps_done = 0, qc_failed = 0, qc_regenerated = 0;
  for (size_t b0 = 0; b0 < todo.size(); b0 += static_cast<size_t>(batch)) {
    auto t0 = std::chrono::steady_clock::now();
    std::vector<int64_t> idx(todo.begin() + static_cast<std::ptrdiff_t>(b0),
                             todo.begin() + static_cast<std::ptrdiff_t>(std::min(todo.size(), b0 + static_cast<size_t>(batch))));
    std::vector<int64_t> cls;
    std::vector<PairLabel> pairs;
    std::vector<torch::Tensor> pair_conds;  // each map's condition on the latent grid
    for (int64_t i : idx) {
      cls.push_back(class_of(i));
      if (!paired) continue;
      pairs.push_back(label_source->for_volume(seed, i));
      pair_conds.push_back(
          label_fractions(pairs.back().label, ldm.num_labels, {ldm.latent_shape[1], ldm.latent_shape[2], ldm.latent_shape[3]}));
      const auto& map_class = pairs.back().class_label;
      if (!fixed_class && ldm.num_classes > 0 && map_class && *map_class >= 0 && *map_class < ldm.num_classes) cls.back() = *map_class;
    }
    // Attempt 0 of volume i is (seed, i); a pair that fails the check is generated again from the next
    // attempt's noise (same label map), up to --qc-retries times.
    std::vector<torch::Tensor> images(idx.size());
    std::vector<int64_t> attempts(idx.size(), 0);
    std::vector<PairCheck> checks(idx.size());
    std::vector<size_t> pending(idx.size());
    for (size_t j = 0; j < idx.size(); ++j) pending[j] = j;
    for (int64_t attempt = 0; !pending.empty(); ++attempt) {
      const uint64_t s_att = attempt == 0 ? seed : step_seed(seed, -attempt, 0x7163ULL);
      std::vector<torch::Tensor> x_T, conds;
      std::vector<int64_t> c;
      for (size_t j : pending) {
        x_T.push_back(noise_for(s_att, idx[j], 0, ldm.latent_shape));
        c.push_back(cls[j]);
        if (paired) conds.push_back(pair_conds[j]);
      }
      auto classes = torch::tensor(c, torch::kLong).to(device);
      auto cond = paired ? torch::stack(conds).to(device) : torch::Tensor();
      auto step_noise = [&](int64_t step) {
        std::vector<torch::Tensor> z;
        for (size_t j : pending) z.push_back(noise_for(s_att, idx[j], static_cast<uint64_t>(step + 1), ldm.latent_shape));
        return torch::stack(z).to(device);
      };
      int64_t base_steps = steps_done;
      const auto n_pending = static_cast<int64_t>(pending.size());
      auto vols = generate_volumes(ldm, vq.model, torch::stack(x_T).to(device), classes, cond, sp, step_noise,
                                   [&](int64_t s, int64_t) { if (attempt == 0) progress.update(base_steps + s * n_pending); },
                                   decode)
                      .to(torch::kCPU, torch::kFloat);
      if (attempt == 0) steps_done = base_steps + timesteps * n_pending;
      std::vector<size_t> again;
      for (size_t k = 0; k < pending.size(); ++k) {
        const size_t j = pending[k];
        images[j] = vols[static_cast<int64_t>(k)][0];
        attempts[j] = attempt;
        if (!paired) continue;
        checks[j] = check_pair(images[j], pairs[j].label, ldm.label_ranges, ldm.label_names, w);
        if (!checks[j].passed && attempt < qc_retries) again.push_back(j);
      }
      if (!again.empty()) {
        qc_regenerated += static_cast<int64_t>(again.size());
        log_info("{} pair(s) outside the training intensity ranges; generating again (attempt {} of {})", again.size(), attempt + 2,
                 qc_retries + 1);
      }
      pending = again;
    }
    double seconds = seconds_since(t0) / static_cast<double>(idx.size());
    for (size_t j = 0; j < idx.size(); ++j) {
      int64_t i = idx[j];
      Volume v;
      v.image = denormalise(images[j], w, true);
      v.geometry = paired ? pairs[j].geometry : ldm.geometry;
      v.modality = ldm.modality;
      std::string name = layout.base_name(i);
      std::string what = fmt::format("seed={} index={} class={}", seed, i, cls[j]);
      if (attempts[j] > 0) what += fmt::format(" attempt={}", attempts[j]);
      nlohmann::json files = nlohmann::json::array();
      // The folder is this job's: a file of an unfinished volume (a killed run) is replaced.
      io::WriteOptions wo;
      wo.overwrite = true;
      wo.description = "SYNTHETIC meddiff " + version() + " " + what;
      if (formats.count("nifti")) {
        fs::path f = folder.images_dir() / (layout.kind == "nnunet" ? name + "_0000.nii.gz" : name + ".nii.gz");
        io::write_volume(v, f, wo);
        files.push_back(fs::relative(f, folder.out()).string());
        if (paired) {
          fs::path lf = folder.labels_dir() / (layout.kind == "nnunet" ? name + ".nii.gz" : name + "_label.nii.gz");
          io::WriteOptions lo = wo;
          lo.description = "SYNTHETIC label map, meddiff " + version() + " " + what;
          io::write_label_map(pairs[j].label, v.geometry, lf, lo);
          files.push_back(fs::relative(lf, folder.out()).string());
        }
      }
      if (formats.count("dicom")) {
        wo.dicom.synthetic = true;
        wo.dicom.series_description = fmt::format("meddiff synthetic seed={} class={}", seed, cls[j]);
        wo.dicom.image_comments = fmt::format("SYNTHETIC volume generated by meddiff {}; index={} seed={} class={} sampler={} steps={} guidance={}; no patient data",
                                              version(), i, seed, cls[j], sp.sampler, sp.steps, sp.guidance);
        wo.dicom.series_number = static_cast<int>(i % 100000) + 1;
        fs::path f = folder.meta_dir() / (name + "_dicom");
        io::write_volume(v, f, wo);
        files.push_back(fs::relative(f, folder.out()).string());
        if (paired) {  // the label map as a second series of the same grid, marked as a segmentation
          Volume lv = v;
          lv.image = pairs[j].label.to(torch::kFloat);
          io::WriteOptions lo = wo;
          std::string legend;
          for (size_t l = 0; l < ldm.label_names.size(); ++l) legend += fmt::format("{}{}={}", l ? " " : "", l, ldm.label_names[l]);
          lo.dicom.series_description = fmt::format("SEGMENTATION of meddiff synthetic seed={} class={}", seed, cls[j]);
          lo.dicom.image_comments = fmt::format("SEGMENTATION label map (pixel value = label: {}) of a SYNTHETIC volume generated by "
                                                "meddiff {}; index={} seed={}; no patient data", legend, version(), i, seed);
          lo.dicom.series_number = static_cast<int>(i % 100000) + 100001;
          fs::path lf = folder.meta_dir() / (name + "_label_dicom");
          io::write_volume(lv, lf, lo);
          files.push_back(fs::relative(lf, folder.out()).string());
        }
      }
      if (formats.count("png")) {
        fs::path f = folder.meta_dir() / (name + ".png");
        IntensityWindow pw = ldm.modality == Modality::CT ? IntensityWindow{-1000, 1000} : w;
        io::write_png(paired ? contour_panel(v.image, pairs[j].label, v.geometry, pw) : orthogonal_panel(v.image, v.geometry, pw), f,
                      {{"Description", "SYNTHETIC volume generated by meddiff " + version() + "; " + what +
                                           (paired ? "; white: outlines of its label map" : "") + "; no patient data"},
                       {"Software", "meddiff " + version()}});
        files.push_back(fs::relative(f, folder.out()).string());
      }
      nlohmann::json rec = settings;
      rec.update({{"index", i}, {"class", cls[j]}, {"files", files}, {"synthetic", true}, {"modality", to_string(ldm.modality)},
                  {"ldm_step", ldm.step}, {"meddiff_version", version() + "+" + git_hash()}, {"seconds", seconds}});
      if (paired) {
        rec["label_map"] = pairs[j].record;
        rec["qc"] = {{"passed", checks[j].passed}, {"attempts", attempts[j] + 1}, {"labels", checks[j].detail}};
        if (!checks[j].passed) {
          ++qc_failed;
          log_warn("{}: kept after {} attempt(s) although {} (marked qc.passed = false in its sidecar and the manifest)", name,
                   attempts[j] + 1, checks[j].failed);
        }
      }
      folder.commit(i, rec);  // marks the volume finished
    }
  }
  progress.finish();
  int64_t finished = folder.rebuild(ds_json);
  log_info("sample: {} volume(s) written to {} ({} finished in the folder)", todo.size(), out.string(), finished);
  if (paired)
    log_info("sample: per-pair check: {} regeneration(s), {} pair(s) kept failing it{}", qc_regenerated, qc_failed,
             qc_failed ? " (listed above; qc.passed = false in manifest.jsonl)" : "");
  if (r.count("eval")) {
    if (shard.n > 1) {
      log_warn("sample --eval: skipped in shard {}/{}; when every shard has finished, run meddiff eval --synthetic {} ...", shard.k,
               shard.n, out.string());
      return 0;
    }
    Args_t ev{"--real", r["eval"].as<std::string>(), "--synthetic", (out / "manifest.jsonl").string(), "--vqgan", vq_path.string(),
              "--out", (out / "eval").string(), "--device", r["device"].as<std::string>(), "--force"};
    std::string train = r.count("eval-train") ? r["eval-train"].as<std::string>() : ldm.data.manifest;
    if (!train.empty() && (fs::exists(train) || train.find_first_of("*?") != std::string::npos)) {
      ev.push_back("--train");
      ev.push_back(train);
    } else {
      log_warn("sample --eval: no memorisation audit (the LDM's training data '{}' is not here; give --eval-train)", train);
    }
    run_eval(ev);
  }
  return 0;
}

}  // namespace meddiff::cli
