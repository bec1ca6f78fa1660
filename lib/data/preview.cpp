#include "data/preview.h"

#include <algorithm>

namespace meddiff {
namespace {

// [rows, cols] slice with physical pixel size (row_mm, col_mm) -> display pixels of size `unit` mm.
torch::Tensor to_display(const torch::Tensor& slice, double row_mm, double col_mm, double unit) {
  namespace F = torch::nn::functional;
  int64_t rows = std::max<int64_t>(1, std::llround(static_cast<double>(slice.size(0)) * row_mm / unit));
  int64_t cols = std::max<int64_t>(1, std::llround(static_cast<double>(slice.size(1)) * col_mm / unit));
  return F::interpolate(slice.unsqueeze(0).unsqueeze(0).to(torch::kFloat),
                        F::InterpolateFuncOptions().size(std::vector<int64_t>{rows, cols}).mode(torch::kBilinear).align_corners(false))
      .squeeze(0)
      .squeeze(0);
}

}  // namespace

namespace {

// The axial, coronal and sagittal mid-slices of x [D, H, W] in display pixels (bilinear).
std::vector<torch::Tensor> three_views(const torch::Tensor& x, const Geometry& g) {
  int64_t d = x.size(0), h = x.size(1), wd = x.size(2);
  double sx = g.spacing[0], sy = g.spacing[1], sz = g.spacing[2];
  double unit = std::min({sx, sy, sz});
  // Keep previews a reasonable size for very fine spacings.
  double longest = std::max({wd * sx, h * sy, d * sz});
  unit = std::max(unit, longest / 512.0);
  return {to_display(x[d / 2], sy, sx, unit),                            // axial: rows y, cols x
          to_display(x.select(1, h / 2).flip({0}), sz, sx, unit),        // coronal: rows z (superior up), cols x
          to_display(x.select(2, wd / 2).flip({0}), sz, sy, unit)};      // sagittal: rows z, cols y
}

torch::Tensor to_u8(const torch::Tensor& s, const IntensityWindow& w) {
  return ((s - w.lo) * (255.0 / std::max(1e-12, w.hi - w.lo))).clamp(0, 255).round().to(torch::kUInt8);
}

// 1 where a voxel's label differs from a neighbour's within the slice planes (the label's outline).
torch::Tensor outline(const torch::Tensor& label) {
  auto l = label.to(torch::kLong);
  auto edge = torch::zeros(l.sizes(), torch::kBool);
  for (int64_t a = 0; a < 3; ++a) {
    const int64_t n = l.size(a);
    if (n < 2) continue;
    auto diff = l.narrow(a, 1, n - 1) != l.narrow(a, 0, n - 1);
    edge.narrow(a, 1, n - 1).logical_or_(diff);
    edge.narrow(a, 0, n - 1).logical_or_(diff);
  }
  return edge.to(torch::kFloat);
}

}  // namespace

torch::Tensor orthogonal_panel(const torch::Tensor& image, const Geometry& g, const IntensityWindow& w) {
  torch::NoGradGuard ng;
  auto views = three_views(image.detach().to(torch::kCPU, torch::kFloat), g);
  return hconcat({to_u8(views[0], w), to_u8(views[1], w), to_u8(views[2], w)});
}

torch::Tensor contour_panel(const torch::Tensor& image, const torch::Tensor& label, const Geometry& g, const IntensityWindow& w) {
  torch::NoGradGuard ng;
  auto views = three_views(image.detach().to(torch::kCPU, torch::kFloat), g);
  auto edges = three_views(outline(label.to(torch::kCPU)), g);
  std::vector<torch::Tensor> out;
  for (size_t i = 0; i < 3; ++i) out.push_back(to_u8(views[i], w).masked_fill(edges[i] > 0.3, 255));
  return hconcat(out);
}

torch::Tensor hconcat(const std::vector<torch::Tensor>& panels, int64_t gap) {
  int64_t rows = 0, cols = 0;
  for (const auto& p : panels) {
    rows = std::max(rows, p.size(0));
    cols += p.size(1);
  }
  cols += gap * static_cast<int64_t>(panels.size() > 0 ? panels.size() - 1 : 0);
  auto out = torch::zeros({rows, cols}, torch::kUInt8);
  int64_t c = 0;
  using torch::indexing::Slice;
  for (const auto& p : panels) {
    out.index_put_({Slice(0, p.size(0)), Slice(c, c + p.size(1))}, p);
    c += p.size(1) + gap;
  }
  return out;
}

torch::Tensor vconcat(const std::vector<torch::Tensor>& panels, int64_t gap) {
  std::vector<torch::Tensor> t;
  for (const auto& p : panels) t.push_back(p.t());
  return hconcat(t, gap).t().contiguous();
}

}  // namespace meddiff
