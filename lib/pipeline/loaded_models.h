#pragma once
// Trained models loaded for inference (sampling, reconstruction, evaluation): the network in eval
// mode on a device, and the parts of the run's config that inference needs. Trainers write the
// checkpoints (lib/train); everything that only uses them goes through here.
#include "core/checkpoint.h"
#include "data/geometry_json.h"
#include "data/label_check.h"
#include "data/label_maps.h"
#include "data/preprocess.h"
#include "data/volume.h"
#include "diffusion/objective.h"
#include "diffusion/maisi_rflow.h"
#include "diffusion/schedule.h"
#include "pipeline/denoiser.h"
#include "models/autoencoder_params.h"
#include "models/vqgan.h"
#include "pipeline/latent_autoencoder.h"
#include "pipeline/latents.h"
#include "pipeline/model_config.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <functional>
#include <optional>

namespace meddiff {

// Stage 1 as meddiff trained it: a VQ-GAN or a KL autoencoder (autoencoder.kind), with its run's settings.
struct LoadedAutoencoder {
  nlohmann::json config;   // the run's resolved config, as stored in the checkpoint
  DataParams data;         // how volumes were prepared for it
  AutoencoderParams autoencoder;
  VQGANParams vqgan;
  SampleDefaults sample;   // sample.max_memory_gib: the autoencoder's memory budget
  std::shared_ptr<LatentAutoencoder> ae;  // eval mode, either kind
  VQGAN model{nullptr};    // the VQ-GAN itself (kind vqgan; null for a KL autoencoder)
  int64_t step = 0;
  // An autoencoder brought in by meddiff import: its family ("maisi", "monai"); empty for one meddiff trained.
  // Its network sees MONAI's RAS (x, y, z) arrays (data/ras_axes.h), not meddiff's [D, H, W].
  std::string imported;
  bool network_xyz() const { return !imported.empty(); }
  std::string kind() const {
    if (!imported.empty()) return fmt::format("imported {} KL autoencoder", imported == "maisi" ? "MAISI" : "MONAI");
    return autoencoder.is_kl() ? "KL autoencoder" : "VQ-GAN";
  }
};
// A checkpoint of kind "vqgan" or "kl-autoencoder" written by train-vqgan (stage 1's last.pt or step-NNNNNNN.pt).
// An imported autoencoder (meddiff import) has no training run's settings: it is refused unless `imported_as` says
// which modality the volumes are, and then prepared as MONAI and MAISI prepare theirs: CT's [-1000, 1000] HU and
// MR's 0th-99.5th percentiles as the network's [0, 1] (ScaleIntensityRange(Percentiles)d), in RAS (x, y, z) order.
LoadedAutoencoder load_autoencoder(const std::filesystem::path& checkpoint, const torch::Device& device = torch::kCPU,
                                   std::optional<Modality> imported_as = std::nullopt);
LoadedAutoencoder load_autoencoder(const Checkpoint& checkpoint, const torch::Device& device = torch::kCPU);

// What a sampler needs to turn noise into volumes, rebuilt from an LDM checkpoint: meddiff's own (kind
// "ldm") or a MONAI / MAISI model brought in by `meddiff import` (kind "monai-unet"; pipeline/imported_ldm.h).
struct LoadedLDM {
  nlohmann::json config;
  DataParams data;
  LDMParams ldm;
  SampleDefaults sample;
  std::shared_ptr<Denoiser> net;  // EMA weights, eval mode
  NoiseSchedule schedule;
  Prediction prediction = Prediction::Eps;
  bool rflow = false;        // rectified flow (then schedule and prediction are unused)
  double rflow_shift = 1.0;  // its timestep shift (resolved)
  int64_t sampler_T() const { return rflow ? 0 : schedule.T; }  // for SamplerParams::validate
  LatentNorm norm;
  int64_t num_classes = 0;   // 0: unconditional
  std::array<int64_t, 4> latent_shape{};
  Geometry geometry;         // of the training volumes (spacing, direction; origin centred)
  Modality modality = Modality::MR;
  std::string vqgan_sha256;
  std::string vqgan_path;    // where the VQ-GAN was when the LDM was trained
  int64_t step = 0;
  // Label-conditioned models (data.labels = condition); num_labels = 0 otherwise.
  int64_t num_labels = 0;
  std::vector<std::string> label_names;
  LabelCondition label_condition;     // label map -> the U-Net's condition on the latent grid
  LabelIntensityRanges label_ranges;  // the per-pair check's default: the training images' own ranges
  LabelIntensityRanges union_ranges;  // the union with what the VQ-GAN reproduces of them (sample --qc-ranges union)
  std::filesystem::path mask_bank;    // the training label maps (next to the checkpoint)
  int64_t augment_copies = 0;         // augmented copies of each case it learned (ldm_train.augment_copies)
  // Imported models (empty family: meddiff's own).
  std::string family;                 // "maisi" or "monai"
  std::string imported_source_sha256; // the imported U-Net file's
  nlohmann::json recipe;              // the sampling recipe recorded by meddiff import
  std::optional<MaisiRFlowParams> maisi;  // sampled with MAISI's rectified-flow timesteps (Euler)
  std::optional<int64_t> fixed_class; // the class every volume takes (MAISI: the modality code)
  bool network_xyz = false;           // the networks' arrays are (x, y, z) of a RAS volume (MONAI's layout), not [D, H, W]
  double output_top = 1.0;            // decoded volumes are clipped to [-1, output_top] (imported MR: open above, as MAISI)
  // An imported MAISI model with its ControlNet (attach_controlnet): a label map [D, H, W] on the output grid -> its
  // embedding, the `cond` the denoiser takes; voxels of label 0 are set to the output's minimum, as MAISI does.
  std::function<torch::Tensor(const torch::Tensor&)> label_embedding;
  bool background_to_minimum = false;
};
LoadedLDM load_ldm(const std::filesystem::path& checkpoint, const torch::Device& device = torch::kCPU);

}  // namespace meddiff
