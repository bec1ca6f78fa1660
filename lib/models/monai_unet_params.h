#pragma once
// Settings of MONAI's DiffusionModelUNet and MAISI's DiffusionModelUNetMaisi (models/monai_unet.h), read from
// the network definitions users have (a MONAI bundle's inference config, NV-Generate-CTMR's
// config_network_rflow.json "diffusion_unet_def").
#include "models/monai_args.h"

#include <cstdint>
#include <string>
#include <vector>

namespace meddiff {

struct MonaiUNetParams {
  int64_t in_channels = 4, out_channels = 4;
  std::vector<int64_t> channels{32, 64, 64, 64};          // per level
  std::vector<int64_t> num_res_blocks{2, 2, 2, 2};        // per level (the decoder has one more per level)
  std::vector<int64_t> attention_levels{2, 3};            // levels with self-attention after each residual block
  std::vector<int64_t> num_head_channels{8, 8, 8, 8};     // channels per attention head, per level
  int64_t norm_groups = 32;
  double norm_eps = 1e-6;
  bool resblock_updown = false;   // residual blocks with average pooling / nearest upsampling between levels
  int64_t num_class_embeds = 0;   // > 0: a class embedding added to the time embedding
  bool include_fc = true;         // attention output projection
  bool spacing_input = false;     // MAISI: voxel spacing through Linear-SiLU-Linear, concatenated to the embedding
  bool top_region_input = false, bottom_region_input = false;  // MAISI: body-region vectors, the same way
  bool maisi = false;             // DiffusionModelUNetMaisi

  int64_t levels() const { return static_cast<int64_t>(channels.size()); }
  bool attention_at(int64_t level) const;
  int64_t heads(int64_t level) const;            // channels[level] / num_head_channels[level]
  int64_t downsample() const { return int64_t{1} << (levels() - 1); }
  int64_t embedding_dim() const { return 4 * channels.at(0); }
  int64_t conditioning_dim() const;              // the time embedding plus the concatenated inputs
  void validate(const std::string& where) const;
};

// From a network definition; MAISI's class sets MAISI's defaults (include_fc false). Cross-attention
// conditioning (with_conditioning) is refused: no released model meddiff imports uses it.
MonaiUNetParams monai_unet_from_json(const nlohmann::json& def, const nlohmann::json& root, const std::string& where);

// MONAI's ControlNet / MAISI's ControlNetMaisi: a copy of the U-Net's encoder (`unet`: its channels, blocks,
// attention, classes; no output, no spacing input) and the conditioning embedding: convolutions of the
// condition (MAISI: the label map's 8 bit planes, at image resolution) through `cond_channels`, each width
// after the first reached by a stride-2 convolution, to the U-Net's first width.
struct MonaiControlNetParams {
  MonaiUNetParams unet;
  int64_t cond_in_channels = 1;
  std::vector<int64_t> cond_channels{16, 32, 96, 256};
  int64_t cond_downsample() const { return int64_t{1} << (cond_channels.size() - 1); }
};
MonaiControlNetParams monai_controlnet_from_json(const nlohmann::json& def, const nlohmann::json& root, const std::string& where);

}  // namespace meddiff
