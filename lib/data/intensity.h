#pragma once
// Intensity maps between scanner units and the network's [-1, 1] range.
//   CT: a fixed Hounsfield window [lo, hi] (e.g. [-1024, 3071]) -> [-1, 1]; back to integer HU.
//   MR: a per-volume percentile window (e.g. 0.5 / 99.5 %) -> [-1, 1]; back to an integer range.
// Inside the window the maps are exact inverses; values outside are clipped to the window.
#include "data/volume.h"

#include <nlohmann/json.hpp>

namespace meddiff {

struct IntensityWindow {
  double lo = -1.0;  // scanner value mapped to -1
  double hi = 1.0;   // scanner value mapped to +1
};
void to_json(nlohmann::json& j, const IntensityWindow& w);
void from_json(const nlohmann::json& j, IntensityWindow& w);

struct IntensityParams {
  double ct_lo = -1024.0;        // HU mapped to -1
  double ct_hi = 3071.0;         // HU mapped to +1
  double mr_lo_percentile = 0.5;   // % of voxels below the MR lower bound
  double mr_hi_percentile = 99.5;  // % of voxels below the MR upper bound
  double mr_output_max = 1000.0;   // integer value written for +1 in synthetic MR
  void validate() const;
};

// p-th percentile (0..100) with linear interpolation between order statistics (numpy's default).
double percentile(const torch::Tensor& x, double p);

// The window used to normalise `v`: the CT window, or the MR volume's percentiles.
IntensityWindow window_for(const Volume& v, const IntensityParams& p);
// The window for writing synthetic volumes (no source volume): CT window or [0, mr_output_max].
IntensityWindow output_window(Modality m, const IntensityParams& p);

torch::Tensor normalise(const torch::Tensor& x, const IntensityWindow& w);  // clip, -> [-1, 1]
// One normalised value -> scanner units, not clipped (for reporting ranges that may reach past [-1, 1]).
double to_scanner_units(double y, const IntensityWindow& w);
// [-1, 1] -> scanner units; `round` gives integers (HU for CT).
// `top`: the largest y kept (1: the window's high end; MAISI's MR outputs are open above: +infinity).
torch::Tensor denormalise(const torch::Tensor& y, const IntensityWindow& w, bool round = true, double top = 1.0);

}  // namespace meddiff
