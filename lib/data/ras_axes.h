#pragma once
// MONAI's array layout of a volume: (x, y, z) with x towards the patient's right, y anterior and z superior
// (RAS, as MONAI's Orientationd("RAS") leaves an image), taken from meddiff's [D, H, W] = (k, j, i) tensor of
// any direction matrix, and back. Networks trained by MONAI and MAISI see their volumes so; running them on
// meddiff's tensors in another layout would hand them mirrored or transposed anatomy.
#include "data/volume.h"

namespace meddiff {

struct RasAxes {
  std::array<int64_t, 3> source_dim{};  // the [D, H, W] dimension (0, 1, 2) that becomes x, y, z
  std::array<bool, 3> flip{};           // reversed along x, y, z
};

// Each index axis goes to the world axis its direction column is closest to (the largest components
// first, so oblique directions still give a permutation); LPS world: +x is left, +y posterior, +z superior.
RasAxes ras_axes(const Geometry& g);

// [..., D, H, W] -> [..., X, Y, Z] in RAS order, and its inverse.
torch::Tensor to_ras_xyz(const torch::Tensor& dhw, const RasAxes& a);
torch::Tensor from_ras_xyz(const torch::Tensor& xyz, const RasAxes& a);

// The same volume (image and label) on its grid re-indexed so that i, j, k run along R, A, S: [D, H, W] = (z, y, x)
// of MONAI's RAS arrays. Voxels are only reordered; the geometry (spacing, origin, direction: the direction's
// columns permuted and negated with them) keeps every voxel at its world position, oblique grids included.
Volume to_ras_grid(const Volume& v);

}  // namespace meddiff
