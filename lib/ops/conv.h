#pragma once
// 3-D convolution of a torch::nn::Conv3d module's weights, with the CPU algorithm chosen for 3-D.
// LibTorch's heuristic sends a batch-1 float convolution with a 3x3x3 kernel and fewer than 20480
// N x C x D x H values (most of a latent U-Net at sampling time) to its slow im2col path
// (aten::slow_conv3d), tuned for 2-D images; at inference (no gradient) on the CPU this calls oneDNN
// directly, as LibTorch itself does for larger inputs and for training batches, except for layers bound by
// reading their weights (more than 50,000 weights per voxel, e.g. 512 channels on 4^3), where the im2col path
// is faster. Elsewhere (GPU, autograd, other dtypes, a build without oneDNN) it is the module's own forward.
#include <torch/torch.h>

namespace meddiff::ops {

torch::Tensor conv3d(const torch::nn::Conv3d& conv, const torch::Tensor& x);

}  // namespace meddiff::ops
