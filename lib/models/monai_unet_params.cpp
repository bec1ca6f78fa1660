#include "models/monai_unet_params.h"

#include <algorithm>

namespace meddiff {

bool MonaiUNetParams::attention_at(int64_t level) const {
  return std::find(attention_levels.begin(), attention_levels.end(), level) != attention_levels.end();
}

int64_t MonaiUNetParams::heads(int64_t level) const {
  return channels.at(static_cast<size_t>(level)) / num_head_channels.at(static_cast<size_t>(level));
}

int64_t MonaiUNetParams::conditioning_dim() const {
  return embedding_dim() * (1 + int64_t{spacing_input} + int64_t{top_region_input} + int64_t{bottom_region_input});
}

void MonaiUNetParams::validate(const std::string& w) const {
  const size_t L = channels.size();
  if (L < 1) fail("{}: 'channels' must list at least one level", w);
  if (num_res_blocks.size() != L || num_head_channels.size() != L)
    fail("{}: 'num_res_blocks' and 'num_head_channels' need one value per level ({} levels)", w, L);
  if (norm_groups < 1) fail("{}: 'norm_num_groups' must be positive", w);
  for (size_t i = 0; i < L; ++i) {
    if (channels[i] < 1 || channels[i] % norm_groups) fail("{}: 'channels' must be positive multiples of norm_num_groups ({}; got {})", w, norm_groups, channels[i]);
    if (num_res_blocks[i] < 1) fail("{}: 'num_res_blocks' must be positive", w);
    bool attends = attention_at(static_cast<int64_t>(i)) || i + 1 == L;  // the middle block attends at the last level
    if (attends && (num_head_channels[i] < 1 || channels[i] % num_head_channels[i]))
      fail("{}: level {} has {} channels, not a multiple of its num_head_channels {}", w, i, channels[i], num_head_channels[i]);
  }
  for (auto l : attention_levels)
    if (l < 0 || l >= static_cast<int64_t>(L)) fail("{}: attention level {} outside levels 0..{}", w, l, L - 1);
  if (in_channels < 1 || out_channels < 1) fail("{}: 'in_channels' and 'out_channels' must be positive", w);
  if (num_class_embeds < 0) fail("{}: 'num_class_embeds' must not be negative", w);
}

namespace {

// The arguments a DiffusionModelUNet and its ControlNet share (everything but the output and the extra MAISI inputs).
void read_shared(const MonaiArgs& a, MonaiUNetParams& p) {
  const auto& where = a.where();
  if (a.get_or<bool>("with_conditioning", false))
    fail("{}: 'with_conditioning' (cross-attention on a context) is not supported", where);
  if (a.get_or<bool>("use_combined_linear", false))
    fail("{}: 'use_combined_linear' (one qkv projection) is not supported; the released networks use separate q/k/v", where);
  p.in_channels = a.get<int64_t>("in_channels");
  p.channels = a.get<std::vector<int64_t>>(a.arg("num_channels").is_null() ? "channels" : "num_channels");
  const size_t L = p.channels.size();
  p.num_res_blocks = a.per_level("num_res_blocks", L, std::vector<int64_t>(L, 2));
  p.attention_levels = a.true_levels("attention_levels", L);
  p.num_head_channels = a.per_level("num_head_channels", L, std::vector<int64_t>(L, 8));
  p.norm_groups = a.get_or<int64_t>("norm_num_groups", 32);
  p.norm_eps = a.get_or<double>("norm_eps", 1e-6);
  p.resblock_updown = a.get_or<bool>("resblock_updown", false);
  auto classes = a.arg("num_class_embeds");
  p.num_class_embeds = classes.is_null() ? 0 : a.get<int64_t>("num_class_embeds");
  p.include_fc = a.get_or<bool>("include_fc", !p.maisi);
}

}  // namespace

MonaiUNetParams monai_unet_from_json(const nlohmann::json& def, const nlohmann::json& root, const std::string& where) {
  MonaiArgs a(def, root, where);
  MonaiUNetParams p;
  auto target = a.target();
  p.maisi = target.find("DiffusionModelUNetMaisi") != std::string::npos;
  if (!target.empty() && target.find("DiffusionModelUNet") == std::string::npos)
    fail("{}: '_target_' is {}, not MONAI's DiffusionModelUNet or MAISI's DiffusionModelUNetMaisi", where, target);
  read_shared(a, p);
  p.out_channels = a.get<int64_t>("out_channels");
  p.spacing_input = a.get_or<bool>("include_spacing_input", false);
  p.top_region_input = a.get_or<bool>("include_top_region_index_input", false);
  p.bottom_region_input = a.get_or<bool>("include_bottom_region_index_input", false);
  p.validate(where);
  return p;
}

MonaiControlNetParams monai_controlnet_from_json(const nlohmann::json& def, const nlohmann::json& root, const std::string& where) {
  MonaiArgs a(def, root, where);
  MonaiControlNetParams c;
  auto& p = c.unet;
  auto target = a.target();
  p.maisi = target.find("ControlNetMaisi") != std::string::npos;
  if (!target.empty() && target.find("ControlNet") == std::string::npos)
    fail("{}: '_target_' is {}, not MONAI's ControlNet or MAISI's ControlNetMaisi", where, target);
  read_shared(a, p);
  p.out_channels = p.in_channels;
  c.cond_in_channels = a.get_or<int64_t>("conditioning_embedding_in_channels", 1);
  c.cond_channels = a.get_or<std::vector<int64_t>>("conditioning_embedding_num_channels", {16, 32, 96, 256});
  p.validate(where);
  if (c.cond_in_channels < 1) fail("{}: 'conditioning_embedding_in_channels' must be positive", where);
  if (c.cond_channels.empty()) fail("{}: 'conditioning_embedding_num_channels' must list at least one width", where);
  for (auto v : c.cond_channels)
    if (v < 1) fail("{}: 'conditioning_embedding_num_channels' must be positive", where);
  return c;
}

}  // namespace meddiff
