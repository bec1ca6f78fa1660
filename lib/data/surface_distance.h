#pragma once
// Segmentation overlap and surface distances of two label maps on one grid, in millimetres:
//  - an exact Euclidean distance transform with anisotropic spacing (Felzenszwalb & Huttenlocher 2012,
//    "Distance transforms of sampled functions": the 1-D lower envelope of parabolas, one axis at a time);
//  - the surface of a mask: its voxels with a 6-neighbour outside it (or at the grid's border);
//  - per label: Dice, the average symmetric surface distance (ASSD) and the 95th-percentile Hausdorff
//    distance (HD95: the larger of the two directed 95th percentiles, as MONAI computes it).
#include <torch/torch.h>

#include <array>
#include <optional>

namespace meddiff {

// Distance in mm from every voxel to the nearest voxel where `seeds` is true ([D, H, W] bool);
// spacing x, y, z. Infinity everywhere when there is no seed.
torch::Tensor distance_transform(const torch::Tensor& seeds, const std::array<double, 3>& spacing_xyz);

// The surface voxels of a mask [D, H, W] bool.
torch::Tensor mask_surface(const torch::Tensor& mask);

struct SegmentationScore {
  double dice = 0;                  // 1 when both masks are empty
  std::optional<double> assd, hd95;  // mm; unset when either mask is empty
};

// The score of label `label` in `prediction` against `truth` (int64 [D, H, W] each).
SegmentationScore score_label(const torch::Tensor& prediction, const torch::Tensor& truth, int64_t label,
                              const std::array<double, 3>& spacing_xyz);

}  // namespace meddiff
