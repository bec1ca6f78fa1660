#pragma once
// The volumes `meddiff eval` compares, from any of:
//   - a sample folder of `meddiff sample` or its manifest.jsonl (images, label maps and classes as sampled);
//   - a folder with a manifest.json (e.g. `meddiff phantoms`), a manifest (CSV, JSON), a glob or a folder
//     of images; in a folder or glob, "X_label.EXT" beside "X.EXT" is X's label map and not a volume.
// Every volume is prepared with the data settings of the VQ-GAN (its training normalisation), its label
// map on the same grid; all problems are reported together.
#include "data/manifest.h"
#include "data/preprocess.h"

#include <string>
#include <vector>

namespace meddiff::cli {

std::vector<ManifestEntry> eval_entries(const std::string& source, const std::string& what);
std::vector<TrainingVolume> load_eval_set(const std::string& source, const DataParams& p, const std::string& what);

}  // namespace meddiff::cli
