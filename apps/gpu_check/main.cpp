// meddiff-gpu-check OUTDIR [--steps N] [--device D]: stage 1 and stage 2 training and sampling on CUDA
// against the same runs on the CPU, from in-memory phantoms (no ITK, no files in). Writes
// OUTDIR/gpu-check.json and OUTDIR/gpu-check.txt: pass/fail per check, seconds per step, peak CUDA
// memory. Exit 0 when all checks pass, 1 when one fails, 2 when there is no CUDA device.
// --device cpu runs the second side on the CPU too: the checks' own self-test on a machine without a GPU.
// --configs DIR also runs three real training steps of both stages at every config's size and batch
// in DIR (random data) on the device, recording seconds per step and the peak CUDA memory, and runs the
// kernel benchmark (kernel_bench.h; --no-kernel-bench skips it).
#include "core/fs.h"
#include "kernel_bench.h"
#include "core/version.h"
#include "data/batches.h"
#include "data/phantom.h"
#include "data/preprocess.h"
#include "pipeline/device.h"
#include "pipeline/generate.h"
#include "pipeline/latents.h"
#include "train/ldm_step.h"
#include "train/train_config.h"
#include "train/vqgan_step.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>

using namespace meddiff;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

RunConfig check_config() {
  RunConfig c;
  c.data.shape = {32, 32, 32};
  c.vqgan.n_hiddens = 16;
  c.vqgan.downsample = {2, 2, 2};
  c.vqgan.n_codes = 512;
  c.vqgan.disc_channels = 16;
  c.vqgan_train.batch_size = 2;
  c.vqgan_train.lr = 3e-4;
  c.vqgan_train.gan_start = 20;  // the adversarial phase runs too
  c.ldm.timesteps = 100;
  c.ldm.prediction = "v";
  c.ldm.loss = "l2";
  c.ldm.latent_norm = "channel_meanstd";
  c.ldm.unet.base_channels = 32;
  c.ldm.unet.channel_mults = {1, 2, 2};
  c.ldm.unet.downsample = {{2, 2, 2}, {2, 2, 2}};
  c.ldm.unet.attention_levels = {1, 2};
  c.ldm.unet.attention_heads = 4;
  c.ldm_train.batch_size = 4;
  c.ldm_train.warmup = 5;
  return c;
}

struct Curve {
  std::vector<double> loss;
  double seconds_per_step = 0, peak_mib = 0;
};

// Mean relative difference of two loss curves.
double curve_difference(const Curve& a, const Curve& b) {
  double s = 0;
  for (size_t i = 0; i < a.loss.size(); ++i) s += std::abs(a.loss[i] - b.loss[i]) / std::max(1e-8, std::abs(a.loss[i]));
  return s / static_cast<double>(std::max<size_t>(1, a.loss.size()));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: meddiff-gpu-check OUTDIR [--steps N] [--device cuda|cuda:N|cpu]\n");
    return 2;
  }
  fs::path out = argv[1];
  int64_t steps = 30;
  std::string device_spec = "cuda";
  fs::path configs;
  bool kernel_bench = true;
  for (int i = 2; i < argc; ++i)
    if (std::string(argv[i]) == "--no-kernel-bench") kernel_bench = false;
  for (int i = 2; i + 1 < argc; ++i) {
    if (std::string(argv[i]) == "--steps") steps = std::stoll(argv[i + 1]);
    if (std::string(argv[i]) == "--device") device_spec = argv[i + 1];
    if (std::string(argv[i]) == "--configs") configs = argv[i + 1];
  }
  if (device_spec != "cpu" && !torch::cuda::is_available()) {
    std::fprintf(stderr, "meddiff-gpu-check: no CUDA device\n");
    return 2;
  }
  fs::create_directories(out);
  torch::Device cuda(device_spec);
  RunConfig cfg = check_config();
  // In-memory MR phantoms, prepared as the trainers prepare files.
  std::vector<TrainingVolume> cases;
  PhantomParams pp;
  pp.shape = cfg.data.shape;
  for (int64_t i = 0; i < 16; ++i) cases.push_back(preprocess(make_phantom(pp, i, i % 2), cfg.data, i % 2, "phantom"));
  nlohmann::json report = {{"meddiff", version() + "+" + git_hash()}, {"libtorch", torch_version()}, {"steps", steps}};
  bool ok = true;
  auto check = [&](const std::string& name, bool pass, const nlohmann::json& detail) {
    report["checks"][name] = {{"pass", pass}, {"detail", detail}};
    ok = ok && pass;
  };

  // Stage 1 on both devices from the same initialisation and batches.
  std::vector<Curve> s1(2);
  std::vector<std::unique_ptr<VQGANStepper>> vq;
  for (int d = 0; d < 2; ++d) {
    torch::Device dev = d == 0 ? torch::Device(torch::kCPU) : cuda;
    RunConfig c = cfg;
    c.vqgan_train.device = d == 0 ? "cpu" : device_spec;
    vq.push_back(std::make_unique<VQGANStepper>(c, dev));
    reset_peak_device_memory(dev);
    auto t0 = std::chrono::steady_clock::now();
    for (int64_t s = 0; s < steps; ++s)
      s1[d].loss.push_back(vq.back()->step(s, [&](int64_t) { return make_batch(cases, 2, 1, s, true); }).l1);
    synchronize(dev);
    s1[d].seconds_per_step = seconds_since(t0) / static_cast<double>(steps);
    s1[d].peak_mib = peak_device_mib(dev);
  }
  double d1 = curve_difference(s1[0], s1[1]);
  check("stage1_loss_curve", d1 < 0.15 && std::isfinite(s1[1].loss.back()),
        {{"mean_relative_difference", d1}, {"cpu", s1[0].loss}, {"cuda", s1[1].loss}});
  report["stage1"] = {{"cpu_seconds_per_step", s1[0].seconds_per_step}, {"cuda_seconds_per_step", s1[1].seconds_per_step},
                      {"cuda_peak_mib", s1[1].peak_mib}};

  // Stage 2 on the CPU VQ-GAN's latents, both devices from the same initialisation.
  auto frozen_ae = vq[0]->model->inference();
  VQGAN frozen = std::dynamic_pointer_cast<VQGANAutoencoder>(frozen_ae)->model;  // this check's config trains a VQ-GAN
  auto lat = encode_latents(*frozen_ae, cases, torch::kCPU);
  LatentNorm norm = fit_latent_norm(cfg.ldm.latent_norm, *frozen_ae, lat.latents);
  auto zn = norm.apply(lat.latents);
  std::vector<TrainingVolume> items = latent_items(zn, lat.classes);
  std::vector<Curve> s2(2);
  std::vector<std::unique_ptr<LDMStepper>> ldm;
  for (int d = 0; d < 2; ++d) {
    torch::Device dev = d == 0 ? torch::Device(torch::kCPU) : cuda;
    RunConfig c = cfg;
    c.ldm_train.device = d == 0 ? "cpu" : device_spec;
    ldm.push_back(std::make_unique<LDMStepper>(c, zn.size(1), 2, dev));
    reset_peak_device_memory(dev);
    auto t0 = std::chrono::steady_clock::now();
    for (int64_t s = 0; s < steps; ++s)
      s2[d].loss.push_back(ldm.back()->step(s, [&](int64_t) { return make_batch(items, 4, 2, s, false); }).loss);
    synchronize(dev);
    s2[d].seconds_per_step = seconds_since(t0) / static_cast<double>(steps);
    s2[d].peak_mib = peak_device_mib(dev);
  }
  double d2 = curve_difference(s2[0], s2[1]);
  check("stage2_loss_curve", d2 < 0.15 && std::isfinite(s2[1].loss.back()),
        {{"mean_relative_difference", d2}, {"cpu", s2[0].loss}, {"cuda", s2[1].loss}});
  report["stage2"] = {{"cpu_seconds_per_step", s2[0].seconds_per_step}, {"cuda_seconds_per_step", s2[1].seconds_per_step},
                      {"cuda_peak_mib", s2[1].peak_mib}};

  // Sampling 2 volumes with the CPU-trained models on both devices (fp32 both): close volumes.
  std::vector<torch::Tensor> vols;
  std::vector<double> secs;
  for (int d = 0; d < 2; ++d) {
    torch::Device dev = d == 0 ? torch::Device(torch::kCPU) : cuda;
    LoadedLDM l;
    UNet3d net(cfg.ldm.unet, zn.size(1), 2);
    {
      torch::NoGradGuard ng;
      auto src = ldm[0]->ema->named_parameters(), dst = net->named_parameters();
      for (auto& p : dst) p.value().copy_(src[p.key()]);
      auto sb = ldm[0]->ema->named_buffers(), db = net->named_buffers();
      for (auto& b : db) b.value().copy_(sb[b.key()]);
    }
    net->to(dev);
    net->eval();
    l.net = std::make_shared<UNet3dDenoiser>(net);
    l.schedule = ldm[0]->schedule;
    l.prediction = ldm[0]->prediction;
    l.norm = norm;
    l.num_classes = 2;
    VQGAN v(cfg.vqgan);
    {
      torch::NoGradGuard ng;
      auto src = frozen->named_parameters(), dst = v->named_parameters();
      for (auto& p : dst) p.value().copy_(src[p.key()]);
      auto sb = frozen->named_buffers(), db = v->named_buffers();
      for (auto& b : db) b.value().copy_(sb[b.key()]);
    }
    v->to(dev);
    v->eval();
    SamplerParams sp;
    sp.steps = 20;
    auto gen = at::make_generator<at::CPUGeneratorImpl>(123);
    auto x_T = torch::randn({2, zn.size(1), zn.size(2), zn.size(3), zn.size(4)}, gen);
    reset_peak_device_memory(dev);
    auto t0 = std::chrono::steady_clock::now();
    VQGANAutoencoder ae(v);
    vols.push_back(generate_volumes(l, ae, x_T.to(dev), torch::tensor({0, 1}, torch::kLong).to(dev), torch::Tensor(), sp,
                                    [&](int64_t) { return torch::zeros_like(x_T).to(dev); })
                       .cpu());
    synchronize(dev);
    secs.push_back(seconds_since(t0) / 2);
  }
  double mean_diff = (vols[0] - vols[1]).abs().mean().item<double>(), max_diff = (vols[0] - vols[1]).abs().max().item<double>();
  check("sampling_cpu_vs_cuda", mean_diff < 0.02, {{"mean_abs_difference", mean_diff}, {"max_abs_difference", max_diff}});
  report["sampling"] = {{"cpu_seconds_per_volume", secs[0]}, {"cuda_seconds_per_volume", secs[1]},
                        {"cuda_peak_mib", peak_device_mib(cuda)}};
  std::string kernel_text;
  if (kernel_bench && cuda.is_cuda() && !configs.empty()) {
    try {
      report["kernels"] = kernel_benchmark(cuda, configs.string(), kernel_text);
    } catch (const std::exception& e) {
      report["kernels"] = {{"error", e.what()}};
      kernel_text = fmt::format("kernel benchmark failed: {}\n", e.what());
    }
  }
  // The shipped configs at their real sizes: three steps each (the first allocates the optimiser state).
  std::string config_lines;
  if (!configs.empty()) {
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(configs))
      if (e.path().extension() == ".json") files.push_back(e.path());
    std::sort(files.begin(), files.end());
    for (const auto& f : files) {
      RunConfig c = resolve_config(f.string(), {});
      c.vqgan_train.device = c.ldm_train.device = device_spec;
      c.vqgan_train.gan_start = 1;  // the adversarial phase: the heavier one
      nlohmann::json rec;
      try {
        auto shape = c.data.shape;
        auto run_steps = [&](auto& stepper, const std::vector<int64_t>& batch_shape, int64_t batch) {
          reset_peak_device_memory(cuda);
          auto t0 = std::chrono::steady_clock::now();
          for (int64_t s = 0; s < 3; ++s) {
            if (s == 1) {
              synchronize(cuda);
              t0 = std::chrono::steady_clock::now();
            }
            stepper.step(s, [&](int64_t) {
              std::vector<int64_t> full{batch};
              full.insert(full.end(), batch_shape.begin(), batch_shape.end());
              Batch b;
              b.step = s;
              b.x = torch::rand(full) * 2 - 1;
              b.labels = torch::zeros({batch}, torch::kLong);
              return b;
            });
          }
          synchronize(cuda);
          return std::make_pair(seconds_since(t0) / 2, peak_device_mib(cuda));
        };
        {
          VQGANStepper st(c, cuda);
          auto [sec, mib] = run_steps(st, {1, shape[0], shape[1], shape[2]}, c.vqgan_train.batch_size);
          rec["vqgan"] = {{"batch", c.vqgan_train.batch_size}, {"seconds_per_step", sec}, {"peak_mib", mib}};
        }
        auto lat = latent_shape(c.vqgan, shape, "data.shape");
        {
          LDMStepper st(c, lat[0], 2, cuda);
          auto [sec, mib] = run_steps(st, {lat[0], lat[1], lat[2], lat[3]}, c.ldm_train.batch_size);
          rec["ldm"] = {{"batch", c.ldm_train.batch_size}, {"seconds_per_step", sec}, {"peak_mib", mib}};
        }
        config_lines += fmt::format("  {}: VQ-GAN batch {} {:.3f} s/step, peak {:.0f} MiB; LDM batch {} {:.3f} s/step, peak {:.0f} MiB\n",
                                    f.filename().string(), c.vqgan_train.batch_size, rec["vqgan"]["seconds_per_step"].get<double>(),
                                    rec["vqgan"]["peak_mib"].get<double>(), c.ldm_train.batch_size,
                                    rec["ldm"]["seconds_per_step"].get<double>(), rec["ldm"]["peak_mib"].get<double>());
      } catch (const std::exception& e) {
        rec["error"] = e.what();
        config_lines += fmt::format("  {}: {}\n", f.filename().string(), std::string(e.what()).substr(0, 200));
      }
      report["configs"][f.filename().string()] = rec;
    }
  }
  report["pass"] = ok;
  write_text_atomically(out / "gpu-check.json", report.dump(2) + "\n");
  std::string text = fmt::format(
      "meddiff GPU check ({} steps per stage): {}\n"
      "  stage 1 (VQ-GAN 32^3, batch 2, bf16 on CUDA): {:.3f} s/step CPU, {:.3f} s/step CUDA, peak {:.0f} MiB; loss curves differ by {:.1f} %\n"
      "  stage 2 (U-Net, latent 8x16^3, batch 4): {:.3f} s/step CPU, {:.3f} s/step CUDA, peak {:.0f} MiB; loss curves differ by {:.1f} %\n"
      "  sampling (DDIM 20 steps, 2 volumes): {:.2f} s/volume CPU, {:.2f} s/volume CUDA; mean |difference| {:.4f}, max {:.4f}\n",
      steps, ok ? "PASS" : "FAIL", s1[0].seconds_per_step, s1[1].seconds_per_step, s1[1].peak_mib, 100 * d1,
      s2[0].seconds_per_step, s2[1].seconds_per_step, s2[1].peak_mib, 100 * d2, secs[0], secs[1], mean_diff, max_diff);
  text += kernel_text;
  if (!config_lines.empty()) text += "shipped configs (3 steps, random data, adversarial phase on):\n" + config_lines;
  write_text_atomically(out / "gpu-check.txt", text);
  std::cout << text;
  return ok ? 0 : 1;
}
