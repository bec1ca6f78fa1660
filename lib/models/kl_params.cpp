#include "models/kl_params.h"
#include "models/monai_args.h"

#include <algorithm>

namespace meddiff {

void KLParams::validate(const std::string& w) const {
  if (channels.empty()) fail("config: '{}.channels' must list at least one level", w);
  if (norm_groups < 1) fail("config: '{}.norm_groups' must be positive (got {})", w, norm_groups);
  for (auto c : channels)
    if (c < 1 || c % norm_groups != 0)
      fail("config: '{}.channels' must be positive multiples of '{}.norm_groups' ({}; got {})", w, w, norm_groups, c);
  if (num_res_blocks.size() != 1 && num_res_blocks.size() != channels.size())
    fail("config: '{}.num_res_blocks' needs one value or one per level ({} levels; got {})", w, channels.size(), num_res_blocks.size());
  for (auto n : num_res_blocks)
    if (n < 0) fail("config: '{}.num_res_blocks' must not be negative (got {})", w, n);
  for (auto l : attention_levels)
    if (l < 0 || l >= levels()) fail("config: '{}.attention_levels' holds {}, outside levels 0..{}", w, l, levels() - 1);
  if (latent_channels < 1) fail("config: '{}.latent_channels' must be positive (got {})", w, latent_channels);
  if (!(norm_eps > 0)) fail("config: '{}.norm_eps' must be positive", w);
  if (upsample != "nearest" && upsample != "trilinear")
    fail("config: '{}.upsample' must be nearest or trilinear (got '{}')", w, upsample);
}

int64_t KLParams::res_blocks(int64_t level) const {
  return num_res_blocks.size() == 1 ? num_res_blocks[0] : num_res_blocks[static_cast<size_t>(level)];
}

bool KLParams::attention_at(int64_t level) const {
  return std::find(attention_levels.begin(), attention_levels.end(), level) != attention_levels.end();
}

MonaiKL kl_from_monai(const nlohmann::json& def, const nlohmann::json& root, const std::string& where) {
  MonaiArgs a(def, root, where);
  MonaiKL m;
  auto target = a.target();
  m.maisi = target.find("AutoencoderKlMaisi") != std::string::npos;
  if (!target.empty() && !m.maisi && target.find("AutoencoderKL") == std::string::npos)
    fail("{}: '_target_' is {}, not MONAI's AutoencoderKL or MAISI's AutoencoderKlMaisi", where, target);
  KLParams& p = m.params;
  p.channels = a.get<std::vector<int64_t>>(a.arg("num_channels").is_null() ? "channels" : "num_channels");
  const size_t levels = p.channels.size();
  p.num_res_blocks = a.per_level("num_res_blocks", levels, std::vector<int64_t>(levels, 2));
  p.attention_levels = a.true_levels("attention_levels", levels);
  p.latent_channels = a.get<int64_t>("latent_channels");
  p.norm_groups = a.get_or<int64_t>("norm_num_groups", 32);
  p.norm_eps = a.get_or<double>("norm_eps", 1e-6);
  p.encoder_mid_attention = a.get_or<bool>("with_encoder_nonlocal_attn", true);
  p.decoder_mid_attention = a.get_or<bool>("with_decoder_nonlocal_attn", true);
  if (a.get_or<bool>("use_convtranspose", false))
    fail("{}: 'use_convtranspose' true is not supported (MAISI's released networks use false)", where);
  p.upsample = m.maisi ? "trilinear" : "nearest";
  p.norm_float16 = m.maisi && a.get_or<bool>("norm_float16", false);
  m.in_channels = a.get<int64_t>("in_channels");
  m.out_channels = a.get<int64_t>("out_channels");
  p.validate(where);
  return m;
}

}  // namespace meddiff
