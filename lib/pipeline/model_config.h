#pragma once
// The settings that define a trained model for inference: the latent diffusion model (schedule,
// objective, latent normalisation, U-Net) and the defaults of sampling. Stored in every checkpoint
// as part of the run's config; the trainers' own settings are in train/train_config.h.
#include "core/config.h"
#include "models/unet_params.h"

#include <array>
#include <string>

namespace meddiff {

// The latent diffusion model: noise schedule, objective, latent normalisation and the U-Net.
struct LDMParams {
  std::string objective = "diffusion";    // diffusion (schedule + prediction) or rflow (rectified flow)
  double rflow_shift = 0;                 // rflow: timestep shift; 0 = (latent voxels / 32^3)^(1/3)
  std::string schedule = "cosine";        // linear, cosine, scaled_linear
  int64_t timesteps = 300;                // T (reference: 300)
  double cosine_s = 0.008;
  std::string prediction = "eps";         // eps, v, x0
  std::string loss = "l1";                // l1 (reference) or l2
  std::string latent_norm = "codebook_minmax";  // codebook_minmax (reference) or channel_meanstd
  std::string label_condition = "fractions";    // with data.labels = condition: fractions or subvoxel (data/label_maps.h)
  UNetParams unet;

  template <typename V>
  void visit(V& v) {
    v("objective", objective, "diffusion (noise schedule and prediction below) or rflow (rectified flow: velocity target, euler/heun sampling)");
    v("rflow_shift", rflow_shift, "rflow: timestep shift s (t -> s t / (1 + (s - 1) t)); 0 = resolution-dependent (latent voxels / 32^3)^(1/3)");
    v("schedule", schedule, "noise schedule: linear, cosine or scaled_linear (diffusion)");
    v("timesteps", timesteps, "diffusion steps T");
    v("cosine_s", cosine_s, "offset s of the cosine schedule");
    v("prediction", prediction, "network target: eps, v or x0");
    v("loss", loss, "l1 or l2");
    v("latent_norm", latent_norm, "latent scaling to about [-1,1]: codebook_minmax or channel_meanstd");
    v("label_condition", label_condition, "with data.labels = condition: how the label map reaches the latent grid: fractions (each label's share of a latent voxel) or subvoxel (the one-hot map of every image voxel under a latent voxel, as channels: exact positions of small structures)");
    v("unet", unet);
  }
  void validate(const std::string& where = "ldm") const;
  bool rflow() const { return objective == "rflow"; }
};

// Defaults of `meddiff sample` (flags override them).
// The rectified-flow timestep shift of a latent [C, d, h, w]: ldm.rflow_shift, or when 0 the
// resolution-dependent (d h w / 32^3)^(1/3).
double resolved_rflow_shift(const LDMParams& p, const std::array<int64_t, 4>& latent_shape);

struct SampleDefaults {
  std::string sampler = "ddim";
  int64_t steps = 0;  // 0: the sampler's measured default (default_steps)
  double eta = 0.0;
  double guidance = 1.5;
  bool clip_x0 = true;
  double dynamic_threshold = 0.0;
  std::string grid = "uniform";
  int64_t batch = 4;
  double max_memory_gib = 0;             // autoencoder memory budget of sample/reconstruct; 0 = automatic

  template <typename V>
  void visit(V& v) {
    v("sampler", sampler, "ddpm, ddim or dpmpp2m (diffusion); euler or heun (rflow)");
    v("steps", steps, "sampler steps; 0 = the sampler's measured default (ddpm all, ddim 10, dpmpp2m 10, euler 5, heun 5)");
    v("eta", eta, "DDIM eta");
    v("guidance", guidance, "classifier-free guidance weight (1 = none)");
    v("clip_x0", clip_x0, "clamp predicted latents to the range of the training latents");
    v("dynamic_threshold", dynamic_threshold, "dynamic thresholding percentile (0 = off)");
    v("grid", grid, "timesteps of the diffusion samplers: uniform (in t), logsnr or karras");
    v("batch", batch, "volumes per batch");
    v("max_memory_gib", max_memory_gib, "memory budget (GiB) for decoding/encoding in sample and reconstruct; 0 = automatic (see --max-memory)");
  }
  void validate(const std::string& where = "sample") const;
};

}  // namespace meddiff
