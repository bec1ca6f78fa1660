#pragma once
// Vector quantiser with an EMA codebook (van den Oord et al. 2017, appendix A.1; as the reference's
// Codebook): codes initialised from the first batch of encoder outputs, EMA updates of cluster sizes
// and sums, dead-code restart from random encoder outputs, commitment loss, straight-through gradient.
//
// Bounded and exact at any size and precision: the nearest code is found in chunks (ops::nearest_code,
// never the whole [N, K] distance matrix), the EMA sums use index_add_ (no [N, K] one-hot), all of it
// in fp32 with autocast off. As in the reference, codes are looked up before this step's EMA update
// and restarts; restarted codes start at the restart threshold (so they are not restarted again at
// once). Statistics stay on the device as tensors: nothing here waits for the GPU.
//
// Data-parallel training (`comm` set): the assignment counts and sums are all-reduced before the EMA
// update, and the initial codes and restart candidates are drawn (with the same generator on every
// rank) from all ranks' encoder outputs gathered in rank order. So every rank holds the same codebook,
// the one a single process with the whole global batch would hold; perplexity and usage are global.
#include "core/collectives.h"
#include "models/vqgan_params.h"

#include <torch/torch.h>

#include <optional>

namespace meddiff {

struct VQOutput {
  torch::Tensor quantized;   // [B, E, d, h, w], straight-through (gradients flow to the encoder)
  torch::Tensor codes;       // int64 [B, d, h, w]
  torch::Tensor commitment;  // scalar: beta * ||z - sg(e)||^2
  torch::Tensor perplexity;  // scalar: exp(entropy of code use in this batch)
  torch::Tensor usage;       // scalar: fraction of codes used in this batch
  torch::Tensor restarted;   // scalar int64: codes restarted in this step (training; 0 otherwise)
};

struct VectorQuantizerImpl : torch::nn::Module {
  explicit VectorQuantizerImpl(const VQGANParams& p);
  // Training mode updates the codebook (EMA, restarts) from z; `gen` (a CPU generator) drives the
  // random choices, whatever the device of z.
  VQOutput forward(const torch::Tensor& z, std::optional<at::Generator> gen = std::nullopt);
  torch::Tensor lookup(const torch::Tensor& codes);  // [B, d, h, w] -> [B, E, d, h, w]
  torch::Tensor nearest(const torch::Tensor& flat);  // [N, E] -> int64 [N] (fp32, chunked)
  // Codes of latents z [B, E, d, h, w] -> int64 [B, d, h, w].
  torch::Tensor quantize_codes(const torch::Tensor& z);

  int64_t n_codes, dim;
  double decay, eps, restart_threshold, beta;
  Collectives* comm = nullptr;  // the other ranks of a data-parallel job (training only)
  int64_t chunk_bytes = int64_t{64} << 20;  // distance work space per chunk of the nearest-code search
  torch::Tensor embeddings;    // [K, E] buffer
  torch::Tensor cluster_size;  // [K] EMA of assignment counts
  torch::Tensor embed_avg;     // [K, E] EMA of assigned sums
  torch::Tensor initialized;   // [1], 0 until the first training batch

 private:
  bool known_initialized_ = false;  // `initialized` seen as 1 (read from the device once)
};
TORCH_MODULE(VectorQuantizer);

}  // namespace meddiff
