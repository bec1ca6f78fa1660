#pragma once
// From a loaded volume to a training tensor: optional resampling to a target spacing, the intensity
// window to [-1, 1], then crop/pad to the training shape (padding at -1). The window and the
// resulting geometry are kept so outputs can be mapped back to scanner units and world coordinates.
#include "core/config.h"
#include "data/dataset_source.h"
#include "data/intensity.h"
#include "data/volume.h"

namespace meddiff {

struct DataParams {
  std::string manifest;                          // folder, glob, CSV or JSON list of cases
  std::string modality = "mr";                   // mr or ct
  std::array<int64_t, 3> shape{32, 32, 32};      // training shape [D, H, W] in voxels (typed x, y, z)
  std::array<double, 3> spacing{0, 0, 0};        // resample to this spacing [x, y, z] mm first; 0 = keep
  std::string crop = "centre";                   // centre or foreground
  std::array<double, 2> ct_window{-1024, 3071};  // HU mapped to [-1, 1]
  std::array<double, 2> mr_percentiles{0.5, 99.5};
  double mr_output_max = 1000;                   // synthetic MR: +1 maps to this integer
  double val_fraction = 0.2;                     // share of cases held out for validation
  int64_t val_max = 8;                           // at most this many validation cases
  bool flip = true;                              // random flips along each axis when training
  int64_t seed = 0;                              // split and batch order
  std::string labels = "none";                   // none, or condition: the LDM is conditioned on label maps
  std::vector<std::string> label_names;          // index -> name (nnU-Net dataset.json); empty: background, label_1, ...
  std::vector<std::string> channels;             // which channels of a multi-channel dataset (names, in order); empty: all
  SourceParams source;                           // how dataset folders (BraTS, DICOM trees) are read into cases
  std::string cache;                             // preprocessed dataset cache folder; "" = preprocess at every start

  template <typename V>
  void visit(V& v) {
    v("manifest", manifest, "dataset: an nnU-Net raw or MSD task folder, a BraTS folder, a DICOM tree, a folder of images, a glob, a CSV (image,class[,label]) or a JSON manifest (`meddiff index`)");
    v("modality", modality, "mr or ct");
    v("shape", xyz(shape), "training shape [x,y,z] in voxels (crop/pad after resampling)");
    v("spacing", spacing, "resample to this spacing [x,y,z] mm before cropping; 0 keeps the file's");
    v("crop", crop, "centre or foreground (around the label map / non-background voxels)");
    v("ct_window", ct_window, "CT: Hounsfield window mapped to [-1,1]");
    v("mr_percentiles", mr_percentiles, "MR: per-volume percentiles mapped to [-1,1]");
    v("mr_output_max", mr_output_max, "MR: integer written for +1 in synthetic volumes");
    v("val_fraction", val_fraction, "share of cases held out for validation");
    v("val_max", val_max, "at most this many validation cases");
    v("flip", flip, "random flips along each axis during training");
    v("seed", seed, "seed of the train/validation split and of the batch order");
    v("labels", labels, "none, or condition: the LDM is conditioned on the cases' label maps (paired image + label sampling)");
    v("label_names", label_names, "label index -> name, e.g. [\"background\",\"lesion\"]; empty: background, label_1, ...");
    v("channels", channels, "the channels to train on, by name and in this order (e.g. [\"t1\",\"t1ce\",\"t2\",\"flair\"] or [\"flair\"] of BraTS); empty: all of the dataset's; `meddiff index` lists them");
    v("source", source, "how dataset folders are read: BraTS suffixes, classes per case, DICOM series rules");
    v("cache", cache, "folder of the preprocessed dataset cache (float16 records mapped into memory, built once in parallel, shared by runs and ranks); empty: preprocess at every start");
  }
  void validate(const std::string& where = "data") const;
  Modality modality_enum() const;
  IntensityParams intensity() const;
  bool label_conditioned() const { return labels == "condition"; }
  // Image channels of the models trained on this data: one per name in `channels` (a training run writes the
  // dataset's channel names there when it has several), else 1. Old checkpoints have none: 1.
  int64_t image_channels() const { return std::max<int64_t>(1, static_cast<int64_t>(channels.size())); }
  // `source` as a training run reads it: a DICOM tree gives the series of data.modality unless
  // data.source.dicom.modality names others.
  SourceParams effective_source() const;
  // The settings a preprocessed case depends on (the dataset cache's key).
  nlohmann::json record_settings() const;
};

struct TrainingVolume {
  torch::Tensor x;          // [C, D, H, W] float in [-1, 1], one row per image channel
  Geometry geometry;        // geometry of x (after resample / crop)
  std::vector<IntensityWindow> windows;  // per channel: scanner values of -1 and +1
  int64_t class_label = 0;
  std::string source;
  std::string label_source;  // the label map's file, when the case has one
  torch::Tensor label;      // int64 [D, H, W] on the grid of x, when the case has a label map
  int64_t label_count = -1; // its largest value + 1 when known (kept by the dataset cache; -1: read the map)
};

// The channels of one case (the same grid; the label map, when there is one, on the first) -> one training
// volume: each channel resampled and windowed on its own (MR percentiles per channel), all cropped by the
// same box (the foreground of the label map, or of any channel without one).
TrainingVolume preprocess(const std::vector<Volume>& channels, const DataParams& p, int64_t class_label, const std::string& source);
TrainingVolume preprocess(const Volume& v, const DataParams& p, int64_t class_label, const std::string& source);

}  // namespace meddiff
