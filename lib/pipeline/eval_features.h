#pragma once
// Feature vectors of volumes for `meddiff eval`, from a trained VQ-GAN's encoder: per latent channel
// the mean and standard deviation over the volume, and the latent averaged over a 2x2x2 grid of
// regions (coarse layout). E channels give 10 E values per volume. Volumes are encoded one at a time
// within the memory budget (split encoding for large ones).
#include "data/preprocess.h"
#include "pipeline/autoencoder.h"

namespace meddiff {

struct LatentFeatures {
  torch::Tensor features;  // [n, 10 E] float64
  torch::Tensor latents;   // [n, E, d, h, w] float32 on the CPU (for latent-space distances)
};

LatentFeatures latent_features(VQGAN& model, const std::vector<TrainingVolume>& volumes, const AutoencoderRun& run,
                               const torch::Device& device);

}  // namespace meddiff
