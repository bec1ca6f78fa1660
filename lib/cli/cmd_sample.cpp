// meddiff sample: synthetic volumes from a trained latent diffusion model, as a resumable batch job.
//
// Volume i (0-based, global) has class --class, or i mod num_classes; its starting noise and every
// sampler step's noise come from (seed, i) alone, so batch size and sharding never change a volume.
// The job folder's bookkeeping (settings, finished volumes, manifest, locks) is cli/sample_job.h.
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/sample_job.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/log.h"
#include "core/output_policy.h"
#include "core/progress.h"
#include "core/sha256.h"
#include "core/version.h"
#include "data/batches.h"
#include "data/intensity.h"
#include "data/preview.h"
#include "io/png.h"
#include "io/volume_writer.h"
#include "pipeline/device.h"
#include "pipeline/generate.h"

#include <chrono>
#include <iostream>
#include <regex>
#include <set>
#include <sstream>

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
  std::stringstream ss(s);
  std::string f;
  while (std::getline(ss, f, ',')) {
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
      ("sampler", "ddpm, ddim or dpmpp2m (default from the config)", cxxopts::value<std::string>())
      ("steps", "Sampler steps (default from the config)", cxxopts::value<int64_t>())
      ("eta", "DDIM eta (default from the config)", cxxopts::value<double>())
      ("dynamic-threshold", "Dynamic thresholding percentile, e.g. 0.995 (0 = off)", cxxopts::value<double>())
      ("seed", "Seed: volume i depends only on (seed, i)", cxxopts::value<uint64_t>()->default_value("0"))
      ("batch", "Volumes per batch (default from the config)", cxxopts::value<int64_t>())
      ("shard", "Do shard K of N: volumes i with i mod N = K-1", cxxopts::value<std::string>()->default_value("1/1"))
      ("format", "Comma-separated: nifti, dicom, png", cxxopts::value<std::string>()->default_value("nifti"))
      ("layout", "flat (synth_NNNNNN.*) or nnunet (imagesTr/<name>_NNNN_0000.nii.gz + dataset.json)",
       cxxopts::value<std::string>()->default_value("flat"))
      ("name", "Case name prefix for the nnunet layout (letters, digits, '-', '_')", cxxopts::value<std::string>()->default_value("meddiff"))
      ("device", "auto, cpu, cuda, cuda:N", cxxopts::value<std::string>()->default_value("auto"))
      ("max-memory", "Memory budget of the decoder in GiB (default: the config's sample.max_memory_gib, else automatic); "
                     "volumes larger than it decode in slabs, with the same result", cxxopts::value<double>())
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
  auto dataset_json = [&](const std::string& modality) {
    return [&, modality](int64_t count) {
      return nlohmann::json{{"channel_names", {{"0", modality == "CT" ? "CT" : "MRI"}}},
                            {"labels", {{"background", 0}}},
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
    int64_t count = folder.rebuild(dataset_json((*job)["info"].value("modality", "MR")));
    log_info("sample --finalize: {} finished volume(s) in {}", count, (out / "manifest.jsonl").string());
    return 0;
  }
  std::string ldm_path = required(r, "ldm");
  int64_t n = r["n"].as<int64_t>();
  if (n < 1 || n > kMaxVolumes) usage_fail("-n must be within 1..{} (got {}); split larger jobs over several folders", kMaxVolumes, n);
  Shard shard = parse_shard(r["shard"].as<std::string>());
  auto formats = parse_formats(r["format"].as<std::string>());
  if (layout.kind == "nnunet" && !formats.count("nifti")) usage_fail("--layout nnunet needs --format nifti");
  uint64_t seed = r["seed"].as<uint64_t>();
  const bool force = r.count("force") > 0, dry_run = r.count("dry-run") > 0;
  if (is_within(ldm_path, out)) fail("{}: holds the input {}; give another folder for the samples", out.string(), ldm_path);
  folder.check_usable();
  torch::Device device = choose_device(r["device"].as<std::string>());

  LoadedLDM ldm = load_ldm(ldm_path, device);
  const auto& defaults = ldm.sample;
  SamplerParams sp;
  sp.sampler = r.count("sampler") ? r["sampler"].as<std::string>() : defaults.sampler;
  sp.steps = r.count("steps") ? r["steps"].as<int64_t>() : defaults.steps;
  sp.eta = r.count("eta") ? r["eta"].as<double>() : defaults.eta;
  sp.guidance = r.count("guidance") ? r["guidance"].as<double>() : defaults.guidance;
  sp.clip_x0 = defaults.clip_x0;
  sp.dynamic_threshold = r.count("dynamic-threshold") ? r["dynamic-threshold"].as<double>() : defaults.dynamic_threshold;
  try {
    sp.validate(ldm.schedule.T);
  } catch (const Error& e) {
    usage_fail("{}", e.what());
  }
  const double terminal_alpha_bar = ldm.schedule.alpha_bar(ldm.schedule.T - 1);
  if (ldm.prediction == Prediction::Eps && sp.sampler != "ddpm" && terminal_alpha_bar < 1e-3)
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
      {"precision", "fp32"},     {"layout", layout.kind},
      {"formats", formats_json}, {"name", layout.kind == "nnunet" ? layout.name : ""}};
  nlohmann::json info = {{"modality", to_string(ldm.modality)}, {"ldm_step", ldm.step}, {"config", ldm.config}};
  auto class_of = [&](int64_t i) { return fixed_class ? *fixed_class : (ldm.num_classes > 0 ? i % ldm.num_classes : 0); };
  auto timesteps = static_cast<int64_t>(sampling_timesteps(ldm.schedule.T, sp.steps).size());

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
    auto t = torch::full({1}, ldm.schedule.T - 1, torch::TensorOptions().dtype(torch::kLong).device(device));
    auto c = torch::full({1}, class_of(mine.front()), torch::TensorOptions().dtype(torch::kLong).device(device));
    auto t0 = std::chrono::steady_clock::now();
    ldm.model->forward(x, t, ldm.num_classes > 0 ? c : torch::Tensor());
    synchronize(device);
    double t_net = seconds_since(t0);
    t0 = std::chrono::steady_clock::now();
    decode_latent(vq.model, ldm.norm.invert(x), decode);
    synchronize(device);
    double t_dec = seconds_since(t0);
    bool guided = ldm.num_classes > 0 && sp.guidance != 1.0;
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
    if (!diff.empty())
      std::cout << fmt::format("  note: {} was sampled with other settings ({}): refused without --force\n", out.string(), diff);
    return 0;
  }

  folder.lock_shard(shard.k, shard.n);
  folder.open(settings, info, force);
  auto ds_json = dataset_json(to_string(ldm.modality));
  folder.rebuild(ds_json);  // repairs a manifest line lost to a kill
  std::vector<int64_t> todo;
  for (int64_t i : mine)
    if (!folder.finished(i)) todo.push_back(i);
  if (static_cast<int64_t>(todo.size()) < static_cast<int64_t>(mine.size()))
    log_info("{}: {} of {} volumes already finished, skipped", out.string(), mine.size() - todo.size(), mine.size());
  IntensityParams ip = ldm.data.intensity();
  IntensityWindow w = output_window(ldm.modality, ip);
  Progress progress(fmt::format("sample ({} {} steps)", sp.sampler, sp.steps), static_cast<int64_t>(todo.size()) * timesteps);
  int64_t steps_done = 0;
  for (size_t b0 = 0; b0 < todo.size(); b0 += static_cast<size_t>(batch)) {
    auto t0 = std::chrono::steady_clock::now();
    std::vector<int64_t> idx(todo.begin() + static_cast<std::ptrdiff_t>(b0),
                             todo.begin() + static_cast<std::ptrdiff_t>(std::min(todo.size(), b0 + static_cast<size_t>(batch))));
    std::vector<torch::Tensor> x_T;
    std::vector<int64_t> cls;
    for (int64_t i : idx) {
      x_T.push_back(noise_for(seed, i, 0, ldm.latent_shape));
      cls.push_back(class_of(i));
    }
    auto classes = torch::tensor(cls, torch::kLong).to(device);
    auto step_noise = [&](int64_t step) {
      std::vector<torch::Tensor> z;
      for (int64_t i : idx) z.push_back(noise_for(seed, i, static_cast<uint64_t>(step + 1), ldm.latent_shape));
      return torch::stack(z).to(device);
    };
    int64_t base_steps = steps_done;
    auto vols = generate_volumes(ldm, vq.model, torch::stack(x_T).to(device), classes, sp, step_noise,
                                 [&](int64_t s, int64_t) { progress.update(base_steps + s * static_cast<int64_t>(idx.size())); },
                                 decode)
                    .to(torch::kCPU, torch::kFloat);
    steps_done = base_steps + timesteps * static_cast<int64_t>(idx.size());
    double seconds = seconds_since(t0) / static_cast<double>(idx.size());
    for (size_t j = 0; j < idx.size(); ++j) {
      int64_t i = idx[j];
      Volume v;
      v.image = denormalise(vols[static_cast<int64_t>(j)][0], w, true);
      v.geometry = ldm.geometry;
      v.modality = ldm.modality;
      std::string name = layout.base_name(i);
      std::string what = fmt::format("seed={} index={} class={}", seed, i, cls[j]);
      nlohmann::json files = nlohmann::json::array();
      // The folder is this job's: a file of an unfinished volume (a killed run) is replaced.
      io::WriteOptions wo;
      wo.overwrite = true;
      wo.description = "SYNTHETIC meddiff " + version() + " " + what;
      if (formats.count("nifti")) {
        fs::path f = folder.images_dir() / (layout.kind == "nnunet" ? name + "_0000.nii.gz" : name + ".nii.gz");
        io::write_volume(v, f, wo);
        files.push_back(fs::relative(f, folder.out()).string());
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
      }
      if (formats.count("png")) {
        fs::path f = folder.meta_dir() / (name + ".png");
        io::write_png(orthogonal_panel(v.image, v.geometry, ldm.modality == Modality::CT ? IntensityWindow{-1000, 1000} : w), f,
                      {{"Description", "SYNTHETIC volume generated by meddiff " + version() + "; " + what + "; no patient data"},
                       {"Software", "meddiff " + version()}});
        files.push_back(fs::relative(f, folder.out()).string());
      }
      nlohmann::json rec = settings;
      rec.update({{"index", i}, {"class", cls[j]}, {"files", files}, {"synthetic", true}, {"modality", to_string(ldm.modality)},
                  {"ldm_step", ldm.step}, {"meddiff_version", version() + "+" + git_hash()}, {"seconds", seconds}});
      folder.commit(i, rec);  // marks the volume finished
    }
  }
  progress.finish();
  int64_t finished = folder.rebuild(ds_json);
  log_info("sample: {} volume(s) written to {} ({} finished in the folder)", todo.size(), out.string(), finished);
  return 0;
}

}  // namespace meddiff::cli
