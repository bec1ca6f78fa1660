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

}  // namespace meddiff
