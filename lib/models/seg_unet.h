#pragma once
// A compact 3-D segmentation U-Net from meddiff's own blocks (no time or class embedding), for the
// downstream check of `meddiff eval --downstream seg`, sized to train in minutes on a CPU at demo size:
//   stem convolution (c channels) -> per level: GroupNorm-SiLU-conv3 block, then a strided convolution
//   (kernel 4, stride 2, as the VQ-GAN's encoder) doubling the channels -> a residual block at the
//   bottom -> per level back up: trilinear upsampling, a 1x1x1 convolution to the level's channels
//   added to the skip connection (not concatenated: half the work at full resolution), a
//   GroupNorm-SiLU-conv3 block -> GroupNorm, SiLU and a 1x1x1 convolution to one logit per label.
// Any input size works: it is padded (replicate) to a multiple of 2^levels and the logits cropped back.
#include "models/blocks.h"

#include <torch/torch.h>

namespace meddiff {

// GroupNorm -> SiLU -> 3x3x3 convolution.
struct NormActConvImpl : torch::nn::Module {
  NormActConvImpl(int64_t in, int64_t out);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::GroupNorm norm{nullptr};
  SamePadConv3d conv{nullptr};
};
TORCH_MODULE(NormActConv);

struct SegUNetImpl : torch::nn::Module {
  SegUNetImpl(int64_t in_channels, int64_t num_labels, int64_t base_channels = 16, int64_t levels = 2);
  torch::Tensor forward(const torch::Tensor& x);  // [B, C, D, H, W] -> logits [B, num_labels, D, H, W]

  int64_t levels;
  SamePadConv3d stem{nullptr};
  torch::nn::ModuleList down_blocks{nullptr}, downsamplers{nullptr}, up_blocks{nullptr};
  std::vector<torch::nn::Conv3d> up_projections;  // registered as up_projection_N
  ResBlock3d mid{nullptr};
  torch::nn::GroupNorm norm_out{nullptr};
  torch::nn::Conv3d head{nullptr};
};
TORCH_MODULE(SegUNet);

}  // namespace meddiff
