#include "models/vqgan_params.h"

namespace meddiff {

int64_t VQGANParams::stages() const {
  int64_t s = 0;
  for (auto f : downsample) {
    int64_t n = 0;
    while ((int64_t{1} << n) < f) ++n;
    s = std::max(s, n);
  }
  return s;
}

void VQGANParams::validate(const std::string& w) const {
  if (n_hiddens < 1) fail("config: '{}.n_hiddens' must be positive (got {})", w, n_hiddens);
  for (size_t a = 0; a < 3; ++a) {
    auto f = downsample[a];
    if (f < 1 || (f & (f - 1)) != 0) fail("config: '{}.downsample[{}]' must be a power of two (got {})", w, typed_axis(a), f);
  }
  if (embedding_dim < 1) fail("config: '{}.embedding_dim' must be positive (got {})", w, embedding_dim);
  if (n_codes < 2) fail("config: '{}.n_codes' must be at least 2 (got {})", w, n_codes);
  if (n_res_blocks < 0) fail("config: '{}.n_res_blocks' must not be negative", w);
  if (!(commitment_weight >= 0)) fail("config: '{}.commitment_weight' must not be negative", w);
  if (!(ema_decay > 0 && ema_decay < 1)) fail("config: '{}.ema_decay' must be within (0, 1) (got {})", w, ema_decay);
  if (!(ema_eps > 0)) fail("config: '{}.ema_eps' must be positive", w);
  if (!(restart_threshold >= 0)) fail("config: '{}.restart_threshold' must not be negative", w);
  if (disc_channels < 1 || disc_layers < 1) fail("config: '{}.disc_channels' and '{}.disc_layers' must be positive", w, w);
  if (decoder_labels < 0 || decoder_labels == 1)
    fail("config: '{}.decoder_labels' must be 0 (off) or the number of label values, at least 2 (got {})", w, decoder_labels);
  if (!(decoder_label_dropout >= 0 && decoder_label_dropout < 1))
    fail("config: '{}.decoder_label_dropout' must be within [0, 1) (got {})", w, decoder_label_dropout);
  if (decoder_label_heads && decoder_labels == 0)
    fail("config: '{}.decoder_label_heads' needs '{}.decoder_labels' (the number of label values)", w, w);
  if (disc_norm != "batch" && disc_norm != "group") fail("config: '{}.disc_norm' must be batch or group (got '{}')", w, disc_norm);
}

}  // namespace meddiff

namespace meddiff {
std::vector<std::array<int64_t, 3>> stage_strides(const VQGANParams& p) {
  std::vector<std::array<int64_t, 3>> out;
  auto left = p.downsample;
  for (int64_t i = 0; i < p.stages(); ++i) {
    std::array<int64_t, 3> s{};
    for (size_t a = 0; a < 3; ++a) {
      s[a] = left[a] > 1 ? 2 : 1;
      left[a] /= s[a];
    }
    out.push_back(s);
  }
  return out;
}
}  // namespace meddiff
