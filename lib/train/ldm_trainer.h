#pragma once
// Stage 2 training: the class-conditional latent 3-D U-Net on cached, normalised VQ-GAN latents.
// Folder layout and checkpoint rules as stage 1 (last.pt, step-NNNNNNN.pt, config.json, metrics.jsonl,
// previews/, plus latents.pt: the encoded training set). Every random choice of step s derives from
// (seed, s): a resumed run equals an uninterrupted one.
#include "diffusion/samplers.h"
#include "models/unet3d.h"
#include "train/latents.h"
#include "train/vqgan_trainer.h"

namespace meddiff {

// What a sampler needs to turn noise into volumes, rebuilt from an LDM checkpoint.
struct LoadedLDM {
  RunConfig config;
  UNet3d model{nullptr};     // EMA weights, eval mode
  NoiseSchedule schedule;
  Prediction prediction = Prediction::Eps;
  LatentNorm norm;
  int64_t num_classes = 0;   // 0: unconditional
  std::array<int64_t, 4> latent_shape{};
  Geometry geometry;         // of the training volumes (spacing, direction; origin centred)
  Modality modality = Modality::MR;
  std::string vqgan_sha256;
  std::string vqgan_path;    // where the VQ-GAN was when the LDM was trained
  int64_t step = 0;
};
LoadedLDM load_ldm(const std::filesystem::path& checkpoint, const torch::Device& device = torch::kCPU);

struct LDMTrainResult {
  int64_t final_step = 0;
  double seconds_per_step = 0;
  double peak_rss_mib = 0;
  double final_loss = 0;
};

LDMTrainResult train_ldm(const RunConfig& cfg, LoadedVQGAN& vqgan, const std::string& vqgan_path, const std::string& vqgan_sha256,
                         const std::vector<TrainingVolume>& train, int64_t num_classes,
                         const std::filesystem::path& out_dir, bool resume, const TrainHooks& hooks);

// Samples latents from noise x_T [B, E, d, h, w] and decodes them: [B, 1, D, H, W] in [-1, 1].
torch::Tensor generate_volumes(LoadedLDM& ldm, VQGAN& vqgan, const torch::Tensor& x_T, const torch::Tensor& classes,
                               const SamplerParams& sp, const std::function<torch::Tensor(int64_t)>& noise,
                               const std::function<void(int64_t, int64_t)>& on_step = nullptr);

}  // namespace meddiff
