#pragma once
// Data-parallel bookkeeping over Collectives: identical replicas at the start, averaged gradients at
// every step, and a check that the replicas stayed identical.
//   - Gradients are all-reduced after the last micro-batch's backward pass only (gradient accumulation
//     never communicates), in buckets of about `bucket_bytes` in parameter order, then divided by the
//     world size: the mean over the global batch, as one process with the whole batch computes it.
//     The all-reduce runs after the backward pass, not overlapped with it (measured in the README:
//     the CPU has no cores left to overlap with; on GPUs the buckets are large and few).
//   - The ranks agree first (one all-reduce of a flag per parameter) on which parameters have a
//     gradient: a parameter used on any rank is averaged with zeros from the ranks where it was unused
//     (as one process with the global batch sums over the samples that used it); one unused on every
//     rank is skipped everywhere. A rank-dependent set (dropout paths, conditions used by some samples
//     only) therefore never mismatches the buckets of different ranks.
#include "core/collectives.h"

#include <nlohmann/json.hpp>
#include <torch/torch.h>

namespace meddiff {

void average_gradients(Collectives& c, const std::vector<torch::Tensor>& params, int64_t bucket_bytes = int64_t{25} << 20);

// Parameters and buffers take rank 0's values.
void broadcast_state(Collectives& c, torch::nn::Module& m);

// The largest difference between ranks of any tensor's checksums (float64 sum and sum of squares):
// 0 when every rank holds the same values. Collective.
double replica_spread(Collectives& c, const std::vector<torch::Tensor>& tensors);
// At a checkpoint: the replica spreads of `state` (and of `codebook` when not empty) as a metrics record
// {step, replica_spread[, codebook_spread], world_size}, with a warning when the weights differ. Collective.
nlohmann::json replica_check(Collectives& c, int64_t step, const std::vector<torch::Tensor>& state,
                             const std::vector<torch::Tensor>& codebook = {});
// All parameters and buffers of a module.
std::vector<torch::Tensor> state_tensors(const torch::nn::Module& m);

}  // namespace meddiff
