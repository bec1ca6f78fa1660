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
  std::vector<std::string> channel_names;  // the image channels of every x, in order (data.channels, or the dataset's)
};

TrainingSet load_training_set(const DataParams& p);

// The cases of `source` as a run with data settings `p` reads them: indexed (any dataset layout, data.source),
// checked, and each reduced to the channels the run trains on, in data.channels' order (all of the dataset's
// when it names none); channel_names holds their names (channel_N for a dataset that names none).
Manifest training_cases(const std::string& source, const DataParams& p);

// Case e's channels as Volumes, in order, the first with the case's label map when it has one.
std::vector<Volume> read_case(const ManifestEntry& e, const DataParams& p);

// data.channels as a run records it: the names of the dataset's channels it trains on when there are several
// (the models' image channels = their count), else as given. A model trained on 4 channels is refused data
// with other channels later (train-ldm, eval) by name.
std::vector<std::string> resolved_channels(const DataParams& p, const std::vector<std::string>& dataset_channels);

// Data read for a trained VQ-GAN (train-ldm, eval) takes its channels: data.channels left empty becomes the
// VQ-GAN's; one that names other channels (or another order) is refused, naming both lists.
void use_model_channels(DataParams& p, const std::vector<std::string>& model_channels, const std::string& model_path);

// Cases and classes in the manifest (for --dry-run), reading only the first case, as the trainer will
// (so the memory the I/O libraries take is part of what --dry-run measures); {0, 2} with a note when
// the data cannot be read yet.
struct CaseCount {
  int64_t cases = 0, classes = 2;
  std::vector<std::string> channel_names;
};
CaseCount count_cases(const DataParams& p);

}  // namespace meddiff::cli
