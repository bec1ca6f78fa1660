// meddiff sample: synthetic volumes from a trained latent diffusion model, as a resumable batch job.
//
// Volume i (0-based, global) has class --class, or i mod num_classes; its starting noise and every
// sampler step's noise come from (seed, i) alone, so batch size and sharding never change a volume.
// A volume is finished when its sidecar JSON exists; re-running into the same folder skips finished
// volumes. Every file is written under a temporary name and renamed when complete.
#include "cli/args.h"
#include "cli/commands.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/sha256.h"
#include "core/version.h"
#include "data/batches.h"
#include "data/intensity.h"
#include "data/preview.h"
#include "io/png.h"
#include "io/volume_writer.h"
#include "train/device.h"
#include "train/ldm_trainer.h"

#include <chrono>
#include <fcntl.h>
#include <set>
#include <sstream>
#include <unistd.h>

namespace meddiff::cli {
namespace {

struct Shard {
  int64_t k = 1, n = 1;  // shard k of n, 1-based
};

Shard parse_shard(const std::string& s) {
  auto slash = s.find('/');
  Shard sh;
  try {
    if (slash == std::string::npos) throw std::invalid_argument(s);
    sh.k = std::stoll(s.substr(0, slash));
    sh.n = std::stoll(s.substr(slash + 1));
  } catch (const std::exception&) {
    usage_fail("--shard takes K/N, e.g. 2/8 (got '{}')", s);
  }
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

// One line appended with O_APPEND in a single write: concurrent shards do not interleave lines.
void append_line(const fs::path& path, const std::string& line) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (fd < 0) fail("{}: cannot open for appending", path.string());
  std::string l = line + "\n";
  auto n = ::write(fd, l.data(), l.size());
  ::close(fd);
  if (n != static_cast<ssize_t>(l.size())) fail("{}: write failed", path.string());
}

torch::Tensor noise_for(uint64_t seed, int64_t index, uint64_t stream, const std::array<int64_t, 4>& shape) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(step_seed(seed, index, stream));
  return torch::randn({shape[0], shape[1], shape[2], shape[3]}, gen);
}

}  // namespace

int run_sample(const Args_t& args) {
  Args a("sample",
         "Generate synthetic volumes with a trained latent diffusion model (resumable, shardable batch job). Writes "
         "NIfTI / DICOM / PNG, one sidecar JSON per volume and OUT/manifest.jsonl.");
  a.add()("ldm", "LDM checkpoint (stage 2 last.pt)", cxxopts::value<std::string>())
      ("vqgan", "VQ-GAN checkpoint (default: the one the LDM was trained with)", cxxopts::value<std::string>())
      ("n", "Number of volumes (global count, across shards)", cxxopts::value<int64_t>()->default_value("1"))
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
      ("name", "Case name prefix for the nnunet layout", cxxopts::value<std::string>()->default_value("meddiff"))
      ("device", "auto, cpu, cuda, cuda:N", cxxopts::value<std::string>()->default_value("auto"))
      ("out", "Output folder", cxxopts::value<std::string>());
  auto r = a.parse(args);
  fs::path out = required(r, "out");
  std::string ldm_path = required(r, "ldm");
  int64_t n = r["n"].as<int64_t>();
  if (n < 1) usage_fail("-n must be at least 1");
  Shard shard = parse_shard(r["shard"].as<std::string>());
  auto formats = parse_formats(r["format"].as<std::string>());
  std::string layout = r["layout"].as<std::string>();
  if (layout != "flat" && layout != "nnunet") usage_fail("--layout must be flat or nnunet (got '{}')", layout);
  if (layout == "nnunet" && !formats.count("nifti")) usage_fail("--layout nnunet needs --format nifti");
  uint64_t seed = r["seed"].as<uint64_t>();
  torch::Device device = choose_device(r["device"].as<std::string>());

  LoadedLDM ldm = load_ldm(ldm_path, device);
  const auto& defaults = ldm.config.sample;
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
  std::string vq_sha = sha256_file(vq_path), ldm_sha = sha256_file(ldm_path);
  if (!ldm.vqgan_sha256.empty() && vq_sha != ldm.vqgan_sha256)
    fail("{}: is not the VQ-GAN this LDM was trained with (SHA-256 {}..., expected {}...)", vq_path.string(),
         vq_sha.substr(0, 12), ldm.vqgan_sha256.substr(0, 12));
  LoadedVQGAN vq = load_vqgan(vq_path, device);

  fs::create_directories(out);
  fs::path images = layout == "nnunet" ? out / "imagesTr" : out;
  fs::path meta = layout == "nnunet" ? out / "meddiff" : out;
  fs::create_directories(images);
  fs::create_directories(meta);
  auto base_name = [&](int64_t i) {
    return layout == "nnunet" ? fmt::format("{}_{:04d}", r["name"].as<std::string>(), i) : fmt::format("synth_{:06d}", i);
  };
  std::vector<int64_t> todo;
  int64_t mine = 0;
  for (int64_t i = shard.k - 1; i < n; i += shard.n) {
    ++mine;
    if (!fs::exists(meta / (base_name(i) + ".json"))) todo.push_back(i);
  }
  if (static_cast<int64_t>(todo.size()) < mine) log_info("{}: {} of {} volumes already finished, skipped", out.string(), mine - static_cast<int64_t>(todo.size()), mine);
  IntensityParams ip = ldm.config.data.intensity();
  IntensityWindow w = output_window(ldm.modality, ip);
  int64_t total_steps = static_cast<int64_t>(todo.size()) * static_cast<int64_t>(sampling_timesteps(ldm.schedule.T, sp.steps).size());
  Progress progress(fmt::format("sample ({} {} steps)", sp.sampler, sp.steps), total_steps);
  int64_t steps_done = 0;
  for (size_t b0 = 0; b0 < todo.size(); b0 += static_cast<size_t>(batch)) {
    auto t0 = std::chrono::steady_clock::now();
    std::vector<int64_t> idx(todo.begin() + static_cast<std::ptrdiff_t>(b0),
                             todo.begin() + static_cast<std::ptrdiff_t>(std::min(todo.size(), b0 + static_cast<size_t>(batch))));
    std::vector<torch::Tensor> x_T;
    std::vector<int64_t> cls;
    for (int64_t i : idx) {
      x_T.push_back(noise_for(seed, i, 0, ldm.latent_shape));
      cls.push_back(fixed_class ? *fixed_class : (ldm.num_classes > 0 ? i % ldm.num_classes : 0));
    }
    auto classes = torch::tensor(cls, torch::kLong).to(device);
    auto step_noise = [&](int64_t step) {
      std::vector<torch::Tensor> z;
      for (int64_t i : idx) z.push_back(noise_for(seed, i, static_cast<uint64_t>(step + 1), ldm.latent_shape));
      return torch::stack(z).to(device);
    };
    int64_t base_steps = steps_done;
    auto vols = generate_volumes(ldm, vq.model, torch::stack(x_T).to(device), classes, sp, step_noise,
                                 [&](int64_t s, int64_t) { progress.update(base_steps + s * static_cast<int64_t>(idx.size())); })
                    .to(torch::kCPU, torch::kFloat);
    steps_done = base_steps + static_cast<int64_t>(sampling_timesteps(ldm.schedule.T, sp.steps).size()) * static_cast<int64_t>(idx.size());
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / static_cast<double>(idx.size());
    for (size_t j = 0; j < idx.size(); ++j) {
      int64_t i = idx[j];
      Volume v;
      v.image = denormalise(vols[static_cast<int64_t>(j)][0], w, true);
      v.geometry = ldm.geometry;
      v.modality = ldm.modality;
      std::string name = base_name(i);
      nlohmann::json files = nlohmann::json::array();
      if (formats.count("nifti")) {
        std::string f = layout == "nnunet" ? name + "_0000.nii.gz" : name + ".nii.gz";
        io::write_volume(v, images / f);
        files.push_back(fs::relative(images / f, out).string());
      }
      if (formats.count("dicom")) {
        io::WriteOptions wo;
        wo.dicom.synthetic = true;
        wo.dicom.series_description = fmt::format("meddiff synthetic seed={} class={}", seed, cls[j]);
        wo.dicom.image_comments = fmt::format("SYNTHETIC volume generated by meddiff {}; index={} seed={} class={} sampler={} steps={} guidance={}; no patient data",
                                              version(), i, seed, cls[j], sp.sampler, sp.steps, sp.guidance);
        wo.dicom.series_number = static_cast<int>(i % 100000) + 1;
        io::write_volume(v, meta / (name + "_dicom"), wo);
        files.push_back(fs::relative(meta / (name + "_dicom"), out).string());
      }
      if (formats.count("png")) {
        io::write_png(orthogonal_panel(v.image, v.geometry, ldm.modality == Modality::CT ? IntensityWindow{-1000, 1000} : w),
                      meta / (name + ".png"));
        files.push_back(fs::relative(meta / (name + ".png"), out).string());
      }
      nlohmann::json rec = {{"files", files}, {"index", i}, {"seed", seed}, {"class", cls[j]}, {"sampler", sp.sampler},
                            {"steps", sp.steps}, {"eta", sp.eta}, {"guidance", sp.guidance},
                            {"dynamic_threshold", sp.dynamic_threshold}, {"synthetic", true},
                            {"ldm_sha256", ldm_sha}, {"vqgan_sha256", vq_sha}, {"ldm_step", ldm.step},
                            {"meddiff_version", version() + "+" + git_hash()}, {"seconds", seconds},
                            {"modality", to_string(ldm.modality)}, {"config", config_to_json(ldm.config)}};
      write_text_atomically(meta / (name + ".json"), rec.dump(2) + "\n");  // marks the volume finished
      append_line(out / "manifest.jsonl", rec.dump());
    }
  }
  progress.finish();
  if (layout == "nnunet") {
    int64_t count = 0;
    for (const auto& e : fs::directory_iterator(images))
      if (e.path().filename().string().find("_0000.nii.gz") != std::string::npos && e.path().filename().string()[0] != '.') ++count;
    nlohmann::json ds = {{"channel_names", {{"0", ldm.modality == Modality::CT ? "CT" : "MRI"}}},
                         {"labels", {{"background", 0}}},
                         {"numTraining", count},
                         {"file_ending", ".nii.gz"},
                         {"name", r["name"].as<std::string>()},
                         {"description", "SYNTHETIC volumes generated by meddiff; no patient data"}};
    write_text_atomically(out / "dataset.json", ds.dump(2) + "\n");
  }
  log_info("sample: {} volume(s) written to {}", todo.size(), out.string());
  return 0;
}

}  // namespace meddiff::cli
