#include "train/train_config.h"

#include "models/vqgan.h"

namespace meddiff {

void VQGANTrainParams::validate(const std::string& w) const {
  if (steps < 1) fail("config: '{}.steps' must be positive (got {})", w, steps);
  if (batch_size < 1) fail("config: '{}.batch_size' must be positive (got {})", w, batch_size);
  if (optimizer != "adam" && optimizer != "adamw") fail("config: '{}.optimizer' must be adam or adamw (got '{}')", w, optimizer);
  if (!(lr > 0)) fail("config: '{}.lr' must be positive (got {})", w, lr);
  for (size_t i = 0; i < 2; ++i)
    if (!(betas[i] >= 0 && betas[i] < 1)) fail("config: '{}.betas[{}]' must be within [0, 1) (got {})", w, i, betas[i]);
  if (!(grad_clip >= 0)) fail("config: '{}.grad_clip' must not be negative", w);
  if (slice_axis < 0 || slice_axis > 2) fail("config: '{}.slice_axis' must be 0, 1 or 2 (got {})", w, slice_axis);
  if (perceptual_weight > 0 && perceptual_model.empty())
    fail("config: '{}.perceptual_weight' is {} but '{}.perceptual_model' names no TorchScript file", w, perceptual_weight, w);
  if (precision != "auto" && precision != "fp32" && precision != "bf16")
    fail("config: '{}.precision' must be auto, fp32 or bf16 (got '{}')", w, precision);
  if (device != "auto" && device != "cpu" && device.rfind("cuda", 0) != 0)
    fail("config: '{}.device' must be auto, cpu, cuda or cuda:N (got '{}')", w, device);
  if (log_every < 1 || val_every < 1 || ckpt_every < 1) fail("config: '{}.log_every', 'val_every' and 'ckpt_every' must be positive", w);
  if (nan_abort < 1) fail("config: '{}.nan_abort' must be positive", w);
}

void VQGANConfig::validate() const {
  data.validate("data");
  vqgan.validate("vqgan");
  vqgan_train.validate("vqgan_train");
  latent_shape(vqgan, data.shape, "data.shape");
  // Each stage halves the axis with replicate padding: the discriminator and codebook need room.
  auto lat = latent_shape(vqgan, data.shape, "data.shape");
  int64_t positions = lat[1] * lat[2] * lat[3];
  if (vqgan.n_codes > positions * vqgan_train.batch_size * 1000)
    fail("config: 'vqgan.n_codes' = {} is far more than the {} latent positions per batch can ever use", vqgan.n_codes,
         positions * vqgan_train.batch_size);
  for (size_t a = 0; a < 3; ++a)
    if (data.shape[a] < 8 && vqgan_train.video_gan_weight > 0 && vqgan_train.gan_start < vqgan_train.steps)
      fail("config: 'data.shape[{}]' = {} is too small for the 3-D discriminator (at least 8)", a, data.shape[a]);
}

VQGANConfig resolve_vqgan_config(const std::string& file, const std::vector<std::string>& overrides) {
  json j = config_to_json(VQGANConfig{});
  if (!file.empty()) {
    json f = load_json_file(file);
    // Read the file strictly (unknown keys named), then merge over the defaults.
    (void)config_from_json<VQGANConfig>(f);
    j.merge_patch(f);
  }
  for (const auto& o : overrides) apply_override(j, o);
  auto c = config_from_json<VQGANConfig>(j);
  c.validate();
  return c;
}

}  // namespace meddiff
