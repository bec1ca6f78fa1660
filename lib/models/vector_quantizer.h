#pragma once
// Vector quantiser with an EMA codebook (van den Oord et al. 2017, appendix A.1; as the reference's
// Codebook): codes initialised from the first batch of encoder outputs, EMA updates of cluster sizes
// and sums, dead-code restart from random encoder outputs, commitment loss, straight-through gradient.
#include "models/vqgan_params.h"

#include <torch/torch.h>

#include <optional>

namespace meddiff {

struct VQOutput {
  torch::Tensor quantized;   // [B, E, d, h, w], straight-through (gradients flow to the encoder)
  torch::Tensor codes;       // int64 [B, d, h, w]
  torch::Tensor commitment;  // scalar: beta * ||z - sg(e)||^2
  double perplexity = 0;     // exp(entropy of code use in this batch)
  double usage = 0;          // fraction of codes used in this batch
  int64_t restarted = 0;     // codes restarted in this step (training)
};

struct VectorQuantizerImpl : torch::nn::Module {
  explicit VectorQuantizerImpl(const VQGANParams& p);
  // Training mode updates the codebook (EMA, restarts) from z; `gen` drives the random choices.
  VQOutput forward(const torch::Tensor& z, std::optional<at::Generator> gen = std::nullopt);
  torch::Tensor lookup(const torch::Tensor& codes);  // [B, d, h, w] -> [B, E, d, h, w]
  torch::Tensor nearest(const torch::Tensor& flat);  // [N, E] -> int64 [N]

  int64_t n_codes, dim;
  double decay, eps, restart_threshold, beta;
  torch::Tensor embeddings;    // [K, E] buffer
  torch::Tensor cluster_size;  // [K] EMA of assignment counts
  torch::Tensor embed_avg;     // [K, E] EMA of assigned sums
  torch::Tensor initialized;   // [1], 0 until the first training batch
};
TORCH_MODULE(VectorQuantizer);

}  // namespace meddiff
