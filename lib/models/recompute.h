#pragma once
// Activation checkpointing for the C++ frontend (which has no torch.utils.checkpoint): a block's
// forward runs without keeping its intermediate activations; backward runs it again with gradients
// on and back-propagates through that second run. Memory per block drops to its inputs, at the cost
// of one more forward. The recomputation sees the same autocast state and random-number state as
// the first run, and both runs take the ops' LibTorch path (ops::LibTorchOnly: the fused CUDA kernels
// have no backward), so results and gradients are those of the plain block.
#include <torch/torch.h>

#include <functional>
#include <vector>

namespace meddiff {

using BlockFn = std::function<torch::Tensor(const std::vector<torch::Tensor>&)>;

// A block that can run checkpointed (its forward goes through recompute() when `checkpointing`).
struct Recomputable {
  virtual ~Recomputable() = default;
  bool checkpointing = false;
};
// Switches checkpointing on or off for every Recomputable block inside `m`.
void set_checkpointing(torch::nn::Module& m, bool on);

// fn(inputs) with activations recomputed in backward; `fn` must outlive the backward pass (blocks
// keep it as a member). Plain fn(inputs) when grad mode is off.
torch::Tensor recompute(const BlockFn& fn, const std::vector<torch::Tensor>& inputs);

}  // namespace meddiff
