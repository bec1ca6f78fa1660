#pragma once
// Per-label statistics of a set of volumes with label maps: for each label, how many volumes hold it
// (at least `min_voxels` voxels), its share of the volume, and the median intensity inside it
// (summarised over the volumes as mean and standard deviation), in the units `to_units` gives
// (HU for CT). `meddiff eval` compares them between real and synthetic volumes.
#include "data/preprocess.h"

#include <functional>
#include <vector>

namespace meddiff {

struct LabelStatistics {
  int64_t label = 0;
  int64_t volumes = 0;                    // volumes holding the label
  double fraction_mean = 0;               // mean share of the voxels (over those volumes)
  double median_mean = 0, median_sd = 0;  // the volumes' median intensities inside the label
};

// One entry per label 0..num_labels-1; volumes without a label map are skipped.
std::vector<LabelStatistics> label_statistics(const std::vector<TrainingVolume>& volumes, int64_t num_labels,
                                              const std::function<torch::Tensor(const torch::Tensor&)>& to_units,
                                              int64_t min_voxels = 8);

}  // namespace meddiff
