#include "models/kl_params.h"

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
  if (!(kl_weight >= 0)) fail("config: '{}.kl_weight' must not be negative", w);
}

int64_t KLParams::res_blocks(int64_t level) const {
  return num_res_blocks.size() == 1 ? num_res_blocks[0] : num_res_blocks[static_cast<size_t>(level)];
}

bool KLParams::attention_at(int64_t level) const {
  return std::find(attention_levels.begin(), attention_levels.end(), level) != attention_levels.end();
}

namespace {

// def[key] with a bundle "@name" reference resolved against root; null when absent.
nlohmann::json monai_arg(const nlohmann::json& def, const nlohmann::json& root, const std::string& key, const std::string& where) {
  if (!def.contains(key)) return nullptr;
  nlohmann::json v = def.at(key);
  if (v.is_string() && !v.get<std::string>().empty() && v.get<std::string>()[0] == '@') {
    auto ref = v.get<std::string>().substr(1);
    if (!root.is_object() || !root.contains(ref)) fail("{}: '{}' refers to '@{}', which the config does not define", where, key, ref);
    v = root.at(ref);
  }
  return v;
}

template <typename T>
T monai_get(const nlohmann::json& def, const nlohmann::json& root, const std::string& key, const std::string& where) {
  auto v = monai_arg(def, root, key, where);
  if (v.is_null()) fail("{}: '{}' is missing", where, key);
  try {
    return v.get<T>();
  } catch (const nlohmann::json::exception&) {
    fail("{}: '{}' has the wrong type ({})", where, key, v.dump());
  }
}

}  // namespace

MonaiKL kl_from_monai(const nlohmann::json& def, const nlohmann::json& root, const std::string& where) {
  if (!def.is_object()) fail("{}: not an object", where);
  MonaiKL m;
  auto target = def.value("_target_", std::string());
  m.maisi = target.find("AutoencoderKlMaisi") != std::string::npos;
  if (!target.empty() && !m.maisi && target.find("AutoencoderKL") == std::string::npos)
    fail("{}: '_target_' is {}, not MONAI's AutoencoderKL or MAISI's AutoencoderKlMaisi", where, target);
  auto sd = monai_arg(def, root, "spatial_dims", where);
  if (!sd.is_null() && sd != 3) fail("{}: 'spatial_dims' is {}; only 3-D networks are supported", where, sd.dump());
  KLParams& p = m.params;
  p.channels = monai_get<std::vector<int64_t>>(def, root, def.contains("num_channels") ? "num_channels" : "channels", where);
  auto res = monai_arg(def, root, "num_res_blocks", where);
  if (res.is_number_integer()) p.num_res_blocks = {res.get<int64_t>()};
  else p.num_res_blocks = monai_get<std::vector<int64_t>>(def, root, "num_res_blocks", where);
  p.attention_levels.clear();
  auto att = monai_get<std::vector<bool>>(def, root, "attention_levels", where);
  if (att.size() != p.channels.size())
    fail("{}: 'attention_levels' has {} values for {} levels", where, att.size(), p.channels.size());
  for (size_t i = 0; i < att.size(); ++i)
    if (att[i]) p.attention_levels.push_back(static_cast<int64_t>(i));
  p.latent_channels = monai_get<int64_t>(def, root, "latent_channels", where);
  p.norm_groups = monai_arg(def, root, "norm_num_groups", where).is_null() ? 32 : monai_get<int64_t>(def, root, "norm_num_groups", where);
  p.norm_eps = monai_arg(def, root, "norm_eps", where).is_null() ? 1e-6 : monai_get<double>(def, root, "norm_eps", where);
  auto flag = [&](const char* key, bool dflt) { return monai_arg(def, root, key, where).is_null() ? dflt : monai_get<bool>(def, root, key, where); };
  p.encoder_mid_attention = flag("with_encoder_nonlocal_attn", true);
  p.decoder_mid_attention = flag("with_decoder_nonlocal_attn", true);
  if (flag("use_convtranspose", false)) fail("{}: 'use_convtranspose' true is not supported (MAISI's released networks use false)", where);
  p.upsample = m.maisi ? "trilinear" : "nearest";
  m.in_channels = monai_get<int64_t>(def, root, "in_channels", where);
  m.out_channels = monai_get<int64_t>(def, root, "out_channels", where);
  p.validate(where);
  return m;
}

}  // namespace meddiff
