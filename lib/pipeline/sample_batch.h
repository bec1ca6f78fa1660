#pragma once
// One batch of a sampling job, as `meddiff sample` runs it: the volumes' starting noise and every
// sampler step's noise from (seed, volume index) alone -- so batch size and sharding never change a
// volume -- then, for a label-conditioned model, the per-pair intensity check of each (image, label
// map) pair: a pair that fails is generated again from the next attempt's noise (same map), up to
// `retries` times, then kept marked as failed.
#include "data/label_check.h"
#include "pipeline/generate.h"

#include <functional>
#include <vector>

namespace meddiff {

// Standard normal noise of `shape` from (seed, index, stream): stream 0 is the starting noise, step s
// of the sampler takes stream s + 1.
torch::Tensor sample_noise(uint64_t seed, int64_t index, uint64_t stream, const std::array<int64_t, 4>& shape);
// The seed of attempt `attempt` (0 = the job's seed) of a volume that failed the pair check.
uint64_t attempt_seed(uint64_t seed, int64_t attempt);

struct BatchItem {
  int64_t index = 0;    // the volume's global index
  torch::Tensor initial_noise;  // float: the first attempt's starting noise when given (sample --initial-noise), else seeded
  int64_t cls = 0;      // its class (0 for an unconditional model)
  torch::Tensor label;  // label-conditioned models: int64 [D, H, W] on the training grid
  torch::Tensor cond;   // and its condition on the latent grid (label_fractions)
};

struct PairRules {
  int64_t retries = 0;                              // regenerations of a pair that fails the check
  const LabelIntensityRanges* ranges = nullptr;     // the ranges it is judged against
  std::vector<std::string> names;                   // label names, for the report
  IntensityWindow window;                           // scanner units of the report
  std::vector<std::string> channel_names;           // the image channels, for the report
};

struct BatchResult {
  std::vector<torch::Tensor> images;  // [C, D, H, W] in [-1, 1], CPU float
  std::vector<int64_t> attempts;      // 0 = the first
  std::vector<PairCheck> checks;      // label-conditioned models only
  int64_t regenerated = 0;            // pairs generated again
};

// `on_step(s)`: sampler step s of the first attempt of the batch done (for progress).
BatchResult generate_batch(LoadedLDM& ldm, LatentAutoencoder& autoencoder, const std::vector<BatchItem>& items, const SamplerParams& sp, uint64_t seed,
                           const torch::Device& device, const AutoencoderRun& decode, const PairRules& rules,
                           const std::function<void(int64_t)>& on_step = nullptr);

}  // namespace meddiff
