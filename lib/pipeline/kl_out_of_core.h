#pragma once
// Exact encoding and decoding with a KL autoencoder (MONAI's AutoencoderKL, MAISI's AutoencoderKlMaisi) when the
// whole-volume encoder or decoder would not fit the memory budget: at MAISI's 512x512x128 one full-resolution
// activation of 64 channels is 8.6 GB in fp32, and the decoder's upsampled one of 128 channels 17 GB.
//
// The encoder or decoder runs block by block. Every activation is a tensor of rows along the volume's longest axis, kept in
// memory when it takes at most a quarter of the budget, else in a scratch file (created in the system's temporary
// folder, $TMPDIR, and unlinked at once, so nothing is left behind). Each block is computed slab by slab of its output rows from the
// input rows its convolutions reach: zero padding exactly where the volume ends, trilinear or nearest upsampling
// from input rows with a one-row margin, the encoder's stride-2 downsampling from rows 2o .. 2o + 2 (MONAI's one
// zero row at the end), residual blocks as two convolution passes. GroupNorm statistics are
// gathered over the whole input (float64 sums, row by row) before any slab is normalised. The result equals the
// whole-volume encoder or decoder up to float rounding: no overlapping windows, no blending, no seams (MAISI's own
// inference decodes large outputs with an approximate Gaussian-weighted sliding window). Memory: at most three
// activations of a quarter of the budget and the slabs' work space.
#include "models/autoencoder_kl.h"

namespace meddiff {

struct OutOfCoreRun {
  int64_t budget_bytes = int64_t{8} << 30;
  int64_t rows = 0;               // tests: output rows per slab (0: from the budget)
  bool all_on_disk = false;       // tests: every activation in a scratch file
};

// z [B, latent_channels, d, h, w] -> what AutoencoderKL::decode(z) gives, [B, C, D, H, W].
torch::Tensor decode_out_of_core(AutoencoderKL& model, const torch::Tensor& z, const OutOfCoreRun& run);

// AutoencoderKL::decode(z) within `budget_bytes`: whole when whole_decode_bytes fits, else out of core (`force`:
// out of core whatever the size).
torch::Tensor decode_within(AutoencoderKL& model, const torch::Tensor& z, int64_t budget_bytes, bool force = false);

// x [B, C, D, H, W] in the autoencoder's own range -> what AutoencoderKL::encode(x) gives.
KLPosterior encode_out_of_core(AutoencoderKL& model, const torch::Tensor& x, const OutOfCoreRun& run);

// AutoencoderKL::encode(x) within `budget_bytes`: whole when whole_decode_bytes of x's size fits, else out of core.
KLPosterior encode_within(AutoencoderKL& model, const torch::Tensor& x, int64_t budget_bytes, bool force = false);

// About the bytes whole-volume decoding (or encoding) of a batch of `batch` to `full` [D, H, W] holds at its peak: the largest
// activation (at full resolution, the upsampled lower level's channels) a few times over, in fp32.
double whole_decode_bytes(const AutoencoderKL& model, const std::array<int64_t, 3>& full, int64_t batch);

}  // namespace meddiff
