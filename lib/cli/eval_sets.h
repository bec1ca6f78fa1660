#pragma once
// The volumes `meddiff eval` compares, from any of:
//   - a sample folder of `meddiff sample` or its manifest.jsonl (images, label maps and classes as sampled);
//   - a folder with a manifest.json (e.g. `meddiff phantoms`), a manifest (CSV, JSON), a glob or a folder
//     of images; in a folder or glob, "X_label.EXT" beside "X.EXT" is X's label map and not a volume;
//   - a dataset folder (nnU-Net raw, MSD, BraTS, DICOM tree), read as training reads it (data.source, and the
//     channel of data.channels).
// Every volume is prepared with the data settings of the VQ-GAN (its training normalisation), its label
// map on the same grid; all problems are reported together.
#include "data/distribution_metrics.h"
#include "data/label_statistics.h"
#include "data/manifest.h"
#include "data/preprocess.h"
#include "pipeline/eval_features.h"

#include <functional>
#include <map>

#include <string>
#include <vector>

namespace meddiff::cli {

std::vector<ManifestEntry> eval_entries(const std::string& source, const std::string& what, const DataParams& p);
// One volume (and its label map) prepared with `p`; an error names the file.
TrainingVolume load_eval_volume(const ManifestEntry& e, const DataParams& p);

// The grid [D, H, W] on which an eval with an imported autoencoder (which records no training grid)
// prepares every volume: `shape` when given (each size a multiple of the autoencoder's downsampling
// `factor`), else the first volume of `source`, resampled to p.spacing when set, rounded up to multiples of
// `factor`.
std::array<int64_t, 3> imported_eval_grid(const std::string& source, const DataParams& p, const std::array<int64_t, 3>& shape,
                                          int64_t factor);

// What `meddiff eval` keeps of a set, gathered in one pass that holds one volume at a time: memory
// grows with the features and the audit grids (at most 64^3 voxels each), not with the volumes.
struct SetSummary {
  std::vector<ManifestEntry> entries;
  torch::Tensor latent_features;             // [n, 10 E]
  torch::Tensor latents;                     // [n, E, d, h, w] (when `keep_latents`)
  torch::Tensor net_features;                // [n, F] (with a feature network)
  std::array<FeatureMoments, 3> planes;      // a 2-D network's slice features per plane
  torch::Tensor histogram;                   // voxel counts per bin of [-1, 1], float64
  LabelSamples labels;                       // per-label samples (volumes with label maps)
  std::map<int64_t, LabelSamples> labels_by_class;  // the same per class (MR classes normalise differently)
  std::vector<torch::Tensor> audit;          // audit grids (when `audit_grid` is given)
  std::string name(size_t i) const { return entries[i].image.filename().string(); }
};

struct SummaryOptions {
  LatentAutoencoder* autoencoder = nullptr;  // the latent features' encoder
  AutoencoderRun run;
  torch::Device device = torch::kCPU;
  const FeatureNetwork* net = nullptr;
  FeatureInput net_input;
  int64_t bins = 64;
  std::function<torch::Tensor(const torch::Tensor&)> units;        // [-1, 1] -> scanner-like units
  std::function<torch::Tensor(const torch::Tensor&)> audit_grid;   // [1, D, H, W] -> [d, h, w]; empty: none
  bool keep_latents = false;
  bool network_xyz = false;  // the autoencoder sees MONAI's RAS (x, y, z) arrays (an imported one)
};

SetSummary summarise_set(const std::string& source, const DataParams& p, const std::string& what, const SummaryOptions& o);

}  // namespace meddiff::cli
