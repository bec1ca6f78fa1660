#include "data/plot.h"

#include <algorithm>
#include <cmath>

namespace meddiff {

torch::Tensor histogram_plot(const std::vector<double>& filled, const std::vector<double>& outlined, int64_t height, int64_t bar) {
  const int64_t bins = static_cast<int64_t>(std::max(filled.size(), outlined.size()));
  auto img = torch::zeros({height, std::max<int64_t>(1, bins * bar)}, torch::kUInt8);
  auto a = img.accessor<uint8_t, 2>();
  double top = 0;
  for (double v : filled) top = std::max(top, v);
  for (double v : outlined) top = std::max(top, v);
  const int64_t base = height - 1, room = height - 4;
  auto level = [&](double v) {  // row of a value's top
    if (!(top > 0) || !(v > 0)) return base;
    return base - std::clamp<int64_t>(static_cast<int64_t>(std::lround(v / top * static_cast<double>(room))), 0, room);
  };
  for (int64_t b = 0; b < static_cast<int64_t>(filled.size()); ++b)
    for (int64_t y = level(filled[static_cast<size_t>(b)]); y <= base; ++y)
      for (int64_t x = b * bar; x < (b + 1) * bar - 1; ++x) a[y][x] = 110;
  for (int64_t x = 0; x < img.size(1); ++x) a[base][x] = 160;
  int64_t prev = -1;
  for (int64_t b = 0; b < static_cast<int64_t>(outlined.size()); ++b) {
    int64_t y = level(outlined[static_cast<size_t>(b)]);
    for (int64_t x = b * bar; x < (b + 1) * bar; ++x) a[y][x] = 255;
    if (prev >= 0)  // the step between bins
      for (int64_t r = std::min(prev, y); r <= std::max(prev, y); ++r) a[r][b * bar] = 255;
    prev = y;
  }
  return img;
}

torch::Tensor line_plot(const std::vector<double>& x, const std::vector<std::vector<double>>& series, int64_t width,
                        int64_t height) {
  auto img = torch::zeros({height, width}, torch::kUInt8);
  auto a = img.accessor<uint8_t, 2>();
  const int64_t m = 4;  // margin
  for (int64_t c = 0; c < width; ++c) a[height - 1 - m][c] = 90;  // baseline
  if (x.size() < 2) return img;
  const double x0 = *std::min_element(x.begin(), x.end()), x1 = *std::max_element(x.begin(), x.end());
  auto col = [&](double v) {
    return m + static_cast<int64_t>(std::lround((v - x0) / std::max(1e-300, x1 - x0) * static_cast<double>(width - 1 - 2 * m)));
  };
  for (size_t k = 0; k < series.size(); ++k) {
    const auto& y = series[k];
    double top = 0;
    for (double v : y) top = std::max(top, v);
    auto row = [&](double v) {
      double f = top > 0 ? v / top : 0;
      return height - 1 - m - static_cast<int64_t>(std::lround(f * static_cast<double>(height - 1 - 2 * m)));
    };
    const uint8_t grey = static_cast<uint8_t>(std::max(80, 255 - 70 * static_cast<int>(k)));
    for (size_t i = 0; i + 1 < std::min(x.size(), y.size()); ++i) {  // line segments
      const int64_t c0 = col(x[i]), c1 = col(x[i + 1]), r0 = row(y[i]), r1 = row(y[i + 1]);
      const int64_t n = std::max({std::abs(c1 - c0), std::abs(r1 - r0), int64_t{1}});
      for (int64_t s = 0; s <= n; ++s)
        a[r0 + (r1 - r0) * s / n][c0 + (c1 - c0) * s / n] = grey;
    }
    for (size_t i = 0; i < std::min(x.size(), y.size()); ++i)  // markers
      for (int64_t dr = -1; dr <= 1; ++dr)
        for (int64_t dc = -1; dc <= 1; ++dc) {
          const int64_t r = std::clamp<int64_t>(row(y[i]) + dr, 0, height - 1), c = std::clamp<int64_t>(col(x[i]) + dc, 0, width - 1);
          a[r][c] = grey;
        }
  }
  return img;
}

}  // namespace meddiff
