#pragma once
// Label maps for paired sampling, made from a bank of training label maps or the user's own: random
// geometric augmentation (left-right flip, rotation about the z axis, isotropic scaling, a smooth
// elastic displacement) applied by nearest-neighbour resampling, so the result holds only labels of
// the input and no label is blended; and per-label edits (remove a label, scale it about its centre).
#include <ATen/core/Generator.h>
#include <torch/torch.h>

#include <array>

namespace meddiff {

// Mild by default: the diffusion model learned images for the training maps as they are (the latents
// are not augmented), so maps far from them are followed less faithfully (on the CT demo, 0 of 8 pairs
// from maps augmented by +-10 degrees, +-10 % and 2 mm had bone above 300 HU, 2 of 8 with these
// defaults, 8 of 8 without augmentation).
struct LabelAugment {
  bool flip_lr = true;        // flip along x (the W axis) with probability 1/2
  double rotate_deg = 5;      // rotation about z, uniform in [-rotate_deg, rotate_deg]
  double scale = 0.05;        // isotropic scaling, uniform in [1 - scale, 1 + scale]
  double elastic_mm = 1;      // standard deviation of the elastic displacement (mm), smooth over ~1/4 of the field
  int64_t elastic_grid = 5;   // control points per axis of the elastic field
};

// One random draw of the augmentation on a [D, H, W] grid with voxel spacing (x, y, z mm): the sampling grid
// [1, D, H, W, 3] (normalised x, y, z, align_corners) that maps each output voxel to the input point it takes.
torch::Tensor augment_grid(int64_t D, int64_t H, int64_t W, const std::array<double, 3>& spacing, const LabelAugment& p,
                           at::Generator gen);

// label int64 [D, H, W] with voxel spacing (x, y, z mm) -> an augmented label map on the same grid.
torch::Tensor augment_label(const torch::Tensor& label, const std::array<double, 3>& spacing, const LabelAugment& p,
                            at::Generator gen);

// An image [C, D, H, W] and its label map [D, H, W] warped by the same draw, both by nearest neighbour (the
// border's values outside): each output voxel takes image and label from the same input voxel, so the
// intensities inside every label stay those of the case (linear interpolation of the image blurred a
// structure a few voxels wide into its surroundings, and a model trained on such copies learned it so).
struct AugmentedPair {
  torch::Tensor image, label;
};
AugmentedPair augment_pair(const torch::Tensor& image, const torch::Tensor& label, const std::array<double, 3>& spacing,
                           const LabelAugment& p, at::Generator gen);

// Voxels of `label_value` take the label most common among their neighbours (grown in from around it).
torch::Tensor remove_label(const torch::Tensor& label, int64_t label_value);
// The region of `label_value` scaled by `factor` about its centre of mass; voxels it leaves are filled
// as remove_label does, voxels it reaches take the label.
torch::Tensor scale_label(const torch::Tensor& label, int64_t label_value, double factor);

}  // namespace meddiff
