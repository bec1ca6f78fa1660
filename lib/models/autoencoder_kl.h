#pragma once
// The KL-regularised 3-D autoencoder with exactly the layer semantics of MONAI's AutoencoderKL (and,
// with upsample = trilinear, MAISI's AutoencoderKlMaisi): parameters are named as in MONAI's state
// dict ("encoder.blocks.3.conv1.conv.weight", "quant_conv_mu.conv.bias", ...), so MONAI weights load
// by name (models/state_dict.h; MAISI's names through maisi_autoencoder_key).
//  encoder: conv3 -> per level [res blocks (+ attention)], stride-2 conv (pad 0,1) between levels ->
//           [res, attention, res] -> GroupNorm -> conv3 to latent_channels;
//  posterior: mu = 1x1 conv, log var = 1x1 conv clamped to [-30, 20], sigma = exp(log var / 2);
//  decoder: 1x1 post-quant conv -> conv3 -> [res, attention, res] -> per level (reversed) [res blocks
//           (+ attention)], x2 upsampling (nearest or trilinear) + conv3 between levels -> GroupNorm ->
//           conv3 to the image channels.
// Res blocks: GN -> SiLU -> conv3 -> GN -> SiLU -> conv3 plus the input (1x1 conv when channels change).
// Attention: models/monai_blocks.h's, one head with the output projection.
#include "models/kl_params.h"
#include "models/monai_blocks.h"

#include <torch/torch.h>

namespace meddiff {

struct KLPosterior {
  torch::Tensor mu, sigma;  // [B, latent_channels, d, h, w]
};

// The encoder's downsampling: one zero padded at the end of every spatial axis, then a stride-2 3^3 convolution.
struct KLDownsampleImpl : torch::nn::Module {
  explicit KLDownsampleImpl(int64_t c);
  torch::Tensor forward(const torch::Tensor& x);
  MonaiConv conv{nullptr};
};

// GN-SiLU-conv3, GN-SiLU-conv3, plus the input (through a 1x1 convolution when the channels change).
struct KLResBlockImpl : torch::nn::Module {
  KLResBlockImpl(const KLParams& p, int64_t in, int64_t out);
  torch::Tensor forward(const torch::Tensor& x);
  MonaiNorm norm1{nullptr}, norm2{nullptr};
  MonaiConv conv1{nullptr}, conv2{nullptr}, nin_shortcut{nullptr};
};

struct KLCoderImpl : torch::nn::Module {
  // encoder: image channels -> latent_channels; decoder: latent_channels -> image channels.
  KLCoderImpl(const KLParams& p, int64_t in_channels, int64_t out_channels, bool decoder);
  torch::Tensor forward(torch::Tensor x);
  torch::nn::ModuleList blocks{nullptr};
  std::vector<std::function<torch::Tensor(const torch::Tensor&)>> layers;  // the same modules, callable
};
TORCH_MODULE(KLCoder);

struct AutoencoderKLImpl : torch::nn::Module {
  AutoencoderKLImpl(const KLParams& p, int64_t image_channels = 1);
  KLPosterior encode(const torch::Tensor& x);           // x [B, C, D, H, W]
  KLPosterior posterior(const torch::Tensor& h);        // from the encoder's output
  torch::Tensor decode(const torch::Tensor& z);         // z [B, latent_channels, d, h, w] -> [B, C, D, H, W]
  KLParams params;
  int64_t channels;
  KLCoder encoder{nullptr}, decoder{nullptr};
  MonaiConv quant_conv_mu{nullptr}, quant_conv_log_sigma{nullptr}, post_quant_conv{nullptr};
};
TORCH_MODULE(AutoencoderKL);

}  // namespace meddiff
