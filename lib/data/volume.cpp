#include "data/volume.h"

#include "core/error.h"
#include "core/text.h"

#include <algorithm>
#include <cctype>
#include <cmath>

namespace meddiff {

std::string to_string(Modality m) {
  switch (m) {
    case Modality::CT: return "CT";
    case Modality::MR: return "MR";
    default: return "unknown";
  }
}

Modality parse_modality(const std::string& s) {
  const std::string l = to_lower(s);
  if (l == "ct") return Modality::CT;
  if (l == "mr" || l == "mri") return Modality::MR;
  if (l == "unknown" || l.empty()) return Modality::Unknown;
  fail("unknown modality '{}' (expected ct or mr)", s);
}

std::array<double, 3> Geometry::index_to_world(double i, double j, double k) const {
  const double idx[3] = {i * spacing[0], j * spacing[1], k * spacing[2]};
  std::array<double, 3> p{};
  for (int r = 0; r < 3; ++r) p[r] = origin[r] + dir(r, 0) * idx[0] + dir(r, 1) * idx[1] + dir(r, 2) * idx[2];
  return p;
}

std::array<double, 3> Geometry::world_to_index(const std::array<double, 3>& p) const {
  // Solve direction * s = (p - origin) with the adjugate of the 3x3 matrix.
  const auto& m = direction;
  double det = m[0] * (m[4] * m[8] - m[5] * m[7]) - m[1] * (m[3] * m[8] - m[5] * m[6]) +
               m[2] * (m[3] * m[7] - m[4] * m[6]);
  if (std::abs(det) < 1e-12) fail("direction matrix is singular");
  std::array<double, 9> inv = {(m[4] * m[8] - m[5] * m[7]) / det, (m[2] * m[7] - m[1] * m[8]) / det,
                               (m[1] * m[5] - m[2] * m[4]) / det, (m[5] * m[6] - m[3] * m[8]) / det,
                               (m[0] * m[8] - m[2] * m[6]) / det, (m[2] * m[3] - m[0] * m[5]) / det,
                               (m[3] * m[7] - m[4] * m[6]) / det, (m[1] * m[6] - m[0] * m[7]) / det,
                               (m[0] * m[4] - m[1] * m[3]) / det};
  double d[3] = {p[0] - origin[0], p[1] - origin[1], p[2] - origin[2]};
  std::array<double, 3> idx{};
  for (int r = 0; r < 3; ++r)
    idx[r] = (inv[3 * r] * d[0] + inv[3 * r + 1] * d[1] + inv[3 * r + 2] * d[2]) / spacing[r];
  return idx;
}

bool Geometry::approx_equal(const Geometry& o, double tol) const {
  for (int i = 0; i < 3; ++i) {
    if (std::abs(spacing[i] - o.spacing[i]) > tol) return false;
    if (std::abs(origin[i] - o.origin[i]) > tol) return false;
  }
  for (int i = 0; i < 9; ++i)
    if (std::abs(direction[i] - o.direction[i]) > tol) return false;
  return true;
}

double direction_orthonormality_error(const std::array<double, 9>& d) {
  double err = 0;
  for (int a = 0; a < 3; ++a)
    for (int b = 0; b < 3; ++b) {
      double dot = d[a] * d[b] + d[3 + a] * d[3 + b] + d[6 + a] * d[6 + b];
      err = std::max(err, std::abs(dot - (a == b ? 1.0 : 0.0)));
    }
  return err;
}

void check_geometry(const Geometry& g, const std::string& what) {
  for (double s : g.spacing)
    if (!std::isfinite(s) || s <= 0) fail("{}: voxel spacing {} mm is not a positive number", what, s);
  for (double o : g.origin)
    if (!std::isfinite(o)) fail("{}: origin {} is not a finite number", what, o);
  double err = direction_orthonormality_error(g.direction);
  if (!(err <= 1e-3)) fail("{}: direction matrix is not orthonormal", what);
}

void check_volume_tensor(const torch::Tensor& t, const std::string& what) {
  if (!t.defined()) fail("{}: no image data", what);
  if (t.dim() != 3) fail("{}: expected a 3-D volume, got {} dimensions", what, t.dim());
  if (t.numel() == 0) fail("{}: volume is empty", what);
  if (!torch::isfinite(t).all().item<bool>()) {
    int64_t bad = (~torch::isfinite(t)).sum().item<int64_t>();
    fail("{}: {} voxel(s) are NaN or infinite", what, bad);
  }
}

}  // namespace meddiff
