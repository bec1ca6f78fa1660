#pragma once
// `train-ldm --init DIR/ldm.pt`: fine-tuning a latent diffusion U-Net brought in by `meddiff import` (MAISI-v2's
// rectified-flow U-Net, a MONAI bundle's DiffusionModelUNet) on the user's own cases, with the training rule of the
// recipe it was imported with:
//  - MAISI (scheduler rflow-maisi, as NV-Generate-CTMR's diff_model_train.py): per sample a uniform u in [0, 1),
//    timestep t = MAISI's transform of u T for the latent's size (diffusion/maisi_rflow.h), noisy latent
//    (1 - t/T) x0 + (t/T) noise, target x0 - noise, L1 loss; the U-Net sees each case's voxel spacing (mm x 100,
//    in RAS order) and the modality code (CT 1, MR as `modality_class`);
//  - a bundle (ddpm / ddim): an integer timestep, q(x_t | x0) on the bundle's beta schedule, the recipe's
//    prediction target (eps, v or x0), mean squared error.
// The latents are the imported autoencoder's posterior means of the cases, prepared as MAISI and MONAI prepare
// theirs (CT's [-1000, 1000] HU, MR's 0th-99.5th percentiles as [0, 1], RAS (x, y, z) arrays), times the recipe's
// scale factor. Adam at ldm_train.lr with its warm-up and gradient clipping, bf16 autocast as ldm_train.precision says
// (auto: on CUDA; MAISI trains with fp16 autocast); every random draw of step s comes from
// (ldm_train.seed, s, sample), so a resumed run equals an uninterrupted one; data-parallel as train-ldm.
// The run folder holds last.pt / step-NNNNNNN.pt of kind "monai-unet" (the source's network, recipe and family,
// so `sample --ldm OUT/last.pt` runs it as the imported model) and a copy of the source's autoencoder.pt.
#include "pipeline/loaded_models.h"
#include "train/ldm_trainer.h"

#include <optional>

namespace meddiff {

struct ImportedFineTune {
  std::filesystem::path init;               // the imported ldm.pt (autoencoder.pt beside it)
  std::optional<int64_t> modality_class;    // MAISI's modality code; CT defaults to 1
};

LDMTrainResult fine_tune_imported_ldm(const RunConfig& cfg, const ImportedFineTune& init, LoadedAutoencoder& vq,
                                      const std::vector<TrainingVolume>& train, const std::filesystem::path& out_dir, RunStart start,
                                      Collectives* comm = nullptr, std::optional<torch::Device> device = std::nullopt);

// One batch's loss under the recipe's training rule, as each step of fine_tune_imported_ldm computes it: x0 (the
// scaled latents), noise and u (MAISI: uniform draws in [0, 1), one per sample; a bundle: the integer timesteps, as
// float) on the latents' device; `alphas_cumprod` the bundle's schedule (unused for MAISI).
torch::Tensor imported_ldm_loss(const LoadedLDM& l, MonaiUNet& net, const torch::Tensor& x0, const torch::Tensor& noise, const torch::Tensor& u,
                                const MonaiUNetInputs& in, const torch::Tensor& alphas_cumprod = {});

// The per-case spacing input of a MAISI U-Net: the case's voxel spacing along the RAS axes x, y, z, in mm x 100.
torch::Tensor maisi_spacing_input(const Geometry& g);

}  // namespace meddiff
