#pragma once
// The quality check of a synthetic (image, label map) pair: inside every label the image's median
// intensity must lie in the range the training cases span for that label. A range is fitted on a set
// of cases (per case, the median of the normalised intensity inside the label; then the smallest and
// largest of those medians, widened by a quarter of their spread and at least 0.05, i.e. about 100 HU
// on the default CT window); the LDM trainer accepts the union of the training images' range and the
// range of those cases as the VQ-GAN reproduces them. Labels with fewer than `min_voxels` voxels in a
// map are not judged.
#include "data/intensity.h"
#include "data/preprocess.h"

#include <nlohmann/json.hpp>

namespace meddiff {

struct LabelRange {
  int64_t label = 0;
  double lo = 0, hi = 0;  // accepted medians, normalised [-1, 1]
  double median = 0;      // median of the training cases' medians
  int64_t cases = 0;      // training cases that contain the label
  int64_t channel = 0;    // the image channel it holds for (one range per label and channel)
};

struct LabelIntensityRanges {
  std::vector<LabelRange> ranges;  // labels seen in training
  int64_t min_voxels = 8;
  nlohmann::json to_json() const;
  static LabelIntensityRanges from_json(const nlohmann::json& j);
};

LabelIntensityRanges fit_label_ranges(const std::vector<TrainingVolume>& cases, int64_t num_labels);
// Per label the union of both ranges (a label in only one of them keeps that one).
LabelIntensityRanges merge_label_ranges(const LabelIntensityRanges& a, const LabelIntensityRanges& b);

struct PairCheck {
  bool passed = true;
  std::string failed;    // "lesion: median 212 outside [310, 520]; ..." (scanner units)
  nlohmann::json detail; // per label: name, voxels, median, range (scanner units), passed
};

// image: normalised [-1, 1] on the label's grid, [C, D, H, W] (or [D, H, W]: one channel); window: to report in
// scanner units (HU for CT); channel_names: to name the channel of a failing range when there are several.
PairCheck check_pair(const torch::Tensor& image, const torch::Tensor& label, const LabelIntensityRanges& ranges,
                     const std::vector<std::string>& names, const IntensityWindow& window,
                     const std::vector<std::string>& channel_names = {});

}  // namespace meddiff
