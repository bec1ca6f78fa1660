#include "models/vqgan.h"

#include "core/error.h"

namespace meddiff {

VQGANImpl::VQGANImpl(const VQGANParams& p, int64_t image_channels) : params(p), channels(image_channels) {
  p.validate();
  if (image_channels < 1) fail("VQ-GAN: {} image channels (at least 1)", image_channels);
  encoder = register_module("encoder", VQEncoder(p, image_channels));
  quantizer = register_module("codebook", VectorQuantizer(p));
  decoder = register_module("decoder", VQDecoder(p, image_channels));
}

VQGANOutput VQGANImpl::forward(const torch::Tensor& x, std::optional<at::Generator> gen, const torch::Tensor& labels) {
  auto z = encoder(x);              // [B, E, d, h, w]
  auto vq = quantizer(z, gen);
  torch::Tensor keep;  // which samples' label maps the decoder sees
  if (labels.defined() && gen && is_training() && params.decoder_labels > 0 && params.decoder_label_dropout > 0)
    keep = (torch::rand({x.size(0)}, *gen) >= params.decoder_label_dropout).to(torch::kFloat);
  auto rec = decoder(vq.quantized, labels, keep);  // [B, C, D, H, W]
  return {rec, vq};
}

torch::Tensor VQGANImpl::encode(const torch::Tensor& x) { return encoder(x); }

torch::Tensor VQGANImpl::decode_latent(const torch::Tensor& z, const torch::Tensor& labels) {
  return decoder(quantizer->lookup(quantizer->quantize_codes(z)), labels);
}

std::array<int64_t, 4> latent_shape(const VQGANParams& p, const std::array<int64_t, 3>& shape, const std::string& where) {
  std::array<int64_t, 4> out{p.embedding_dim, 0, 0, 0};
  for (size_t a = 0; a < 3; ++a) {
    if (shape[a] % p.downsample[a] != 0)
      fail("config: '{}[{}]' = {} is not divisible by vqgan.downsample[{}] = {}", where, typed_axis(a), shape[a], typed_axis(a),
           p.downsample[a]);
    out[a + 1] = shape[a] / p.downsample[a];
  }
  return out;
}

}  // namespace meddiff
