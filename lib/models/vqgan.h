#pragma once
// The 3-D VQ-GAN autoencoder: encoder -> vector quantiser -> decoder. Inputs and outputs are
// [B, C, D, H, W] in [-1, 1] (C image channels: 1, or the sequences of a multi-channel dataset, e.g. BraTS'
// t1, t1ce, t2, flair); latents are [B, embedding_dim, D/fd, H/fh, W/fw] whatever C is.
#include "models/vector_quantizer.h"
#include "models/vqgan_decoder.h"
#include "models/vqgan_encoder.h"

namespace meddiff {

struct VQGANOutput {
  torch::Tensor reconstruction;  // [B, C, D, H, W]
  VQOutput vq;
};

struct VQGANImpl : torch::nn::Module {
  explicit VQGANImpl(const VQGANParams& p, int64_t image_channels = 1);
  // `labels` int [B, D, H, W]: the cases' label maps, seen by a label-conditioned decoder (vqgan.decoder_labels;
  // ignored otherwise). With `gen` (training) each sample's map is dropped with vqgan.decoder_label_dropout.
  VQGANOutput forward(const torch::Tensor& x, std::optional<at::Generator> gen = std::nullopt, const torch::Tensor& labels = {});
  torch::Tensor encode(const torch::Tensor& x);            // pre-quantisation latent
  torch::Tensor decode_latent(const torch::Tensor& z, const torch::Tensor& labels = {});  // quantise (nearest code) then decode
  VQGANParams params;
  int64_t channels;  // image channels C
  VQEncoder encoder{nullptr};
  VectorQuantizer quantizer{nullptr};
  VQDecoder decoder{nullptr};
};
TORCH_MODULE(VQGAN);

// Latent shape [E, d, h, w] for an input shape [D, H, W]; throws naming `where` if a factor does not divide.
std::array<int64_t, 4> latent_shape(const VQGANParams& p, const std::array<int64_t, 3>& shape, const std::string& where);

}  // namespace meddiff
