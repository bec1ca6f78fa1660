#pragma once
// MONAI's ControlNet and MAISI's ControlNetMaisi (NV-Generate-CT's controlnet_3d_rflow-ct.pt) with exactly their
// layer semantics and state-dict names:
//  conditioning embedding ("controlnet_cond_embedding"): conv3 + SiLU ("conv_in"), then per further width a conv3
//    + SiLU and a stride-2 conv3 + SiLU ("blocks"), then a conv3 to the U-Net's first width ("conv_out");
//  the U-Net's time (+ class) embedding, conv_in, down path and middle block (models/monai_unet_parts.h), where
//    conv_in's output has the embedded condition added;
//  a 1x1x1 convolution of every kept down-path output ("controlnet_down_blocks", the first without MONAI's
//    Convolution wrapper) and of the middle block's ("controlnet_mid_block"): the residuals the U-Net adds
//    (MonaiUNetInputs::down_residuals, mid_residual).
// The condition does not change while a volume is sampled, so its embedding is computed once (embed_condition)
// and each step starts from it (residuals).
#include "models/monai_unet_parts.h"

#include <torch/torch.h>

namespace meddiff {

struct MonaiControlNetResiduals {
  std::vector<torch::Tensor> down;
  torch::Tensor mid;
};

struct MonaiControlNetImpl : torch::nn::Module {
  explicit MonaiControlNetImpl(const MonaiControlNetParams& p);
  // condition [B, cond_in_channels, X, Y, Z] (multiples of cond_downsample()) -> [B, channels[0], X / f, Y / f, Z / f]
  torch::Tensor embed_condition(const torch::Tensor& condition);
  // A label map's embedding as embed_condition(label_bit_planes(label)), computed in slabs along x so that the bit
  // planes and the full-resolution activations of a large map (MAISI: 512^3) never exist whole: each slab reads the
  // rows its convolutions reach and keeps the rows it alone computes exactly. label int [X, Y, Z] ->
  // [1, channels[0], X / f, Y / f, Z / f]; `slab_bytes` bounds one slab's widest activation.
  torch::Tensor embed_label(const torch::Tensor& label, int64_t slab_bytes = int64_t{256} << 20);
  // x [B, in_channels, ...] at the embedding's grid; class_labels int64 [B] when the network has classes
  MonaiControlNetResiduals residuals(const torch::Tensor& x, const torch::Tensor& timesteps, const torch::Tensor& embedded_condition,
                                     const torch::Tensor& class_labels, double scale = 1.0);
  MonaiControlNetParams params;
  MonaiConv conv_in{nullptr}, cond_conv_in{nullptr}, cond_conv_out{nullptr};
  std::vector<MonaiConv> cond_blocks;
  torch::nn::Sequential time_embed{nullptr};
  torch::nn::Embedding class_embedding{nullptr};
  MonaiDownPath encoder;
  std::vector<torch::nn::Conv3d> down_zero;  // controlnet_down_blocks (the first is a bare Conv3d)
  MonaiConv mid_zero{nullptr};
};
TORCH_MODULE(MonaiControlNet);

// MAISI's ControlNet condition (NV-Generate-CTMR's binarize_labels): bit b of each voxel's label value as channel b,
// bits 0..bits-1. label int [B, X, Y, Z] -> float [B, bits, X, Y, Z]; values outside 0..2^bits - 1 are refused.
torch::Tensor label_bit_planes(const torch::Tensor& label, int64_t bits = 8);

}  // namespace meddiff
