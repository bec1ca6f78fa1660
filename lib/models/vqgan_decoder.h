#pragma once
// 3-D VQ-GAN decoder, mirroring the encoder: 1x1x1 projection from embedding_dim, one transposed-conv
// stage per encoder stage (stride 2 on the axes that stage halved), residual blocks, GN + SiLU, conv to
// one channel. No output activation (as the reference).
#include "models/blocks.h"
#include "models/vqgan_params.h"

namespace meddiff {

struct VQDecoderImpl : torch::nn::Module {
  VQDecoderImpl(const VQGANParams& p, int64_t image_channels);
  torch::Tensor forward(const torch::Tensor& z);
  torch::nn::Conv3d post_vq_conv{nullptr};
  torch::nn::ModuleList up{nullptr};  // per stage: Sequential(ConvTranspose3d, ResBlock3d...)
  torch::nn::GroupNorm final_norm{nullptr};
  SamePadConv3d conv_last{nullptr};
};
TORCH_MODULE(VQDecoder);

}  // namespace meddiff
