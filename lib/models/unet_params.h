#pragma once
// 3-D U-Net settings for the latent diffusion model.
#include "core/config.h"

#include <array>
#include <vector>

namespace meddiff {

struct UNetParams {
  int64_t base_channels = 64;                    // channels of the first level
  std::vector<int64_t> channel_mults{1, 2, 4};   // per level: base_channels * mult
  int64_t num_res_blocks = 1;                    // residual blocks per level (decoder: one more)
  std::vector<int64_t> attention_levels{2};      // levels (0-based) with self-attention; mid block always
  int64_t attention_heads = 4;
  int64_t max_full_attention_tokens = 4096;      // above this many tokens attention is axial (D, H, W in turn)
  std::vector<std::array<int64_t, 3>> downsample{{2, 2, 2}, {2, 2, 2}};  // per level transition, factor 1 or 2 per axis [D,H,W] (typed x, y, z)
  double dropout = 0.0;
  // Guidance dropout: one uniform u per training sample drops the class when u < class_dropout and
  // the label map when u < label_dropout, so both go together (the unconditional branch guidance
  // uses) with probability min(class_dropout, label_dropout) (train/ldm_step.h).
  double class_dropout = 0.1;                    // probability of training with the null class
  bool conditional = true;                       // class-conditional (false: unconditional model)
  double label_dropout = 0.1;                    // probability of training without the label condition (guidance)

  template <typename V>
  void visit(V& v) {
    v("base_channels", base_channels, "channels of the first U-Net level");
    v("channel_mults", channel_mults, "channel multiplier per level");
    v("num_res_blocks", num_res_blocks, "residual blocks per level (decoder: one more)");
    v("attention_levels", attention_levels, "levels with self-attention (the middle block always has it)");
    v("attention_heads", attention_heads, "attention heads");
    v("max_full_attention_tokens", max_full_attention_tokens, "above this many tokens a level uses axial attention");
    v("downsample", xyz(downsample), "per level transition: factor 1 or 2 per axis [x,y,z]");
    v("dropout", dropout, "dropout in residual blocks");
    v("class_dropout", class_dropout, "probability of replacing the class by the null class in training (guidance); drawn with label_dropout from one uniform, so both are dropped together with probability min(class_dropout, label_dropout)");
    v("conditional", conditional, "class-conditional model (false: unconditional)");
    v("label_dropout", label_dropout, "with data.labels = condition: probability of training without the label map (guidance); see class_dropout");
  }
  void validate(const std::string& where = "unet") const;
};

}  // namespace meddiff
