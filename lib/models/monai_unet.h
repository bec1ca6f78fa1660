#pragma once
// The latent diffusion U-Net of MONAI (DiffusionModelUNet, as in MONAI's BraTS latent diffusion bundle) and of
// MAISI (DiffusionModelUNetMaisi, NV-Generate-CT / -MR) with exactly their layer semantics and state-dict names,
// so their weights load by name (models/state_dict.h):
//  embedding: sinusoidal time embedding (cos first) of channels[0] -> Linear-SiLU-Linear to 4 channels[0]
//             (+ a class embedding); MAISI concatenates Linear-SiLU-Linear embeddings of the voxel spacing and
//             of the body-region vectors;
//  down: conv3 -> per level [res block (+ attention)] x n, then a stride-2 conv3 (or a residual block with 2x2x2
//        average pooling) except at the last level, every output kept for the skips;
//  middle: res block, attention, res block;
//  up: per level (reversed) [concat a skip, res block (+ attention)] x (n + 1), then nearest x2 + conv3 (or a
//      residual block with nearest upsampling) except at the last level;
//  out: GroupNorm, SiLU, conv3.
// Residual block: GN-SiLU-(pool or upsample)-conv3, + Linear(SiLU(embedding)), GN-SiLU-conv3, plus the input
// (1x1 conv when the channels change). Attention: models/monai_blocks.h's with channels / num_head_channels heads.
#include "models/monai_unet_parts.h"

#include <torch/torch.h>

namespace meddiff {

struct MonaiUNetInputs {
  torch::Tensor class_labels;  // int64 [B] when num_class_embeds > 0
  torch::Tensor spacing;       // [B, 3] when spacing_input (MAISI: mm x 100)
  torch::Tensor top_region, bottom_region;  // [B, 4] when the region inputs are on
  // A ControlNet's outputs (models/monai_controlnet.h): one residual per kept down-path output, added to it before
  // the up path uses it, and one added to the middle block's output. MAISI adds them in place, so the last of
  // them also reaches the middle block's input (the same tensor in MONAI's code); MONAI's own U-Net does not.
  std::vector<torch::Tensor> down_residuals;
  torch::Tensor mid_residual;
};

struct MonaiUNetImpl : torch::nn::Module {
  explicit MonaiUNetImpl(const MonaiUNetParams& p);
  // x [B, in_channels, d, h, w] (each a multiple of downsample()), timesteps [B] (any float or integer type)
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& timesteps, const MonaiUNetInputs& in = {});
  MonaiUNetParams params;
  MonaiConv conv_in{nullptr};
  torch::nn::Sequential time_embed{nullptr}, spacing_layer{nullptr}, top_region_index_layer{nullptr}, bottom_region_index_layer{nullptr};
  torch::nn::Embedding class_embedding{nullptr};
  torch::nn::ModuleList up_blocks{nullptr}, out{nullptr};
  MonaiDownPath encoder;  // "down_blocks", "middle_block"
  std::vector<std::shared_ptr<MonaiUNetLevelImpl>> ups;
  MonaiNorm out_norm{nullptr};
  MonaiConv out_conv{nullptr};
};
TORCH_MODULE(MonaiUNet);

}  // namespace meddiff
