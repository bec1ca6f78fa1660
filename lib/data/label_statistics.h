#pragma once
// Per-label statistics of a set of volumes with label maps, gathered one volume at a time: for each
// label, how many volumes hold it (at least `min_voxels` voxels), its share of the volume, and the
// median intensity inside it (summarised over the volumes as mean and standard deviation), in the
// units of the intensities given (HU for CT), and the step of intensity across its boundary: the median
// of the label's voxels that touch another label minus the median of the other voxels that touch it
// (3x3x3 neighbourhoods; labels 1 and up), i.e. how sharply the label stands out at its edge. A
// synthetic image whose small structure fades into its surroundings keeps a small part of the real
// step, and a segmenter trained on it places that edge elsewhere. The edge agreement says where the
// image's edge lies: the Dice of the label with the voxels of the label's one-voxel neighbourhood whose
// intensity is on the label's side of the midpoint between the two shells' medians (1: the image's edge is
// the label's; a one-voxel shift of a 4-voxel cube gives 0.75). `meddiff eval` compares real and synthetic sets.
#include <torch/torch.h>

#include <optional>
#include <vector>

namespace meddiff {

struct LabelStatistics {
  int64_t label = 0;
  int64_t volumes = 0;                    // volumes holding the label
  double fraction_mean = 0;               // mean share of the voxels (over those volumes)
  double median_mean = 0, median_sd = 0;  // the volumes' median intensities inside the label
  int64_t edge_volumes = 0;               // volumes whose label has both edge shells (>= min_voxels each)
  double edge_step_mean = 0, edge_step_sd = 0;  // the step across the label's boundary (inside shell - outside shell)
  double edge_agreement_mean = 0, edge_agreement_sd = 0;  // the Dice of the label with the image thresholded at its edge
};

struct EdgeMeasures {
  double step = 0;       // median of the inner shell - median of the outer shell
  double agreement = 0;  // Dice(label, voxels of label | outer shell on the label's side of the shells' midpoint)
};

// The step across the boundary of a label (`mask`, [D, H, W], true inside it) in one volume: median intensity of
// the label's voxels with a neighbour outside it minus that of the outside voxels with a neighbour in it (3x3x3),
// and the edge agreement; nullopt when either shell has fewer than `min_voxels` voxels.
std::optional<EdgeMeasures> edge_measures(const torch::Tensor& intensities, const torch::Tensor& mask, int64_t min_voxels = 8);

class LabelSamples {
 public:
  // intensities and label map of one volume (same shape); labels below 0 are ignored
  void add(const torch::Tensor& intensities, const torch::Tensor& label, int64_t min_voxels = 8);
  // one entry per label 0..num_labels-1
  std::vector<LabelStatistics> summary(int64_t num_labels) const;
  int64_t labels_seen() const { return static_cast<int64_t>(medians_.size()); }  // 1 + the largest label met
  bool empty() const { return volumes_ == 0; }

 private:
  std::vector<std::vector<double>> medians_, fractions_, edges_, agreements_;
  int64_t volumes_ = 0;
};

}  // namespace meddiff
