#pragma once
// The latent space of the diffusion model: the autoencoder's latents (a VQ-GAN's pre-quantisation latent,
// a KL autoencoder's posterior mean), encoded once and cached, and their normalisation to about [-1, 1]
// (stored in the LDM checkpoint).
//   codebook_minmax: the reference's choice: the VQ-GAN codebook's global min/max map to -1/+1.
//   channel_meanstd: per-channel mean and standard deviation of the training latents.
#include "data/preprocess.h"
#include "pipeline/latent_autoencoder.h"

#include <nlohmann/json.hpp>

#include <functional>

namespace meddiff {

struct LatentNorm {
  std::string kind;
  std::vector<double> offset, scale;  // per channel: z_norm = (z - offset) / scale
  double bound = 1.0;                 // largest |z_norm| of the training latents: the x0 clipping range

  torch::Tensor apply(const torch::Tensor& z) const;   // [B, E, ...]
  torch::Tensor invert(const torch::Tensor& z) const;
  nlohmann::json to_json() const;
  static LatentNorm from_json(const nlohmann::json& j);
};

struct LatentSet {
  torch::Tensor latents;  // float [N, E, d, h, w], not normalised
  torch::Tensor classes;  // int64 [N]
};

// Encodes every volume (batch of one, no augmentation) with the frozen autoencoder.
LatentSet encode_latents(LatentAutoencoder& ae, const std::vector<TrainingVolume>& volumes, const torch::Device& device);
// The same for `count` volumes made one at a time by `volume(i)` (only one is held at once).
LatentSet encode_latents(LatentAutoencoder& ae, int64_t count, const std::function<TrainingVolume(int64_t)>& volume,
                         const torch::Device& device);
// Normalised latents zn [N, E, d, h, w] with their classes [N] as stage-2 training items.
std::vector<TrainingVolume> latent_items(const torch::Tensor& zn, const torch::Tensor& classes);
LatentNorm fit_latent_norm(const std::string& kind, const LatentAutoencoder& ae, const torch::Tensor& latents);

}  // namespace meddiff
