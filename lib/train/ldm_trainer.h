#pragma once
// Stage 2 training: the class-conditional latent 3-D U-Net on cached, normalised latents of the
// stage-1 autoencoder (a VQ-GAN or a KL autoencoder).
// Folder layout and checkpoint rules as stage 1 (last.pt, step-NNNNNNN.pt, config.json, metrics.jsonl,
// previews/, plus latents.pt: the encoded training set). Every random choice of step s derives from
// (seed, s): a resumed run equals an uninterrupted one. Data-parallel as stage 1; rank 0 also writes
// latents.pt and mask_bank.pt, which the other ranks wait for and read.
#include "pipeline/loaded_models.h"
#include "train/vqgan_trainer.h"

namespace meddiff {

struct LDMTrainResult {
  int64_t final_step = 0;
  double seconds_per_step = 0;
  double peak_rss_mib = 0;
  double final_loss = 0;
};

LDMTrainResult train_ldm(const RunConfig& cfg, LoadedAutoencoder& vqgan, const std::string& vqgan_path, const std::string& vqgan_sha256,
                         const std::vector<TrainingVolume>& train, int64_t num_classes,
                         const std::filesystem::path& out_dir, RunStart start, const TrainHooks& hooks,
                         Collectives* comm = nullptr, std::optional<torch::Device> device = std::nullopt);

}  // namespace meddiff
