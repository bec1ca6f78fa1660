#pragma once
// Label maps as a condition of the diffusion model on the latent grid: the one-hot map averaged over
// each latent voxel's footprint (fractions: a small lesion stays visible on the coarse grid) or laid
// out voxel by voxel in channels (subvoxel: where inside the footprint each label lies, so that the
// decoder's finer grid can put a small dark structure exactly under its label), the label names, and
// the checks every label map passes before it is used.
#include <torch/torch.h>

#include <array>
#include <string>
#include <vector>

namespace meddiff {

// label int64 [D, H, W] with values in [0, num_labels) -> float [num_labels, d, h, w]: per latent voxel
// the fraction of its image voxels that carry each label (sums to 1; all zeros is the null condition).
torch::Tensor label_fractions(const torch::Tensor& label, int64_t num_labels, const std::array<int64_t, 3>& latent_dhw);

// The condition of one model (ldm.label_condition), built from the image and latent grids. Training keeps
// the label maps and builds the condition batch by batch on the device: subvoxel's channels (label count x
// the voxels under a latent voxel) would not fit in memory for every case at clinical sizes.
struct LabelCondition {
  std::string mode = "fractions";           // fractions or subvoxel
  int64_t num_labels = 0;                   // 0: not label-conditioned
  std::array<int64_t, 3> factor{1, 1, 1};   // image voxels per latent voxel along D, H, W

  LabelCondition() = default;
  // Throws naming ldm.label_condition for an unknown mode or a latent grid that does not divide the image grid.
  LabelCondition(const std::string& mode, int64_t num_labels, const std::array<int64_t, 3>& image_dhw,
                 const std::array<int64_t, 3>& latent_dhw);
  // fractions: num_labels; subvoxel: num_labels * fD * fH * fW (0 when not label-conditioned).
  int64_t channels() const;
  // label int [D, H, W] -> float [channels(), D / fD, H / fH, W / fW], or a batch [B, D, H, W] -> [B, channels(), ...].
  // fractions: label_fractions. subvoxel: channel l * F + (i * fH + j) * fW + k is 1 where image voxel
  // (fD z + i, fH y + j, fW x + k) carries label l.
  torch::Tensor operator()(const torch::Tensor& label) const;
  // A batch of conditions [B, channels(), d, h, w] -> each label's share of every latent voxel [B, num_labels, d, h, w].
  torch::Tensor fractions(const torch::Tensor& cond) const;
};

// `names` if given, else background, label_1, ..., label_{n-1}.
std::vector<std::string> label_names_or_default(const std::vector<std::string>& names, int64_t num_labels);

// Throws naming `what` when `label` is not an integer map of the grid `shape` with values in [0, num_labels).
void check_label_map(const torch::Tensor& label, const std::array<int64_t, 3>& shape, int64_t num_labels, const std::string& what);

}  // namespace meddiff
