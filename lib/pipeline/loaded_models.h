#pragma once
// Trained models loaded for inference (sampling, reconstruction, evaluation): the network in eval
// mode on a device, and the parts of the run's config that inference needs. Trainers write the
// checkpoints (lib/train); everything that only uses them goes through here.
#include "data/geometry_json.h"
#include "data/label_check.h"
#include "data/preprocess.h"
#include "data/volume.h"
#include "diffusion/objective.h"
#include "diffusion/schedule.h"
#include "models/unet3d.h"
#include "models/vqgan.h"
#include "pipeline/latents.h"
#include "pipeline/model_config.h"

#include <nlohmann/json.hpp>

#include <filesystem>

namespace meddiff {

struct LoadedVQGAN {
  nlohmann::json config;   // the run's resolved config, as stored in the checkpoint
  DataParams data;         // how volumes were prepared for it
  VQGANParams vqgan;
  SampleDefaults sample;   // sample.max_memory_gib: the autoencoder's memory budget
  VQGAN model{nullptr};    // eval mode
  int64_t step = 0;
};
// A checkpoint of kind "vqgan" (stage 1's last.pt or step-NNNNNNN.pt).
LoadedVQGAN load_vqgan(const std::filesystem::path& checkpoint, const torch::Device& device = torch::kCPU);

// What a sampler needs to turn noise into volumes, rebuilt from an LDM checkpoint.
struct LoadedLDM {
  nlohmann::json config;
  DataParams data;
  LDMParams ldm;
  SampleDefaults sample;
  UNet3d model{nullptr};     // EMA weights, eval mode
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
  LabelIntensityRanges label_ranges;  // the per-pair check's default: the training images' own ranges
  LabelIntensityRanges union_ranges;  // the union with what the VQ-GAN reproduces of them (sample --qc-ranges union)
  std::filesystem::path mask_bank;    // the training label maps (next to the checkpoint)
};
LoadedLDM load_ldm(const std::filesystem::path& checkpoint, const torch::Device& device = torch::kCPU);

}  // namespace meddiff
