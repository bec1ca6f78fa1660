#pragma once
// Layers with exactly the semantics and parameter names of MONAI's, shared by the network families imported
// from MONAI and MAISI (models/autoencoder_kl.h, models/monai_unet.h), so that their state dicts load by name:
//  - MonaiConv: a 3-D convolution held as MONAI's Convolution holds it (a child named "conv");
//  - MonaiNorm: GroupNorm with its own "weight" and "bias", optionally followed by SiLU; with fp16_output,
//    MAISI's norm_float16 (MaisiGroupNorm3D): the normalised values are rounded to float16 and scaled, shifted
//    (and passed through SiLU) in float16, as MAISI computes them; the result is returned in the input's type;
//  - MonaiUpsample: x2 nearest or trilinear interpolation and a convolution ("postconv");
//  - MonaiAttention: MONAI's SpatialAttentionBlock: GroupNorm ("norm"), then multi-head self-attention over
//    every voxel with separate q/k/v projections ("attn.to_q" ...), the heads taking consecutive channel
//    blocks, an optional output projection ("attn.out_proj", MONAI's include_fc), plus the input.
#include <torch/torch.h>

namespace meddiff {

struct MonaiConvImpl : torch::nn::Module {
  MonaiConvImpl(int64_t in, int64_t out, int64_t k, int64_t s = 1, int64_t p = -1);  // p < 0: k / 2
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Conv3d conv{nullptr};
};
TORCH_MODULE(MonaiConv);

struct MonaiNormImpl : torch::nn::Module {
  MonaiNormImpl(int64_t channels, int64_t groups, double eps, bool fp16_output = false);
  torch::Tensor forward(const torch::Tensor& x, bool silu = false);
  // The affine step (and SiLU) after the normalisation, in the normalised values' type: MAISI's float16 rounding
  // when fp16_output, else plain. forward uses it, and so does out-of-core running with its own statistics.
  torch::Tensor affine(const torch::Tensor& normalised, bool silu) const;
  int64_t groups;
  double eps;
  bool fp16_output;
  torch::Tensor weight, bias;
};
TORCH_MODULE(MonaiNorm);

// x2 interpolation of every spatial axis: nearest, or trilinear without aligned corners.
torch::Tensor upsample2x(const torch::Tensor& x, bool trilinear = false);

// MONAI's upsampling layer with its convolution: upsample2x, then a 3^3 convolution ("postconv").
struct MonaiUpsampleImpl : torch::nn::Module {
  MonaiUpsampleImpl(int64_t channels, bool trilinear);
  torch::Tensor forward(const torch::Tensor& x);
  bool trilinear;
  MonaiConv postconv{nullptr};
};
TORCH_MODULE(MonaiUpsample);

struct MonaiSelfAttentionImpl : torch::nn::Module {  // MONAI's SABlock (the "attn" child)
  MonaiSelfAttentionImpl(int64_t channels, bool out_projection);
  torch::nn::Linear out_proj{nullptr}, to_q{nullptr}, to_k{nullptr}, to_v{nullptr};
};
TORCH_MODULE(MonaiSelfAttention);

struct MonaiAttentionImpl : torch::nn::Module {
  MonaiAttentionImpl(int64_t channels, int64_t heads, bool out_projection, int64_t groups, double eps);
  torch::Tensor forward(const torch::Tensor& x);
  int64_t heads;
  MonaiNorm norm{nullptr};
  MonaiSelfAttention attn{nullptr};
};
TORCH_MODULE(MonaiAttention);

}  // namespace meddiff
