#include "train/train_config.h"

#include "train/augmented_copies.h"

#include "models/vqgan.h"

#include <cmath>

namespace meddiff {

namespace {
// The settings every trainer shares: precision, device, logging/checkpoint intervals, NaN guard.
void validate_run_settings(const std::string& w, const std::string& precision, const std::string& device,
                           int64_t log_every, int64_t val_every, int64_t ckpt_every, int64_t nan_abort) {
  if (precision != "auto" && precision != "fp32" && precision != "bf16")
    fail("config: '{}.precision' must be auto, fp32 or bf16 (got '{}')", w, precision);
  if (device != "auto" && device != "cpu" && device.rfind("cuda", 0) != 0)
    fail("config: '{}.device' must be auto, cpu, cuda or cuda:N (got '{}')", w, device);
  if (log_every < 1 || val_every < 1 || ckpt_every < 1) fail("config: '{}.log_every', 'val_every' and 'ckpt_every' must be positive", w);
  if (nan_abort < 1) fail("config: '{}.nan_abort' must be positive", w);
}
}  // namespace

void VQGANTrainParams::validate(const std::string& w) const {
  if (steps < 1) fail("config: '{}.steps' must be positive (got {})", w, steps);
  if (batch_size < 1) fail("config: '{}.batch_size' must be positive (got {})", w, batch_size);
  if (!(label_balance >= 0 && label_balance <= 1)) fail("config: '{}.label_balance' must be within [0, 1] (got {})", w, label_balance);
  if (grad_accum < 1) fail("config: '{}.grad_accum' must be positive (got {})", w, grad_accum);
  if (optimizer != "adam" && optimizer != "adamw") fail("config: '{}.optimizer' must be adam or adamw (got '{}')", w, optimizer);
  if (!(lr > 0)) fail("config: '{}.lr' must be positive (got {})", w, lr);
  if (!(lr_decay >= 0 && lr_decay <= 1)) fail("config: '{}.lr_decay' must be within [0, 1] (got {})", w, lr_decay);
  for (size_t i = 0; i < 2; ++i)
    if (!(betas[i] >= 0 && betas[i] < 1)) fail("config: '{}.betas[{}]' must be within [0, 1) (got {})", w, i, betas[i]);
  if (!(grad_clip >= 0)) fail("config: '{}.grad_clip' must not be negative", w);
  if (!(kl_weight >= 0)) fail("config: '{}.kl_weight' must not be negative (got {})", w, kl_weight);
  if (slice_axis < 0 || slice_axis > 2) fail("config: '{}.slice_axis' must be 0, 1 or 2 (got {})", w, slice_axis);
  if (perceptual_weight > 0 && perceptual_model.empty())
    fail("config: '{}.perceptual_weight' is {} but '{}.perceptual_model' names no TorchScript file", w, perceptual_weight, w);
  validate_run_settings(w, precision, device, log_every, val_every, ckpt_every, nan_abort);
}

void LDMTrainParams::validate(const std::string& w) const {
  if (steps < 1) fail("config: '{}.steps' must be positive (got {})", w, steps);
  if (batch_size < 1) fail("config: '{}.batch_size' must be positive (got {})", w, batch_size);
  if (!(label_balance >= 0 && label_balance <= 1)) fail("config: '{}.label_balance' must be within [0, 1] (got {})", w, label_balance);
  if (grad_accum < 1) fail("config: '{}.grad_accum' must be positive (got {})", w, grad_accum);
  if (!(lr > 0)) fail("config: '{}.lr' must be positive (got {})", w, lr);
  if (warmup < 0) fail("config: '{}.warmup' must not be negative", w);
  for (size_t i = 0; i < 2; ++i)
    if (!(betas[i] >= 0 && betas[i] < 1)) fail("config: '{}.betas[{}]' must be within [0, 1)", w, i);
  if (!(ema_decay >= 0 && ema_decay < 1)) fail("config: '{}.ema_decay' must be within [0, 1) (got {})", w, ema_decay);
  if (augment_copies < 0 || augment_copies > kMaxAugmentCopies)
    fail("config: '{}.augment_copies' must be within [0, {}] (got {})", w, kMaxAugmentCopies, augment_copies);
  validate_run_settings(w, precision, device, log_every, val_every, ckpt_every, nan_abort);
}

void RunConfig::validate() const {
  if (axis_order != kAxisOrder)
    fail("config: 'axis_order' must be \"xyz\" (got \"{}\"): meddiff reads every shape, spacing and per-axis factor as x,y,z",
         axis_order);
  data.validate("data");
  autoencoder.validate("autoencoder");
  vqgan.validate("vqgan");
  vqgan_train.validate("vqgan_train");
  ldm.validate("ldm");
  ldm_train.validate("ldm_train");
  sample.validate("sample");
  const bool flow_sampler = sample.sampler == "euler" || sample.sampler == "heun";
  if (ldm.rflow() && !flow_sampler)
    fail("config: 'sample.sampler' must be euler or heun for ldm.objective = rflow (got '{}')", sample.sampler);
  if (!ldm.rflow() && flow_sampler)
    fail("config: 'sample.sampler' {} needs ldm.objective = rflow; use ddpm, ddim or dpmpp2m", sample.sampler);
  if (!ldm.rflow() && sample.steps > ldm.timesteps)
    fail("config: 'sample.steps' ({}) exceeds 'ldm.timesteps' ({})", sample.steps, ldm.timesteps);
  latent_shape(data.shape, "data.shape");
  if (ldm_train.augment_copies > 0 && !data.label_conditioned())
    fail("config: 'ldm_train.augment_copies' is {}, but copies are made for models conditioned on label maps: set "
         "data.labels = condition, or augment_copies = 0", ldm_train.augment_copies);
  if (vqgan.decoder_labels > 0 && autoencoder.is_kl())
    fail("config: 'vqgan.decoder_labels' is {}, but a label-conditioned decoder is the VQ-GAN's; with autoencoder.kind = kl set it to 0",
         vqgan.decoder_labels);
  if (vqgan.decoder_labels > 0 && !data.label_conditioned())
    fail("config: 'vqgan.decoder_labels' is {}: the decoder sees the pairs' label maps, which sampling has only with data.labels = "
         "condition; set that, or decoder_labels = 0", vqgan.decoder_labels);
  if (autoencoder.is_kl() && ldm.latent_norm == "codebook_minmax")
    fail("config: 'ldm.latent_norm' is codebook_minmax, which needs a VQ-GAN's codebook; with autoencoder.kind = kl use channel_meanstd");
  const auto& patch = vqgan_train.patch;
  if (patch[0] != 0 || patch[1] != 0 || patch[2] != 0) {
    for (size_t a = 0; a < 3; ++a)
      if (patch[a] < 1 || patch[a] > data.shape[a])
        fail("config: 'vqgan_train.patch' is [{}] (x,y,z): every size must be within 1..data.shape ([{}]), or all 0 for whole volumes",
             fmt::join(std::vector<int64_t>{patch[2], patch[1], patch[0]}, ","),
             fmt::join(std::vector<int64_t>{data.shape[2], data.shape[1], data.shape[0]}, ","));
    latent_shape(patch, "vqgan_train.patch");
    if (!(vqgan_train.patch_foreground >= 0 && vqgan_train.patch_foreground <= 1))
      fail("config: 'vqgan_train.patch_foreground' must be within [0, 1] (got {})", vqgan_train.patch_foreground);
  }
  // Each stage halves the axis with replicate padding: the discriminator and codebook need room.
  auto lat = latent_shape(data.shape, "data.shape");
  for (size_t a = 0; a < 3; ++a) {
    int64_t f = 1;
    for (const auto& d : ldm.unet.downsample) f *= d[a];
    if (lat[a + 1] % f != 0)
      fail("config: 'ldm.unet.downsample' halves latent axis {} {} times, but the latent size there is {} "
           "(data.shape[{}] / the autoencoder's downsampling)", "xyz"[typed_axis(a)], f == 1 ? 0 : static_cast<int>(std::log2(f)),
           lat[a + 1], typed_axis(a));
  }
  int64_t positions = lat[1] * lat[2] * lat[3];
  if (!autoencoder.is_kl() && vqgan.n_codes > positions * vqgan_train.batch_size * 1000)
    fail("config: 'vqgan.n_codes' = {} is far more than the {} latent positions per batch can ever use", vqgan.n_codes,
         positions * vqgan_train.batch_size);
  for (size_t a = 0; a < 3; ++a)
    if (data.shape[a] < 8 && vqgan_train.video_gan_weight > 0 && vqgan_train.gan_start < vqgan_train.steps)
      fail("config: 'data.shape[{}]' = {} is too small for the 3-D discriminator (at least 8)", typed_axis(a), data.shape[a]);
}

RunConfig resolve_config(const std::string& file, const std::vector<std::string>& overrides) {
  json j = config_to_json(RunConfig{});
  if (!file.empty()) {
    json f = load_json_file(file);
    check_axis_order(f, file);
    // Read the file strictly (unknown keys named), then merge over the defaults.
    (void)config_from_json<RunConfig>(f);
    j.merge_patch(f);
  }
  return with_overrides(std::move(j), overrides);
}

RunConfig with_overrides(json config, const std::vector<std::string>& overrides) {
  for (const auto& o : overrides) apply_override(config, o);
  auto c = config_from_json<RunConfig>(config);
  c.validate();
  return c;
}

}  // namespace meddiff
