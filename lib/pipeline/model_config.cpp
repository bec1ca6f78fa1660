#include "pipeline/model_config.h"

#include "diffusion/rectified_flow.h"

namespace meddiff {

void LDMParams::validate(const std::string& w) const {
  if (objective != "diffusion" && objective != "rflow")
    fail("config: '{}.objective' must be diffusion or rflow (got '{}')", w, objective);
  if (!(rflow_shift >= 0 && rflow_shift <= 100)) fail("config: '{}.rflow_shift' must be 0 (automatic) or within (0, 100]", w);
  if (schedule != "linear" && schedule != "cosine" && schedule != "scaled_linear")
    fail("config: '{}.schedule' must be linear, cosine or scaled_linear (got '{}')", w, schedule);
  if (timesteps < 2 || timesteps > 100000) fail("config: '{}.timesteps' must be within 2..100000 (got {})", w, timesteps);
  if (!(cosine_s > 0 && cosine_s < 1)) fail("config: '{}.cosine_s' must be within (0, 1)", w);
  if (prediction != "eps" && prediction != "v" && prediction != "x0")
    fail("config: '{}.prediction' must be eps, v or x0 (got '{}')", w, prediction);
  if (loss != "l1" && loss != "l2") fail("config: '{}.loss' must be l1 or l2 (got '{}')", w, loss);
  if (latent_norm != "codebook_minmax" && latent_norm != "channel_meanstd")
    fail("config: '{}.latent_norm' must be codebook_minmax or channel_meanstd (got '{}')", w, latent_norm);
  if (label_condition != "fractions" && label_condition != "subvoxel")
    fail("config: '{}.label_condition' must be fractions or subvoxel (got '{}')", w, label_condition);
  unet.validate(w + ".unet");
}

double resolved_rflow_shift(const LDMParams& p, const std::array<int64_t, 4>& s) {
  return p.rflow_shift > 0 ? p.rflow_shift : rflow_resolution_shift(s[1] * s[2] * s[3]);
}

void SampleDefaults::validate(const std::string& w) const {
  if (sampler != "ddpm" && sampler != "ddim" && sampler != "dpmpp2m" && sampler != "euler" && sampler != "heun")
    fail("config: '{}.sampler' must be ddpm, ddim, dpmpp2m, euler or heun (got '{}')", w, sampler);
  if (steps < 0) fail("config: '{}.steps' must be positive, or 0 for the sampler's default", w);
  if (grid != "uniform" && grid != "logsnr" && grid != "karras") fail("config: '{}.grid' must be uniform, logsnr or karras (got '{}')", w, grid);
  if (!(eta >= 0)) fail("config: '{}.eta' must not be negative", w);
  if (!(guidance >= 0)) fail("config: '{}.guidance' must not be negative", w);
  if (!(dynamic_threshold == 0 || (dynamic_threshold > 0.5 && dynamic_threshold < 1)))
    fail("config: '{}.dynamic_threshold' must be 0 or within (0.5, 1)", w);
  if (batch < 1) fail("config: '{}.batch' must be positive", w);
  if (!(max_memory_gib >= 0)) fail("config: '{}.max_memory_gib' must not be negative (0 = automatic)", w);
}

}  // namespace meddiff
