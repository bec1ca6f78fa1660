#pragma once
// Per-label statistics of a set of volumes with label maps, gathered one volume at a time: for each
// label, how many volumes hold it (at least `min_voxels` voxels), its share of the volume, and the
// median intensity inside it (summarised over the volumes as mean and standard deviation), in the
// units of the intensities given (HU for CT). `meddiff eval` compares real and synthetic sets.
#include <torch/torch.h>

#include <vector>

namespace meddiff {

struct LabelStatistics {
  int64_t label = 0;
  int64_t volumes = 0;                    // volumes holding the label
  double fraction_mean = 0;               // mean share of the voxels (over those volumes)
  double median_mean = 0, median_sd = 0;  // the volumes' median intensities inside the label
};

class LabelSamples {
 public:
  // intensities and label map of one volume (same shape); labels below 0 are ignored
  void add(const torch::Tensor& intensities, const torch::Tensor& label, int64_t min_voxels = 8);
  // one entry per label 0..num_labels-1
  std::vector<LabelStatistics> summary(int64_t num_labels) const;
  int64_t labels_seen() const { return static_cast<int64_t>(medians_.size()); }  // 1 + the largest label met
  bool empty() const { return volumes_ == 0; }

 private:
  std::vector<std::vector<double>> medians_, fractions_;
  int64_t volumes_ = 0;
};

}  // namespace meddiff
