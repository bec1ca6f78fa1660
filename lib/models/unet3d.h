#pragma once
// Conditional 3-D U-Net for latent diffusion: residual blocks (GroupNorm, SiLU, FiLM from the time
// and class embeddings), self-attention at chosen levels (full over the 3-D token grid when small,
// axial otherwise) through ops::attention, per-axis down/up sampling, a null class for
// classifier-free guidance.
#include "models/blocks.h"
#include "models/unet_params.h"

namespace meddiff {

// Ref: Vaswani et al. 2017, sec. 3.5 (sinusoidal embedding), as in Ho et al. 2020.
torch::Tensor timestep_embedding(const torch::Tensor& t, int64_t dim);

struct FiLMResBlockImpl : torch::nn::Module, Recomputable {
  FiLMResBlockImpl(int64_t in, int64_t out, int64_t emb_dim, double dropout);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& emb);  // checkpointed when `checkpointing`
  torch::Tensor forward_impl(const torch::Tensor& x, const torch::Tensor& emb);
  BlockFn fn;
  torch::nn::GroupNorm norm1{nullptr}, norm2{nullptr};
  torch::nn::Conv3d conv1{nullptr}, conv2{nullptr}, skip{nullptr};
  torch::nn::Linear film{nullptr};
  torch::nn::Dropout drop{nullptr};
};
TORCH_MODULE(FiLMResBlock);

struct AttentionBlock3dImpl : torch::nn::Module, Recomputable {
  AttentionBlock3dImpl(int64_t channels, int64_t heads, int64_t max_full_tokens);
  torch::Tensor forward(const torch::Tensor& x);  // checkpointed when `checkpointing`
  torch::Tensor forward_impl(const torch::Tensor& x);
  BlockFn fn;
  int64_t heads, max_full_tokens;
  torch::nn::GroupNorm norm{nullptr};
  torch::nn::Conv3d qkv{nullptr}, proj{nullptr};
};
TORCH_MODULE(AttentionBlock3d);

struct UNet3dImpl : torch::nn::Module {
  // cond_channels > 0: a label condition [B, cond_channels, d, h, w] (label fractions per latent voxel)
  // is concatenated to the input; all zeros is the null condition (classifier-free guidance).
  UNet3dImpl(const UNetParams& p, int64_t channels, int64_t num_classes, int64_t cond_channels = 0);
  // x [B, C, d, h, w], t int64 [B], cls int64 [B] (num_classes = the null class) -> same shape as x
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& cls,
                        const torch::Tensor& cond = {});
  int64_t null_class() const { return num_classes; }

  UNetParams params;
  int64_t channels, num_classes, cond_channels;
  torch::nn::Sequential time_mlp{nullptr};
  torch::nn::Embedding class_emb{nullptr};
  torch::nn::Conv3d conv_in{nullptr}, conv_out{nullptr};
  torch::nn::GroupNorm norm_out{nullptr};
  torch::nn::ModuleList down_blocks{nullptr}, down_attn{nullptr}, down_samplers{nullptr};
  torch::nn::ModuleList up_blocks{nullptr}, up_attn{nullptr}, up_samplers{nullptr};
  FiLMResBlock mid1{nullptr}, mid2{nullptr};
  AttentionBlock3d mid_attn{nullptr};
};
TORCH_MODULE(UNet3d);

}  // namespace meddiff
