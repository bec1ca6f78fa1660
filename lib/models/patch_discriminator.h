#pragma once
// PatchGAN discriminator (Isola et al. 2017; the reference's NLayerDiscriminator), 2-D for random
// slices and 3-D for whole volumes. Returns the patch logits and the intermediate features used by
// the feature-matching loss.
#include "core/collectives.h"

#include <torch/torch.h>

#include <string>
#include <vector>

namespace meddiff {

struct PatchDiscriminatorImpl : torch::nn::Module {
  PatchDiscriminatorImpl(int dims, int64_t in_channels, int64_t ndf, int64_t n_layers, const std::string& norm);
  // logits [B, 1, ...] and the output of every block
  std::pair<torch::Tensor, std::vector<torch::Tensor>> forward(const torch::Tensor& x);
  // BatchNorm statistics over every rank's batch (nullptr: this process's batch).
  void set_collectives(Collectives* comm);
  torch::nn::ModuleList blocks{nullptr};
};
TORCH_MODULE(PatchDiscriminator);

}  // namespace meddiff
