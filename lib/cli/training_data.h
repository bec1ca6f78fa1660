#pragma once
// Loading a training set for the trainers: manifest -> read every volume (and mask) -> preprocess ->
// a deterministic train/validation split. Every file is checked before any training starts.
#include "data/preprocess.h"

#include <vector>

namespace meddiff::cli {

struct TrainingSet {
  std::vector<TrainingVolume> train, val;
  int64_t num_classes = 1;
  std::vector<std::string> label_names;  // label value -> name, when the dataset names them (nnU-Net / MSD dataset.json)
};

TrainingSet load_training_set(const DataParams& p);

// The cases of `source` as a run with data settings `p` reads them: indexed (any dataset layout, data.source),
// checked, and each reduced to the one channel the run trains on (data.channels, or the dataset's only channel):
// every entry's channels hold that channel alone.
Manifest training_cases(const std::string& source, const DataParams& p);

// Case e's first channel as a Volume, with its label map when it has one.
Volume read_case(const ManifestEntry& e, const DataParams& p);

// Cases and classes in the manifest (for --dry-run), reading only the first case, as the trainer will
// (so the memory the I/O libraries take is part of what --dry-run measures); {0, 2} with a note when
// the data cannot be read yet.
struct CaseCount {
  int64_t cases = 0, classes = 2;
};
CaseCount count_cases(const DataParams& p);

}  // namespace meddiff::cli
