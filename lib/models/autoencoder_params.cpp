#include "models/autoencoder_params.h"

#include "models/vqgan.h"

namespace meddiff {

KLParams trained_kl_defaults() {
  KLParams p;
  p.channels = {64, 128, 256};
  p.num_res_blocks = {2};
  p.attention_levels = {};
  p.latent_channels = 4;
  p.norm_groups = 32;
  p.norm_eps = 1e-6;
  p.encoder_mid_attention = false;
  p.decoder_mid_attention = false;
  p.upsample = "trilinear";
  return p;
}

void AutoencoderParams::validate(const std::string& w) const {
  if (kind != "vqgan" && kind != "kl") fail("config: '{}.kind' must be vqgan or kl (got '{}')", w, kind);
  if (is_kl()) kl.validate(w + ".kl");
}

std::array<int64_t, 3> stage1_downsample(const AutoencoderParams& a, const VQGANParams& vq) {
  if (!a.is_kl()) return vq.downsample;
  const int64_t f = a.kl.downsample();
  return {f, f, f};
}

std::array<int64_t, 4> stage1_latent_shape(const AutoencoderParams& a, const VQGANParams& vq, const std::array<int64_t, 3>& shape,
                                           const std::string& where) {
  if (!a.is_kl()) return latent_shape(vq, shape, where);
  const int64_t f = a.kl.downsample();
  std::array<int64_t, 4> out{a.kl.latent_channels, 0, 0, 0};
  for (size_t i = 0; i < 3; ++i) {
    if (shape[i] % f != 0)
      fail("config: '{}[{}]' = {} is not divisible by the KL autoencoder's downsampling {} (2^(levels-1) of autoencoder.kl.channels)",
           where, typed_axis(i), shape[i], f);
    out[i + 1] = shape[i] / f;
  }
  return out;
}

}  // namespace meddiff
