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

}  // namespace meddiff::cli
