#include "train/memory_probe.h"

#include "core/log.h"
#include "models/vqgan.h"
#include "pipeline/device.h"
#include "train/ldm_step.h"
#include "train/vqgan_step.h"

#include <chrono>

namespace meddiff {
namespace {

constexpr double kMiB = 1024.0 * 1024.0;

struct Measured {
  double step_mib = 0, seconds = 0;
};

// One step on a throw-away model first: what a training process pays once (LibTorch's lazy set-up,
// thread pools, kernel caches) then belongs to the base, not to a batch size.
template <typename Build, typename Step>
double warm_base(const torch::Device& device, Build&& build, Step&& run_step) {
  {
    auto stepper = build();
    run_step(*stepper, 0);
    synchronize(device);
  }
  reset_peak_rss();
  return current_rss_mib();
}

// Two steps with `run_step(i)` after `build()`, returning the peak growth over the base.
template <typename Build, typename Step>
Measured measure(const torch::Device& device, double base_mib, Build&& build, Step&& run_step) {
  reset_peak_rss();
  reset_peak_device_memory(device);
  Measured m;
  {
    auto stepper = build();
    run_step(*stepper, 0);  // first step: the optimiser state comes to life
    synchronize(device);
    auto t0 = std::chrono::steady_clock::now();
    run_step(*stepper, 1);
    synchronize(device);
    m.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    m.step_mib = device.is_cuda() ? peak_device_mib(device) : peak_rss_mib() - base_mib;
  }
  return m;
}

void finish(MemoryProbe& p, int64_t batch) {
  double per_sample =
      p.step_mib_batch2 > 0 ? std::max(0.0, p.step_mib_batch2 - p.step_mib_batch1) / static_cast<double>(p.second_batch - 1) : 0;
  p.total_mib = (p.device_memory ? 0 : p.base_mib + p.data_mib) + p.step_mib_batch1 + per_sample * static_cast<double>(batch - 1);
}

// The warm-up, then micro-batch 1 and min(4, batch): `micro` is the batch size
// the build and step functions read, `config_micro` the copy of the config's setting they build with.
template <typename Build, typename Step>
void measure_batches(MemoryProbe& p, const torch::Device& device, int64_t batch, int64_t& config_micro, int64_t& micro,
                     Build&& build, Step&& run) {
  config_micro = micro = 1;
  p.base_mib = warm_base(device, build, run);
  // Micro-batch 1 and the config's micro-batch up to 4: a short extrapolation (measured: from 1 and 2
  // to 10, stage 2 came out 14 % under the real peak; VQ-GAN configs at batch <= 2 within 3 %).
  const int64_t second = std::min<int64_t>(4, batch);
  std::vector<int64_t> sizes{1};
  if (second > 1) sizes.push_back(second);
  for (int64_t b : sizes) {
    config_micro = micro = b;
    auto m = measure(device, p.base_mib, build, run);
    if (b == 1) {
      p.step_mib_batch1 = m.step_mib;
      p.seconds_per_step = m.seconds;
    } else {
      p.step_mib_batch2 = m.step_mib;
      p.second_batch = b;
    }
  }
  finish(p, batch);
}

Batch random_batch(int64_t b, const std::vector<int64_t>& shape, int64_t step, int64_t cond_channels = 0) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(1000 + step));
  std::vector<int64_t> s{b};
  s.insert(s.end(), shape.begin(), shape.end());
  Batch batch;
  batch.step = step;
  batch.x = torch::rand(s, gen) * 2 - 1;
  batch.labels = torch::zeros({b}, torch::kLong);
  if (cond_channels > 0) batch.cond = torch::softmax(torch::rand({b, cond_channels, s[2], s[3], s[4]}, gen), 1);
  return batch;
}

}  // namespace

std::vector<MemoryProbe> probe_vqgan_memory(const RunConfig& cfg, int64_t cases) {
  torch::Device device = choose_device(cfg.vqgan_train.device);
  const auto& shape = cfg.data.shape;
  double data_mib = static_cast<double>(cases) * static_cast<double>(shape[0] * shape[1] * shape[2]) * 4 / kMiB;
  std::vector<MemoryProbe> out;
  const bool gan_reached = cfg.vqgan_train.gan_start < cfg.vqgan_train.steps;
  for (bool gan : {false, true}) {
    if (gan && !gan_reached) continue;
    if (!gan && cfg.vqgan_train.gan_start == 0) continue;
    RunConfig c = cfg;
    c.vqgan_train.gan_start = gan ? 0 : int64_t{1} << 40;
    c.vqgan_train.grad_accum = 1;
    MemoryProbe p;
    p.what = gan ? "VQ-GAN with the adversarial terms (from vqgan_train.gan_start)" : "VQ-GAN before vqgan_train.gan_start";
    p.device = device.str();
    p.device_memory = device.is_cuda();
    p.data_mib = data_mib;
    int64_t b = 1;
    auto build = [&] { return std::make_unique<VQGANStepper>(c, device); };
    auto run = [&](VQGANStepper& st, int64_t i) {
      st.step(i, [&](int64_t) { return random_batch(b, {1, shape[0], shape[1], shape[2]}, i); });
    };
    log_info("dry run: measuring {} on {} (a warm-up step, then two real steps per micro-batch size)",
             gan ? "the adversarial phase" : "stage 1", p.device);
    measure_batches(p, device, cfg.vqgan_train.batch_size, c.vqgan_train.batch_size, b, build, run);
    out.push_back(p);
  }
  return out;
}

MemoryProbe probe_ldm_memory(const RunConfig& cfg, int64_t cases, int64_t num_classes) {
  torch::Device device = choose_device(cfg.ldm_train.device);
  auto lat = latent_shape(cfg.vqgan, cfg.data.shape, "data.shape");
  const double shape_vox = static_cast<double>(cfg.data.shape[0] * cfg.data.shape[1] * cfg.data.shape[2]);
  const double lat_elems = static_cast<double>(lat[0] * lat[1] * lat[2] * lat[3]);
  MemoryProbe p;
  p.what = "LDM";
  p.device = device.str();
  p.device_memory = device.is_cuda();
  // The trainer holds the training volumes, their latents (raw and normalised) and the frozen VQ-GAN.
  VQGAN vq(cfg.vqgan);
  double vq_bytes = 0;
  for (const auto& t : vq->parameters()) vq_bytes += static_cast<double>(t.numel()) * 4;
  for (const auto& t : vq->buffers()) vq_bytes += static_cast<double>(t.numel()) * 4;
  p.data_mib = (static_cast<double>(cases) * (shape_vox + 2 * lat_elems) * 4 + vq_bytes) / kMiB;
  RunConfig c = cfg;
  c.ldm_train.grad_accum = 1;
  int64_t b = 1;
  // a label-conditioned model's condition: the configured labels (or two, when they are named by the data)
  const int64_t labels = cfg.data.label_conditioned() ? std::max<int64_t>(2, static_cast<int64_t>(cfg.data.label_names.size())) : 0;
  auto build = [&] { return std::make_unique<LDMStepper>(c, lat[0], num_classes, device, labels); };
  auto run = [&](LDMStepper& st, int64_t i) {
    st.step(i, [&](int64_t) { return random_batch(b, {lat[0], lat[1], lat[2], lat[3]}, i, labels); });
  };
  log_info("dry run: measuring stage 2 on {} (a warm-up step, then two real steps per micro-batch size)", p.device);
  measure_batches(p, device, cfg.ldm_train.batch_size, c.ldm_train.batch_size, b, build, run);
  return p;
}

std::string format_probe(const MemoryProbe& p, int64_t batch) {
  std::string measured = p.step_mib_batch2 > 0 ? fmt::format("{:.0f} MiB at micro-batch 1, {:.0f} MiB at {}", p.step_mib_batch1,
                                                             p.step_mib_batch2, p.second_batch)
                                               : fmt::format("{:.0f} MiB at micro-batch 1", p.step_mib_batch1);
  if (p.device_memory)
    return fmt::format("  {}: {:.2f} GiB of {} memory at micro-batch {} (measured: {}; CUDA allocator peak, without the CUDA "
                       "context); {:.2f} s per step",
                       p.what, p.total_mib / 1024, p.device, batch, measured, p.seconds_per_step);
  return fmt::format("  {}: {:.2f} GiB peak resident memory at micro-batch {} (process {:.0f} MiB + data {:.0f} MiB + measured "
                     "step: {}); {:.2f} s per step on {}",
                     p.what, p.total_mib / 1024, batch, p.base_mib, p.data_mib, measured, p.seconds_per_step, p.device);
}

}  // namespace meddiff
