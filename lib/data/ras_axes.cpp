#include "data/ras_axes.h"

#include "core/error.h"

#include <cmath>

namespace meddiff {
namespace {
// The dimensions of an [..., X, Y, Z] tensor (`lead` leading ones) that are reversed.
std::vector<int64_t> flipped_dims(const RasAxes& a, int64_t lead) {
  std::vector<int64_t> flips;
  for (int r = 0; r < 3; ++r)
    if (a.flip[r]) flips.push_back(lead + r);
  return flips;
}
}  // namespace

RasAxes ras_axes(const Geometry& g) {
  // (index axis c, world axis r) pairs by |direction(r, c)|, largest first; each axis taken once
  std::array<bool, 3> column_done{}, row_done{};
  RasAxes a;
  for (int n = 0; n < 3; ++n) {
    int best_r = -1, best_c = -1;
    double best = -1;
    for (int c = 0; c < 3; ++c)
      for (int r = 0; r < 3; ++r)
        if (!column_done[c] && !row_done[r] && std::abs(g.dir(r, c)) > best) {
          best = std::abs(g.dir(r, c));
          best_r = r;
          best_c = c;
        }
    column_done[best_c] = row_done[best_r] = true;
    a.source_dim[best_r] = 2 - best_c;  // index axis i, j, k is tensor dimension 2, 1, 0
    const bool towards_plus_world = g.dir(best_r, best_c) > 0;
    const bool want_plus_world = best_r == 2;  // R and A are -x and -y in LPS, S is +z
    a.flip[best_r] = towards_plus_world != want_plus_world;
  }
  return a;
}

torch::Tensor to_ras_xyz(const torch::Tensor& dhw, const RasAxes& a) {
  const int64_t lead = dhw.dim() - 3;
  if (lead < 0) fail("to_ras_xyz: a tensor of {} dimensions (at least 3: [..., D, H, W])", dhw.dim());
  std::vector<int64_t> perm;
  for (int64_t d = 0; d < lead; ++d) perm.push_back(d);
  for (int r = 0; r < 3; ++r) perm.push_back(lead + a.source_dim[r]);
  auto out = dhw.permute(perm);
  const auto flips = flipped_dims(a, lead);
  return flips.empty() ? out.contiguous() : out.flip(flips).contiguous();
}

torch::Tensor from_ras_xyz(const torch::Tensor& xyz, const RasAxes& a) {
  const int64_t lead = xyz.dim() - 3;
  if (lead < 0) fail("from_ras_xyz: a tensor of {} dimensions (at least 3: [..., X, Y, Z])", xyz.dim());
  const auto flips = flipped_dims(a, lead);
  auto t = flips.empty() ? xyz : xyz.flip(flips);
  std::vector<int64_t> perm(static_cast<size_t>(lead + 3));
  for (int64_t d = 0; d < lead; ++d) perm[static_cast<size_t>(d)] = d;
  for (int r = 0; r < 3; ++r) perm[static_cast<size_t>(lead + a.source_dim[r])] = lead + r;
  return t.permute(perm).contiguous();
}

Volume to_ras_grid(const Volume& v) {
  const RasAxes a = ras_axes(v.geometry);
  auto reindex = [&](const torch::Tensor& t) { return to_ras_xyz(t, a).permute({2, 1, 0}).contiguous(); };
  Volume out = v;
  out.image = reindex(v.image);
  if (v.label) out.label = reindex(*v.label);
  const auto& g = v.geometry;
  const std::array<int64_t, 3> n_ijk{v.image.size(2), v.image.size(1), v.image.size(0)};
  std::array<double, 3> first{};  // the source index (i, j, k) of the new voxel 0
  for (int r = 0; r < 3; ++r) {
    const int c = 2 - static_cast<int>(a.source_dim[r]);  // the source index axis that becomes R, A or S
    out.geometry.spacing[r] = g.spacing[c];
    first[c] = a.flip[r] ? static_cast<double>(n_ijk[c] - 1) : 0.0;
    for (int w = 0; w < 3; ++w) out.geometry.direction[3 * w + r] = (a.flip[r] ? -1.0 : 1.0) * g.dir(w, c);
  }
  out.geometry.origin = g.index_to_world(first[0], first[1], first[2]);
  return out;
}

}  // namespace meddiff
