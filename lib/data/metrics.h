#pragma once
// Image quality metrics for reconstructions and between volumes.
#include <torch/torch.h>

namespace meddiff {

// Peak signal-to-noise ratio in dB for values spanning `data_range` (2 for [-1, 1]).
double psnr(const torch::Tensor& reference, const torch::Tensor& test, double data_range = 2.0);
// Mean 3-D SSIM (Wang et al. 2004) with an 7^3 Gaussian window (sigma 1.5), K1 0.01, K2 0.03, on
// [D, H, W] or [B, 1, D, H, W] tensors.
double ssim3d(const torch::Tensor& reference, const torch::Tensor& test, double data_range = 2.0);
// Multi-scale 3-D SSIM (Wang et al. 2003): contrast-structure at each scale and SSIM at the coarsest,
// halving each axis between scales, as many scales (<= 5) as keep every axis >= 7 voxels.
double ms_ssim3d(const torch::Tensor& a, const torch::Tensor& b, double data_range = 2.0);

}  // namespace meddiff
