#include "data/label_augment.h"

#include "core/error.h"

#include <cmath>

namespace meddiff {
namespace {

namespace F = torch::nn::functional;

// Normalised sampling grid [1, D, H, W, 3] (x, y, z in [-1, 1], align_corners) of the identity.
torch::Tensor identity_grid(int64_t D, int64_t H, int64_t W) {
  auto o = torch::TensorOptions().dtype(torch::kFloat);
  auto z = torch::linspace(-1, 1, D, o), y = torch::linspace(-1, 1, H, o), x = torch::linspace(-1, 1, W, o);
  auto g = torch::meshgrid({z, y, x}, "ij");
  return torch::stack({g[2], g[1], g[0]}, -1).unsqueeze(0);
}

torch::Tensor sample_nearest(const torch::Tensor& label, const torch::Tensor& grid) {
  auto v = label.to(torch::kFloat).unsqueeze(0).unsqueeze(0);
  auto out = F::grid_sample(v, grid, F::GridSampleFuncOptions().mode(torch::kNearest).padding_mode(torch::kBorder).align_corners(true));
  return out[0][0].round().to(torch::kLong);
}

double uniform(at::Generator& gen, double lo, double hi) {
  return lo + (hi - lo) * torch::rand({1}, gen).item<double>();
}

}  // namespace

torch::Tensor augment_grid(int64_t D, int64_t H, int64_t W, const std::array<double, 3>& spacing, const LabelAugment& p,
                           at::Generator gen) {
  // Half extents in mm: normalised coordinates times these are millimetres from the centre.
  const double ex = 0.5 * static_cast<double>(W - 1) * spacing[0], ey = 0.5 * static_cast<double>(H - 1) * spacing[1],
               ez = 0.5 * static_cast<double>(D - 1) * spacing[2];
  const bool flip = p.flip_lr && uniform(gen, 0, 1) < 0.5;
  const double a = uniform(gen, -p.rotate_deg, p.rotate_deg) * M_PI / 180.0;
  const double s = uniform(gen, 1 - p.scale, 1 + p.scale);
  auto grid = identity_grid(D, H, W);
  // output point (mm) -> input point: x_in = R^-1 (x_out / s), flipped in x
  auto X = grid.select(-1, 0) * std::max(ex, 1e-9), Y = grid.select(-1, 1) * std::max(ey, 1e-9), Z = grid.select(-1, 2) * std::max(ez, 1e-9);
  auto xr = (std::cos(a) * X + std::sin(a) * Y) / s, yr = (-std::sin(a) * X + std::cos(a) * Y) / s, zr = Z / s;
  if (flip) xr = -xr;
  if (p.elastic_mm > 0) {
    const int64_t g = std::max<int64_t>(2, p.elastic_grid);
    auto coarse = torch::randn({1, 3, g, g, g}, gen) * p.elastic_mm;
    auto field = F::interpolate(coarse, F::InterpolateFuncOptions().size(std::vector<int64_t>{D, H, W}).mode(torch::kTrilinear).align_corners(true))[0];
    xr = xr + field[0];
    yr = yr + field[1];
    zr = zr + field[2];
  }
  auto g2 = torch::stack({xr / std::max(ex, 1e-9), yr / std::max(ey, 1e-9), zr / std::max(ez, 1e-9)}, -1);
  if (D == 1) g2.select(-1, 2).zero_();
  return g2;
}

torch::Tensor augment_label(const torch::Tensor& label, const std::array<double, 3>& spacing, const LabelAugment& p, at::Generator gen) {
  if (label.dim() != 3) fail("augment_label: expected a [D, H, W] label map");
  return sample_nearest(label, augment_grid(label.size(0), label.size(1), label.size(2), spacing, p, std::move(gen)));
}

AugmentedPair augment_pair(const torch::Tensor& image, const torch::Tensor& label, const std::array<double, 3>& spacing,
                           const LabelAugment& p, at::Generator gen) {
  if (image.dim() != 4 || label.dim() != 3 || image.sizes().slice(1) != label.sizes())
    fail("augment_pair: expected an image [C, D, H, W] and a label map [D, H, W] on the same grid");
  auto grid = augment_grid(label.size(0), label.size(1), label.size(2), spacing, p, std::move(gen));
  auto img = F::grid_sample(image.to(torch::kFloat).unsqueeze(0), grid,
                            F::GridSampleFuncOptions().mode(torch::kNearest).padding_mode(torch::kBorder).align_corners(true))[0];
  return {img.to(image.dtype()), sample_nearest(label, grid)};
}

torch::Tensor remove_label(const torch::Tensor& label, int64_t value) {
  auto out = label.to(torch::kLong).clone();
  const int64_t L = std::max<int64_t>(out.max().item<int64_t>() + 1, value + 1);
  for (int iter = 0; iter < 256; ++iter) {
    auto hole = out == value;
    if (!hole.any().item<bool>()) return out;
    auto oh = torch::one_hot(out, L).permute({3, 0, 1, 2}).to(torch::kFloat);  // [L, D, H, W]
    oh[value].zero_();
    auto counts = F::avg_pool3d(oh.unsqueeze(0), F::AvgPool3dFuncOptions(3).stride(1).padding(1))[0];  // neighbours per label
    auto best = counts.argmax(0);
    auto reached = counts.amax(0) > 0;
    auto fill = hole & reached;
    if (!fill.any().item<bool>()) break;  // nothing else in the volume
    out = torch::where(fill, best, out);
  }
  return torch::where(out == value, torch::zeros_like(out), out);
}

torch::Tensor scale_label(const torch::Tensor& label, int64_t value, double factor) {
  if (!(factor > 0)) fail("label scale factor must be positive (got {})", factor);
  auto lab = label.to(torch::kLong);
  auto mask = lab == value;
  if (!mask.any().item<bool>()) return lab.clone();
  const int64_t D = lab.size(0), H = lab.size(1), W = lab.size(2);
  auto idx = mask.nonzero().to(torch::kFloat);  // [n, 3] (d, h, w)
  auto c = idx.mean(0);
  // output voxel p takes the mask at c + (p - c) / factor (in normalised grid coordinates)
  auto grid = identity_grid(D, H, W);
  auto half = torch::tensor({0.5 * double(W - 1), 0.5 * double(H - 1), 0.5 * double(D - 1)}).clamp_min(1e-9);
  auto cn = torch::stack({c[2], c[1], c[0]}) / half - 1;  // centre, normalised (x, y, z)
  auto src = cn + (grid - cn) / factor;
  auto scaled = sample_nearest(mask.to(torch::kLong), src) > 0;
  auto out = remove_label(lab, value);
  return torch::where(scaled, torch::full_like(out, value), out);
}

}  // namespace meddiff
