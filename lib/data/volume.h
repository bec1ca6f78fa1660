#pragma once
// A 3-D image with its physical geometry and modality.
//
// Axis convention (the one place it is defined): the tensor is [D, H, W] = (z, y, x) in voxel index
// order; Geometry is stored in ITK/DICOM order (x, y, z). Index (i, j, k) along (x, y, z) is tensor
// element [k][j][i]. World coordinates are LPS millimetres (as in ITK and DICOM):
//   world = origin + direction * diag(spacing) * (i, j, k)^T
#include <torch/torch.h>

#include <array>
#include <optional>
#include <string>

namespace meddiff {

enum class Modality { Unknown, CT, MR };
std::string to_string(Modality m);
Modality parse_modality(const std::string& s);  // "ct"/"CT"/"mr"/"MR"/"unknown"; throws naming s

struct Geometry {
  std::array<double, 3> spacing{1.0, 1.0, 1.0};  // mm between voxel centres along x, y, z
  std::array<double, 3> origin{0.0, 0.0, 0.0};   // mm, LPS world position of voxel (0, 0, 0)
  std::array<double, 9> direction{1, 0, 0, 0, 1, 0, 0, 0, 1};  // row-major 3x3; column c = index axis c

  double dir(int row, int col) const { return direction[static_cast<size_t>(3 * row + col)]; }
  // World position (mm) of continuous index (i, j, k) along (x, y, z).
  std::array<double, 3> index_to_world(double i, double j, double k) const;
  // Continuous index of a world point (inverse of the above; direction must be invertible).
  std::array<double, 3> world_to_index(const std::array<double, 3>& p) const;
  bool approx_equal(const Geometry& o, double tol = 1e-5) const;
};

struct Volume {
  torch::Tensor image;  // float32 [D, H, W]
  Geometry geometry;
  Modality modality = Modality::Unknown;
  std::optional<torch::Tensor> label;  // int64 [D, H, W], same grid as image

  int64_t depth() const { return image.size(0); }
  int64_t height() const { return image.size(1); }
  int64_t width() const { return image.size(2); }
  std::array<int64_t, 3> size_xyz() const { return {width(), height(), depth()}; }
};

// Throws naming `what` if `t` is not a 3-D float tensor or holds NaN/Inf.
void check_volume_tensor(const torch::Tensor& t, const std::string& what);

// Throws naming `what` if a spacing is not a positive finite number, the origin is not finite or the
// direction is not orthonormal (NaN included).
void check_geometry(const Geometry& g, const std::string& what);

// Orthonormality error of a direction matrix: max |D^T D - I|.
double direction_orthonormality_error(const std::array<double, 9>& d);

}  // namespace meddiff
