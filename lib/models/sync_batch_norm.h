#pragma once
// BatchNorm whose batch statistics span every rank of a data-parallel job (the role of PyTorch's
// SyncBatchNorm), so that N ranks x batch b normalise exactly as one process with batch N*b.
// Without Collectives (one process), or in eval mode, it is LibTorch's batch_norm. Its parameters and
// buffers carry BatchNorm's names (weight, bias, running_mean, running_var, num_batches_tracked), so
// checkpoints of either load into the other.
//
// Synchronised training mode: per-channel sums and sums of squares (fp32) are all-reduced with an
// autograd-aware sum (its backward all-reduces the gradients), mean = S/N, biased variance
// SS/N - mean^2 for normalising, unbiased variance for the running estimate (momentum 0.1, eps 1e-5).
#include "core/collectives.h"

#include <torch/torch.h>

namespace meddiff {

struct SyncBatchNormImpl : torch::nn::Module {
  explicit SyncBatchNormImpl(int64_t channels, double eps = 1e-5, double momentum = 0.1);
  torch::Tensor forward(const torch::Tensor& x);  // [B, C, ...]
  Collectives* comm = nullptr;
  double eps, momentum;
  torch::Tensor weight, bias, running_mean, running_var, num_batches_tracked;
};
TORCH_MODULE(SyncBatchNorm);

// Sum over the ranks whose gradient is the sum over the ranks of the incoming gradients.
torch::Tensor all_reduce_sum_autograd(const torch::Tensor& x, Collectives& comm);

}  // namespace meddiff
