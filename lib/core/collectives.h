#pragma once
// What a training step needs from the other processes of a data-parallel job, without naming the
// transport: lib/train/process_group implements it over LibTorch's c10d (Gloo on the CPU, NCCL on
// CUDA). Models take a `Collectives*` (nullptr: one process) so that their non-gradient state (the
// quantiser's EMA codebook, BatchNorm statistics) is computed over the global batch.
//
// Every call is collective: all ranks make the same calls in the same order with tensors of the same
// shapes. A rank that has died or hangs past the job's timeout turns each call into an Error.
#include <torch/torch.h>

#include <vector>

namespace meddiff {

class Collectives {
 public:
  virtual ~Collectives() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  // In place: every tensor becomes the sum over the ranks.
  virtual void all_reduce_sum(std::vector<torch::Tensor>& tensors) = 0;
  // In place: the element-wise maximum over the ranks.
  virtual void all_reduce_max(torch::Tensor& t) = 0;
  // The ranks' tensors [n, ...] (same shape on every rank) concatenated in rank order: [world * n, ...].
  virtual torch::Tensor all_gather_rows(const torch::Tensor& t) = 0;
  // In place: every tensor takes rank `root`'s values.
  virtual void broadcast(std::vector<torch::Tensor>& tensors, int root) = 0;
  virtual void barrier() = 0;
};

}  // namespace meddiff
