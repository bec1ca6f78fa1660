#pragma once
// Settings of the KL-regularised autoencoder (Rombach et al. 2022; MONAI's AutoencoderKL and MAISI's
// AutoencoderKlMaisi): per level `channels[i]` with `num_res_blocks[i]` residual blocks, a stride-2
// convolution between levels (downsampling 2^(levels-1) per axis), optional self-attention at chosen
// levels and in the middle, a Gaussian posterior of `latent_channels` channels.
#include "core/config.h"
#include "core/error.h"

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace meddiff {

struct KLParams {
  std::vector<int64_t> channels{32, 64, 64, 64};    // per level (all multiples of norm_groups)
  std::vector<int64_t> num_res_blocks{2, 2, 2, 2};  // per level (one value: every level)
  std::vector<int64_t> attention_levels{2, 3};      // levels (0-based) with self-attention after each residual block
  int64_t latent_channels = 3;
  int64_t norm_groups = 32;
  double norm_eps = 1e-6;
  bool encoder_mid_attention = true;  // MONAI's with_encoder_nonlocal_attn: res block, attention, res block at the bottom
  bool decoder_mid_attention = true;  // with_decoder_nonlocal_attn
  std::string upsample = "nearest";   // decoder upsampling before its 3^3 convolution: nearest (MONAI) or trilinear (MAISI)
  bool norm_float16 = false;          // MAISI's norm_float16: the residual blocks' and the last GroupNorm's output in float16

  template <typename V>
  void visit(V& v) {
    v("channels", channels, "channels per level (multiples of norm_groups); downsampling is 2^(levels-1) per axis");
    v("num_res_blocks", num_res_blocks, "residual blocks per level (one value: every level)");
    v("attention_levels", attention_levels, "levels (0-based) with self-attention after each residual block ([] : none)");
    v("latent_channels", latent_channels, "latent channels (the diffusion model works on these)");
    v("norm_groups", norm_groups, "GroupNorm groups");
    v("norm_eps", norm_eps, "GroupNorm epsilon");
    v("encoder_mid_attention", encoder_mid_attention, "residual block, self-attention, residual block at the encoder's bottom");
    v("decoder_mid_attention", decoder_mid_attention, "the same at the decoder's top");
    v("upsample", upsample, "decoder upsampling before its convolution: trilinear (MAISI) or nearest (MONAI)");
    v("norm_float16", norm_float16, "MAISI's norm_float16: round the residual blocks' and the last GroupNorm's output to float16");
  }
  void validate(const std::string& where = "kl") const;
  int64_t levels() const { return static_cast<int64_t>(channels.size()); }
  int64_t res_blocks(int64_t level) const;  // num_res_blocks of `level` (a single value applies to all)
  bool attention_at(int64_t level) const;
  int64_t downsample() const { return int64_t{1} << (levels() - 1); }  // per axis
};

// The KL autoencoder a MONAI network definition describes: the constructor arguments of MONAI's AutoencoderKL
// or MAISI's AutoencoderKlMaisi as a bundle / NV-Generate-CTMR network config writes them ("_target_", "channels"
// or "num_channels", "num_res_blocks" (a number or a list), "attention_levels" (booleans), "@name" references
// resolved against `root`). `where` names the definition in errors ("config_network_rflow.json: autoencoder_def").
struct MonaiKL {
  KLParams params;
  int64_t in_channels = 1, out_channels = 1;
  bool maisi = false;  // AutoencoderKlMaisi (its convolutions are one module deeper in the state dict)
};
MonaiKL kl_from_monai(const nlohmann::json& def, const nlohmann::json& root, const std::string& where);

}  // namespace meddiff
