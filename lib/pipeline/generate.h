#pragma once
// Generation: noise -> sampler (U-Net, schedule, guidance) -> latents -> autoencoder decode, one volume at
// a time (a volume never depends on the batch it was generated in).
#include "diffusion/samplers.h"
#include "pipeline/latent_autoencoder.h"
#include "pipeline/loaded_models.h"

#include <functional>

namespace meddiff {

// Samples latents from noise x_T [B, E, d, h, w] (in the network's layout) and decodes them: [B, C, D, H, W] in [-1, 1].
// `cond` [B, L, d, h, w]: the label condition (label_fractions) of a label-conditioned model, else
// undefined. Guidance contrasts (class, labels) with (null class, null labels).
// `noise(step)` gives the fresh noise of a step; `decode` sets the autoencoder's memory budget; `labels` int
// [B, D, H, W]: the pairs' label maps on the image grid, which a label-conditioned decoder sees (else undefined).
torch::Tensor generate_volumes(LoadedLDM& ldm, LatentAutoencoder& autoencoder, const torch::Tensor& x_T, const torch::Tensor& classes,
                               const torch::Tensor& cond, const SamplerParams& sp, const std::function<torch::Tensor(int64_t)>& noise,
                               const std::function<void(int64_t, int64_t)>& on_step = nullptr,
                               const AutoencoderRun& decode = {}, const torch::Tensor& labels = {});

}  // namespace meddiff
