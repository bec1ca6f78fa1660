#include "data/spatial.h"

#include "core/error.h"

#include <cmath>

namespace meddiff {
namespace {

// Sample `src` [D, H, W] at continuous indices along each axis (align_corners: index i of an axis of
// size n sits at normalised coordinate 2i/(n-1)-1).
torch::Tensor sample_grid(const torch::Tensor& src, const std::array<torch::Tensor, 3>& idx_dhw, bool nearest) {
  namespace F = torch::nn::functional;
  auto norm = [](const torch::Tensor& i, int64_t n) { return n > 1 ? i * (2.0 / (n - 1)) - 1.0 : i * 0.0; };
  auto gz = norm(idx_dhw[0], src.size(0));  // [D']
  auto gy = norm(idx_dhw[1], src.size(1));  // [H']
  auto gx = norm(idx_dhw[2], src.size(2));  // [W']
  auto mesh = torch::meshgrid({gz, gy, gx}, "ij");
  // grid_sample wants (x, y, z) in the last dim: [1, D', H', W', 3]
  auto grid = torch::stack({mesh[2], mesh[1], mesh[0]}, -1).unsqueeze(0).to(torch::kFloat);
  auto in = src.to(torch::kFloat).unsqueeze(0).unsqueeze(0);  // [1, 1, D, H, W]
  F::GridSampleFuncOptions::mode_t mode = torch::kBilinear;
  if (nearest) mode = torch::kNearest;
  auto out = F::grid_sample(in, grid,
                            F::GridSampleFuncOptions()
                                .mode(mode)
                                .padding_mode(torch::kBorder)
                                .align_corners(true));
  return out.squeeze(0).squeeze(0);  // [D', H', W']
}

}  // namespace

Volume resample_to_spacing(const Volume& v, const std::array<double, 3>& spacing) {
  for (int a = 0; a < 3; ++a)
    if (!(spacing[a] > 0)) fail("resample: target spacing must be positive (got {})", spacing[a]);
  auto size = v.size_xyz();
  std::array<int64_t, 3> new_size{};
  std::array<torch::Tensor, 3> idx;  // continuous source indices per tensor axis (z, y, x)
  for (int a = 0; a < 3; ++a) {
    double extent = static_cast<double>(size[a] - 1) * v.geometry.spacing[a];
    new_size[a] = std::max<int64_t>(1, static_cast<int64_t>(std::floor(extent / spacing[a] + 1e-6)) + 1);
    idx[2 - a] = torch::arange(new_size[a], torch::kDouble) * (spacing[a] / v.geometry.spacing[a]);
  }
  Volume out;
  out.modality = v.modality;
  out.geometry = v.geometry;
  out.geometry.spacing = spacing;
  out.image = sample_grid(v.image, idx, false);
  if (v.label) out.label = sample_grid(*v.label, idx, true).round().to(torch::kLong);
  return out;
}

Volume extract_window(const Volume& v, const std::array<int64_t, 3>& start, const std::array<int64_t, 3>& shape,
                      double pad_value) {
  auto fill = [&](const torch::Tensor& src, double value) {
    auto dst = torch::full({shape[0], shape[1], shape[2]}, value, src.options());
    std::array<int64_t, 3> s0{}, s1{}, d0{};
    for (int a = 0; a < 3; ++a) {
      s0[a] = std::max<int64_t>(0, start[a]);
      s1[a] = std::min<int64_t>(src.size(a), start[a] + shape[a]);
      d0[a] = s0[a] - start[a];
    }
    if (s1[0] > s0[0] && s1[1] > s0[1] && s1[2] > s0[2]) {
      using torch::indexing::Slice;
      dst.index_put_({Slice(d0[0], d0[0] + s1[0] - s0[0]), Slice(d0[1], d0[1] + s1[1] - s0[1]),
                      Slice(d0[2], d0[2] + s1[2] - s0[2])},
                     src.index({Slice(s0[0], s1[0]), Slice(s0[1], s1[1]), Slice(s0[2], s1[2])}));
    }
    return dst;
  };
  Volume out;
  out.modality = v.modality;
  out.geometry = v.geometry;
  // New voxel (0,0,0) is old index (x, y, z) = (start_w, start_h, start_d).
  out.geometry.origin = v.geometry.index_to_world(static_cast<double>(start[2]), static_cast<double>(start[1]),
                                                  static_cast<double>(start[0]));
  out.image = fill(v.image, pad_value);
  if (v.label) out.label = fill(*v.label, 0.0);
  return out;
}

Volume crop_or_pad(const Volume& v, const std::array<int64_t, 3>& shape, CropMode mode, double pad_value,
                   double foreground_threshold) {
  for (int a = 0; a < 3; ++a)
    if (shape[a] <= 0) fail("crop: target shape must be positive (got {})", shape[a]);
  std::array<double, 3> centre{};  // [D, H, W] centre of the region to keep, in voxels
  for (int a = 0; a < 3; ++a) centre[a] = 0.5 * static_cast<double>(v.image.size(a) - 1);
  if (mode == CropMode::Foreground) {
    auto mask = v.label ? (*v.label > 0) : (v.image > foreground_threshold);
    auto nz = mask.nonzero();  // [N, 3]
    if (nz.size(0) > 0) {
      auto lo = std::get<0>(nz.min(0)), hi = std::get<0>(nz.max(0));
      for (int a = 0; a < 3; ++a) centre[a] = 0.5 * static_cast<double>(lo[a].item<int64_t>() + hi[a].item<int64_t>());
    }
  }
  std::array<int64_t, 3> start{};
  for (int a = 0; a < 3; ++a) {
    start[a] = static_cast<int64_t>(std::llround(centre[a] - 0.5 * static_cast<double>(shape[a] - 1)));
    // Keep the window inside the volume where the volume is large enough (foreground boxes near an edge).
    int64_t n = v.image.size(a);
    if (shape[a] <= n) start[a] = std::clamp<int64_t>(start[a], 0, n - shape[a]);
  }
  return extract_window(v, start, shape, pad_value);
}

}  // namespace meddiff
