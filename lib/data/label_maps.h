#pragma once
// Label maps as a condition of the diffusion model: the one-hot map averaged over each latent voxel's
// footprint (the fraction of every label in it: a small lesion stays visible on the coarse grid), the
// label names, and the checks every label map passes before it is used.
#include <torch/torch.h>

#include <array>
#include <string>
#include <vector>

namespace meddiff {

// label int64 [D, H, W] with values in [0, num_labels) -> float [num_labels, d, h, w]: per latent voxel
// the fraction of its image voxels that carry each label (sums to 1; all zeros is the null condition).
torch::Tensor label_fractions(const torch::Tensor& label, int64_t num_labels, const std::array<int64_t, 3>& latent_dhw);

// `names` if given, else background, label_1, ..., label_{n-1}.
std::vector<std::string> label_names_or_default(const std::vector<std::string>& names, int64_t num_labels);

// Throws naming `what` when `label` is not an integer map of the grid `shape` with values in [0, num_labels).
void check_label_map(const torch::Tensor& label, const std::array<int64_t, 3>& shape, int64_t num_labels, const std::string& what);

}  // namespace meddiff
