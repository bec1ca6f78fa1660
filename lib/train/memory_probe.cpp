#include "train/memory_probe.h"

#include "core/log.h"
#include "core/progress.h"
#include "models/vqgan.h"
#include "pipeline/device.h"
#include "train/ldm_step.h"
#include "train/vqgan_step.h"

#include <algorithm>
#include <chrono>
#include <cmath>

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

int64_t voxels(const std::array<int64_t, 3>& s) { return s[0] * s[1] * s[2]; }

// The warm-up, then micro-batch 1 and min(4, batch) at the config's shape: `micro` is the batch size
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
      // seconds at the config's micro-batch, linear in the batch
      p.seconds_per_step += std::max(0.0, m.seconds - p.seconds_per_step) / static_cast<double>(b - 1) * static_cast<double>(batch - 1);
    }
  }
  finish(p, batch);
}

// The micro-batch of the reduced probes. At least 2: LibTorch's CPU convolution takes another algorithm for
// a single small volume (measured on the duke config at 64x64x16: 612 MiB a step at micro-batch 1, 483 MiB
// at 2), and a full-size volume takes the batched one (probes at micro-batch 1 read the duke VQ-GAN at
// 27.2 GiB where its steps peak at 10.1 GiB).
int64_t probe_batch(int64_t batch) { return std::max<int64_t>(2, std::min<int64_t>(batch, 4)); }

// The warm-up, then micro-batch `micro` (set by the caller, `probe_batch`) at each reduced shape (`shape` is
// what build and step read), fitted as F + a * voxels x batch and extrapolated to `full` voxels x `batch`;
// seconds likewise.
template <typename Build, typename Step>
void measure_reduced(MemoryProbe& p, const torch::Device& device, int64_t batch, int64_t micro, const std::array<int64_t, 3>& full,
                     const std::vector<std::array<int64_t, 3>>& shapes, std::array<int64_t, 3>& shape, Build&& build, Step&& run) {
  shape = shapes.front();
  p.base_mib = warm_base(device, build, run);
  std::array<double, 2> mib{}, sec{}, vox{};
  for (size_t i = 0; i < 2; ++i) {
    shape = shapes[i];
    auto m = measure(device, p.base_mib, build, run);
    mib[i] = m.step_mib;
    sec[i] = m.seconds;
    vox[i] = static_cast<double>(voxels(shape) * micro);
  }
  p.shapes = shapes;
  p.second_batch = micro;
  p.step_mib_batch1 = mib[0];
  p.step_mib_batch2 = mib[1];
  const double per_voxel = std::max(0.0, (mib[1] - mib[0]) / (vox[1] - vox[0]));
  const double fixed = mib[0] - per_voxel * vox[0];
  const double full_vox = static_cast<double>(voxels(full)) * static_cast<double>(batch);
  p.total_mib = (p.device_memory ? 0 : p.base_mib + p.data_mib) + fixed + per_voxel * full_vox;
  const double per_voxel_s = std::max(0.0, (sec[1] - sec[0]) / (vox[1] - vox[0]));
  p.seconds_per_step = std::max(sec[1], sec[0] + per_voxel_s * (full_vox - vox[0]));
}

// The product of every downsampling along each axis [D, H, W]: the autoencoder's and the U-Net's levels.
std::array<int64_t, 3> shape_unit(const RunConfig& cfg) {
  std::array<int64_t, 3> u = stage1_downsample(cfg.autoencoder, cfg.vqgan);
  for (const auto& level : cfg.ldm.unet.downsample)
    for (size_t a = 0; a < 3; ++a) u[a] *= level[a];
  return u;
}

std::string shape_xyz(const std::array<int64_t, 3>& s) { return fmt::format("{}x{}x{}", s[2], s[1], s[0]); }

// Full mode at a clinical shape: say first how long it will take, from a reduced probe's step time.
void announce_full(const std::string& what, double seconds_per_step, int64_t steps) {
  log_info("dry run: measuring {} at the full training shape: {} steps of about {:.1f} s, about {} (without --measure-full the "
           "estimate comes from two reduced shapes in seconds)",
           what, steps, seconds_per_step, format_duration(seconds_per_step * static_cast<double>(steps)));
}

// A batch of random latents [b, shape]; with `labels` random label maps under them.
Batch random_batch(int64_t b, const std::vector<int64_t>& shape, int64_t step, const LabelCondition& labels = {}) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(1000 + step));
  std::vector<int64_t> s{b};
  s.insert(s.end(), shape.begin(), shape.end());
  Batch batch;
  batch.step = step;
  batch.x = torch::rand(s, gen) * 2 - 1;
  batch.labels = torch::zeros({b}, torch::kLong);
  if (labels.num_labels > 0)
    batch.seg = torch::randint(0, labels.num_labels, {b, s[2] * labels.factor[0], s[3] * labels.factor[1], s[4] * labels.factor[2]}, gen,
                               torch::kLong);
  return batch;
}

}  // namespace

std::vector<std::array<int64_t, 3>> reduced_probe_shapes(const std::array<int64_t, 3>& full, const std::array<int64_t, 3>& unit,
                                                         int64_t min_size) {
  constexpr int64_t kDirect = 64 * 64 * 64;  // up to this many voxels the config's shape is measured as it is
  if (voxels(full) <= kDirect) return {};
  std::array<int64_t, 3> most{};
  for (size_t a = 0; a < 3; ++a) most[a] = std::max<int64_t>(1, full[a] / std::max<int64_t>(1, unit[a]));
  auto multiples = [&](double fraction) {
    std::array<int64_t, 3> m{};
    const double f = std::cbrt(fraction);
    for (size_t a = 0; a < 3; ++a) {
      const int64_t lo = std::min(most[a], (min_size + unit[a] - 1) / unit[a]);
      m[a] = std::clamp<int64_t>(std::llround(static_cast<double>(most[a]) * f), std::max<int64_t>(1, lo), most[a]);
    }
    return m;
  };
  auto m1 = multiples(1.0 / 32), m2 = multiples(1.0 / 16);
  auto count = [](const std::array<int64_t, 3>& m) { return voxels(m); };
  while (2 * count(m2) < 3 * count(m1)) {  // the second at least 1.5 times the first: grow the axis with the most room
    size_t best = 3;
    double room = 1.0;
    for (size_t a = 0; a < 3; ++a) {
      const double r = static_cast<double>(most[a]) / static_cast<double>(m2[a]);
      if (m2[a] < most[a] && r > room) best = a, room = r;
    }
    if (best == 3) return {};
    ++m2[best];
  }
  std::array<int64_t, 3> s1{}, s2{};
  for (size_t a = 0; a < 3; ++a) s1[a] = m1[a] * unit[a], s2[a] = m2[a] * unit[a];
  if (2 * voxels(s2) > voxels(full)) return {};  // hardly smaller: measure the config's shape
  return {s1, s2};
}

std::vector<MemoryProbe> probe_vqgan_memory(const RunConfig& cfg, int64_t cases, const ProbeOptions& o) {
  torch::Device device = choose_device(cfg.vqgan_train.device);
  const auto& full = cfg.data.shape;
  const int64_t C = cfg.data.image_channels();
  double data_mib = static_cast<double>(cases * C) * static_cast<double>(full[0] * full[1] * full[2]) * 4 / kMiB;
  // a training step sees the patch (vqgan_train.patch) or the whole volume
  const auto& patch = cfg.vqgan_train.patch;
  const auto shape = patch[0] > 0 ? patch : full;
  std::vector<MemoryProbe> out;
  const bool gan_reached = cfg.vqgan_train.gan_start < cfg.vqgan_train.steps;
  for (bool gan : {false, true}) {
    if (gan && !gan_reached) continue;
    if (!gan && cfg.vqgan_train.gan_start == 0) continue;
    RunConfig c = cfg;
    c.data.shape = shape;
    c.vqgan_train.patch = {0, 0, 0};
    c.vqgan_train.gan_start = gan ? 0 : int64_t{1} << 40;
    c.vqgan_train.grad_accum = 1;
    MemoryProbe p;
    const std::string ae_name = cfg.autoencoder.is_kl() ? "KL autoencoder" : "VQ-GAN";
    p.what = gan ? ae_name + " with the adversarial terms (from vqgan_train.gan_start)" : ae_name + " before vqgan_train.gan_start";
    p.device = device.str();
    p.device_memory = device.is_cuda();
    p.data_mib = data_mib;
    int64_t b = 1;
    auto build = [&] { return std::make_unique<VQGANStepper>(c, device); };
    auto run = [&](VQGANStepper& st, int64_t i) {
      const auto& s = c.data.shape;
      st.step(i, [&](int64_t) { return random_batch(b, {C, s[0], s[1], s[2]}, i); });
    };
    const auto reduced = reduced_probe_shapes(shape, shape_unit(cfg), 8);
    if (!reduced.empty()) {
      log_info("dry run: measuring {} on {} at the reduced shapes {} and {} (x,y,z)", gan ? "the adversarial phase" : "stage 1",
               p.device, shape_xyz(reduced[0]), shape_xyz(reduced[1]));
      c.vqgan_train.batch_size = b = probe_batch(cfg.vqgan_train.batch_size);
      measure_reduced(p, device, cfg.vqgan_train.batch_size, b, shape, reduced, c.data.shape, build, run);
      c.data.shape = shape;
    }
    if (reduced.empty() || o.full) {
      if (!reduced.empty()) announce_full(gan ? "the adversarial phase" : "stage 1", p.seconds_per_step, 5);
      MemoryProbe f = p;
      f.shapes.clear();
      log_info("dry run: measuring {} on {} (a warm-up step, then two real steps per micro-batch size)",
               gan ? "the adversarial phase" : "stage 1", p.device);
      measure_batches(f, device, cfg.vqgan_train.batch_size, c.vqgan_train.batch_size, b, build, run);
      p = f;
    }
    out.push_back(p);
  }
  return out;
}

MemoryProbe probe_ldm_memory(const RunConfig& cfg, int64_t cases, int64_t num_classes, const ProbeOptions& o) {
  torch::Device device = choose_device(cfg.ldm_train.device);
  auto lat = cfg.latent_shape(cfg.data.shape, "data.shape");
  const double shape_vox = static_cast<double>(cfg.data.shape[0] * cfg.data.shape[1] * cfg.data.shape[2]);
  const double lat_elems = static_cast<double>(lat[0] * lat[1] * lat[2] * lat[3]);
  MemoryProbe p;
  p.what = "LDM";
  p.device = device.str();
  p.device_memory = device.is_cuda();
  // The trainer holds the training volumes, their latents (raw and normalised) and the frozen autoencoder.
  auto ae = make_stage1_model(cfg, cfg.data.image_channels());
  double vq_bytes = 0;
  for (const auto& t : ae->module().parameters()) vq_bytes += static_cast<double>(t.numel()) * 4;
  for (const auto& t : ae->module().buffers()) vq_bytes += static_cast<double>(t.numel()) * 4;
  p.data_mib = (static_cast<double>(cases) * (shape_vox * static_cast<double>(cfg.data.image_channels()) + 2 * lat_elems) * 4 + vq_bytes) / kMiB;
  RunConfig c = cfg;
  c.ldm_train.grad_accum = 1;
  int64_t b = 1;
  // a label-conditioned model's condition: the configured labels (or two, when they are named by the data)
  const int64_t num_labels = cfg.data.label_conditioned() ? std::max<int64_t>(2, static_cast<int64_t>(cfg.data.label_names.size())) : 0;
  const LabelCondition labels(cfg.ldm.label_condition, num_labels, cfg.data.shape, {lat[1], lat[2], lat[3]});
  auto build = [&] { return std::make_unique<LDMStepper>(c, lat[0], num_classes, device, labels); };
  auto run = [&](LDMStepper& st, int64_t i) {
    auto l = c.latent_shape(c.data.shape, "data.shape");
    st.step(i, [&](int64_t) { return random_batch(b, {l[0], l[1], l[2], l[3]}, i, labels); });
  };
  // The latents are small (a 32x256x256 volume: 16x32x32), so stage 2 is measured at its own shape unless the
  // latent itself is large: extrapolated from reduced latents, the parameters' and Adam's fixed gigabytes
  // swamp the activations' slope (measured: lidc-ct-128 11.4 GiB for a real 8.1, duke 8.3 for 6.3).
  const bool large_latent = lat[1] * lat[2] * lat[3] > int64_t{64} * 64 * 64;
  const auto reduced = large_latent ? reduced_probe_shapes(cfg.data.shape, shape_unit(cfg), 8) : std::vector<std::array<int64_t, 3>>{};
  if (!reduced.empty()) {
    log_info("dry run: measuring stage 2 on {} at the latents of the reduced shapes {} and {} (x,y,z)", p.device,
             shape_xyz(reduced[0]), shape_xyz(reduced[1]));
    c.ldm_train.batch_size = b = probe_batch(cfg.ldm_train.batch_size);
    measure_reduced(p, device, cfg.ldm_train.batch_size, b, cfg.data.shape, reduced, c.data.shape, build, run);
    c.data.shape = cfg.data.shape;
  }
  if (reduced.empty() || o.full) {
    if (!reduced.empty()) announce_full("stage 2", p.seconds_per_step, 5);
    MemoryProbe f = p;
    f.shapes.clear();
    log_info("dry run: measuring stage 2 on {} (a warm-up step, then two real steps per micro-batch size)", p.device);
    measure_batches(f, device, cfg.ldm_train.batch_size, c.ldm_train.batch_size, b, build, run);
    p = f;
  }
  return p;
}

std::string format_probe(const MemoryProbe& p, int64_t batch) {
  std::string measured = !p.shapes.empty()
                             ? fmt::format("{:.0f} MiB at {} and {:.0f} MiB at {} (x,y,z), micro-batch {}, extrapolated linearly "
                                           "in voxels x batch",
                                           p.step_mib_batch1, shape_xyz(p.shapes[0]), p.step_mib_batch2, shape_xyz(p.shapes[1]),
                                           p.second_batch)
                         : p.step_mib_batch2 > 0 ? fmt::format("{:.0f} MiB at micro-batch 1, {:.0f} MiB at {}", p.step_mib_batch1,
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
