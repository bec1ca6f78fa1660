#pragma once
// BatchNorm whose batch statistics span every rank of a data-parallel job (the role of PyTorch's
// SyncBatchNorm), so that N ranks x batch b normalise exactly as one process with batch N*b.
// Without Collectives (one process), or in eval mode, it is LibTorch's batch_norm. Its parameters and
// buffers carry BatchNorm's names (weight, bias, running_mean, running_var, num_batches_tracked), so
// checkpoints of either load into the other.
//
// Synchronised training mode: each rank's count, mean and sum of squared deviations per channel
// (float64, two passes) are gathered from every rank with an autograd-aware all-gather (its backward
// all-reduces the gradients) and merged by Chan's formula, so batches of different sizes per rank and
// values far from zero (|mean| >> std) normalise as one process with the concatenated batch would;
// biased variance for normalising, unbiased for the running estimate (momentum 0.1, eps 1e-5).
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

// The ranks' rows [world * n, ...] (n the same on every rank) whose gradient is this rank's rows of the
// sum over the ranks of the incoming gradients.
torch::Tensor all_gather_rows_autograd(const torch::Tensor& x, Collectives& comm);

}  // namespace meddiff
