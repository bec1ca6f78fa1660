#pragma once
// Loading a training set for the trainers: manifest -> read every volume (and mask) -> preprocess ->
// a deterministic train/validation split. Every file is checked before any training starts.
#include "data/preprocess.h"

#include <vector>

namespace meddiff::cli {

struct TrainingSet {
  std::vector<TrainingVolume> train, val;
  int64_t num_classes = 1;
};

TrainingSet load_training_set(const DataParams& p);

// Cases and classes in the manifest without reading the volumes (for --dry-run); {0, 2} with a note
// when the manifest cannot be read yet.
struct CaseCount {
  int64_t cases = 0, classes = 2;
};
CaseCount count_cases(const DataParams& p);

}  // namespace meddiff::cli
