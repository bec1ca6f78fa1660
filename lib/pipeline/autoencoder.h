#pragma once
// Encoding and decoding volumes of any size with a trained VQ-GAN within a memory budget. A volume
// whose plain forward fits the budget runs as one piece; a larger one runs layer by layer, each
// layer cut into slabs along the longest axis (pipeline/split_exec.h): the result equals the plain
// forward to float rounding. The latent is quantised by chunked nearest-code search.
#include "models/vqgan.h"

#include <torch/torch.h>

namespace meddiff {

struct AutoencoderRun {
  int64_t budget_bytes = 0;  // <= 0: automatic (default_memory_budget)
  bool force_split = false;  // split even when the plain forward would fit (tests)
  int64_t budget(const torch::Device& device) const;  // budget_bytes, or the automatic budget on `device`
};

// The default budget on `device`: on the CPU min(6 GiB, 40 % of the machine's memory); on a GPU
// min(16 GiB, 50 % of its memory). Fits a 16 GB laptop and a 24 GB GPU.
int64_t default_memory_budget(const torch::Device& device);
// GiB from --max-memory / sample.max_memory_gib (0 = automatic) to bytes.
int64_t memory_budget_bytes(double gib, const torch::Device& device);

// x [B, 1, D, H, W] in [-1, 1] -> pre-quantisation latent [B, E, d, h, w] (eval mode, no grad).
torch::Tensor encode_volume(VQGAN& model, const torch::Tensor& x, const AutoencoderRun& run = {});
// Pre-quantisation latent -> nearest codes -> decoded volume [B, 1, D, H, W] (not clamped). `labels` int
// [B, D, H, W]: the label maps a label-conditioned decoder sees (vqgan.decoder_labels; checked against it),
// undefined to decode without; ignored by a decoder that is not label-conditioned.
torch::Tensor decode_latent(VQGAN& model, const torch::Tensor& z, const AutoencoderRun& run = {}, const torch::Tensor& labels = {});
// Whether decode_latent / encode_volume would split for this size and budget (counting a label-conditioned
// decoder's label maps and their one-hot at full resolution).
bool decode_splits(const VQGAN& model, const std::array<int64_t, 3>& latent_dhw, int64_t batch, const AutoencoderRun& run,
                   const torch::Device& device);

}  // namespace meddiff
