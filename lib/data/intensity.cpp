#include "data/intensity.h"

#include "core/error.h"

#include <cmath>

namespace meddiff {

void to_json(nlohmann::json& j, const IntensityWindow& w) { j = {{"lo", w.lo}, {"hi", w.hi}}; }
void from_json(const nlohmann::json& j, IntensityWindow& w) {
  w.lo = j.at("lo").get<double>();
  w.hi = j.at("hi").get<double>();
}

void IntensityParams::validate() const {
  if (!(ct_hi > ct_lo)) fail("intensity: ct window hi ({}) must be above lo ({})", ct_hi, ct_lo);
  if (!(mr_lo_percentile >= 0 && mr_hi_percentile <= 100 && mr_hi_percentile > mr_lo_percentile))
    fail("intensity: MR percentiles must satisfy 0 <= lo < hi <= 100 (got {}, {})", mr_lo_percentile,
         mr_hi_percentile);
  if (!(mr_output_max > 0)) fail("intensity: mr_output_max must be positive (got {})", mr_output_max);
}

double percentile(const torch::Tensor& x, double p) {
  // Linear interpolation between the order statistics around p (as numpy's default), each found by
  // selection rather than a full sort: memory stays one copy of the volume.
  auto flat = x.flatten();
  int64_t n = flat.numel();
  if (n == 0) fail("percentile of an empty tensor");
  double pos = p / 100.0 * static_cast<double>(n - 1);
  auto lo = static_cast<int64_t>(std::floor(pos));
  int64_t hi = std::min(lo + 1, n - 1);
  double f = pos - static_cast<double>(lo);
  double vlo = std::get<0>(torch::kthvalue(flat, lo + 1)).item<double>();
  double vhi = hi == lo ? vlo : std::get<0>(torch::kthvalue(flat, hi + 1)).item<double>();
  return vlo + f * (vhi - vlo);
}

IntensityWindow window_for(const Volume& v, const IntensityParams& p) {
  if (v.modality == Modality::CT) return {p.ct_lo, p.ct_hi};
  IntensityWindow w{percentile(v.image, p.mr_lo_percentile), percentile(v.image, p.mr_hi_percentile)};
  if (!(w.hi > w.lo)) w.hi = w.lo + 1.0;  // constant volume: any non-empty window maps it to -1
  return w;
}

IntensityWindow output_window(Modality m, const IntensityParams& p) {
  if (m == Modality::CT) return {p.ct_lo, p.ct_hi};
  return {0.0, p.mr_output_max};
}

torch::Tensor normalise(const torch::Tensor& x, const IntensityWindow& w) {
  // Computed in double so that integer HU survive the round trip exactly.
  auto xd = x.to(torch::kDouble).clamp(w.lo, w.hi);
  return ((xd - w.lo) * (2.0 / (w.hi - w.lo)) - 1.0).to(torch::kFloat);
}

double to_scanner_units(double y, const IntensityWindow& w) { return (y + 1.0) * (0.5 * (w.hi - w.lo)) + w.lo; }

torch::Tensor denormalise(const torch::Tensor& y, const IntensityWindow& w, bool round, double top) {
  auto x = (y.to(torch::kDouble).clamp(-1.0, top) + 1.0) * (0.5 * (w.hi - w.lo)) + w.lo;
  if (round) x = x.round();
  return x.to(torch::kFloat);
}

}  // namespace meddiff
