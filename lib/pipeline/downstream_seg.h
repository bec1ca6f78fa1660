#pragma once
// The downstream check of a synthetic (image, label map) dataset (`meddiff eval --downstream seg`): does
// it help a segmentation model? A compact 3-D segmentation U-Net (models/seg_unet.h; soft Dice +
// cross-entropy weighted by 1/sqrt(label frequency), Adam, random flips, a fixed budget of iterations)
// is trained on
//   (a) "real":           the real labelled training cases given,
//   (b) "real+synthetic": the same plus the synthetic pairs, a share of every batch drawn from them,
//   (c) "synthetic":      the synthetic pairs alone,
// once per seed, and scored on held-out real cases: per label Dice, ASSD and HD95 (mm). The gain of
// (b) over (a) is reported per label with its spread over the seeds. Every draw (initial weights,
// cases, flips) comes from (seed, iteration, slot): the same inputs give the same numbers.
#include "data/preprocess.h"

#include <nlohmann/json.hpp>

#include <functional>
#include <string>
#include <vector>

namespace meddiff {

// Defaults measured on 4 real MR phantoms at 32^3 scored on 8 held-out ones (2 cores): 300 iterations,
// lr 3e-3, 8 base channels take 50 s per run and reach Dice skull 0.99, brain 1.00, ventricles 0.95,
// lesion 0.94 (200 iterations: ventricles 0.91, lesion 0.85 in 30 s, and a seed spread of the small
// labels as large as the effects to be measured; 16 channels at lr 1e-3: 0.985 / 0.89 in 108 s; without
// the frequency-weighted cross-entropy the small labels stayed at 0 within 200 iterations).
struct DownstreamParams {
  int64_t iterations = 300;       // optimisation steps per training run
  int64_t batch = 2;              // cases per step
  double lr = 3e-3;               // Adam
  int64_t seeds = 2;              // training runs per training set (seeds 0..seeds-1)
  double synthetic_share = 0.5;   // (b): probability that a batch slot takes a synthetic pair
  int64_t base_channels = 8;      // of the segmentation U-Net
  int64_t levels = 2;             // its downsamplings
  double weight_power = 0.5;      // cross-entropy weight of a label: 1 / frequency^power
  void validate() const;
  nlohmann::json to_json() const;
};

struct SegCase {
  torch::Tensor x;      // [C, D, H, W] in [-1, 1]
  torch::Tensor label;  // int64 [D, H, W]
  std::array<double, 3> spacing{1, 1, 1};  // x, y, z mm (for surface distances)
  std::string name;
};

// Trains and scores every configuration x seed; `num_labels` counts the background. `names` label names
// (index 0 the background). `on_run(what)` reports each run (progress).
nlohmann::json downstream_segmentation(const std::vector<SegCase>& real_train, const std::vector<SegCase>& synthetic,
                                       const std::vector<SegCase>& held_out, int64_t num_labels,
                                       const std::vector<std::string>& names, const DownstreamParams& p, const torch::Device& device,
                                       const std::function<void(const std::string&)>& on_run = nullptr);

}  // namespace meddiff
