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

// Cases and classes in the manifest (for --dry-run), reading only the first case, as the trainer will
// (so the memory the I/O libraries take is part of what --dry-run measures); {0, 2} with a note when
// the data cannot be read yet.
struct CaseCount {
  int64_t cases = 0, classes = 2;
};
CaseCount count_cases(const DataParams& p);

}  // namespace meddiff::cli
