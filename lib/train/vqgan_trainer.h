#pragma once
// Stage 1 training: the autoencoder of autoencoder.kind (the 3-D VQ-GAN with its EMA codebook, or the
// KL autoencoder; train/stage1_model.h) with L1 reconstruction, 2-D slice and 3-D volume PatchGANs
// (hinge loss) and feature matching, switched on at vqgan_train.gan_start.
//
// The training folder holds last.pt and step-NNNNNNN.pt (atomic), config.json (resolved config),
// metrics.jsonl (one JSON object per logged step and per validation) and previews/*.png. Every random
// choice of step s derives from (seed, s), so a resumed run continues exactly as an uninterrupted one.
//
// Data-parallel (`comm` with several ranks): each rank trains on its slice of every global batch
// (batch_size x world size), on `device`; only rank 0 writes anything (folder, checkpoints, metrics,
// previews, validation); every rank resumes from the same last.pt. At every checkpoint the ranks
// compare their state; metrics.jsonl records the spread (0: identical replicas).
#include "core/collectives.h"
#include "data/preprocess.h"
#include "models/patch_discriminator.h"
#include "train/stage1_init.h"
#include "train/stage1_model.h"
#include "pipeline/loaded_models.h"
#include "train/run_folder.h"
#include "train/train_config.h"

#include <filesystem>
#include <functional>
#include <optional>

namespace meddiff {

struct TrainHooks {
  // Writes an 8-bit preview image (the CLI passes the PNG writer of lib/io).
  std::function<void(const std::filesystem::path&, const torch::Tensor&)> write_png;
};

struct ValidationResult {
  int64_t step = 0;
  double psnr = 0, ssim = 0, psnr_mean_baseline = 0;
};

struct VQGANTrainResult {
  int64_t final_step = 0;
  double seconds_per_step = 0;
  double peak_rss_mib = 0;
  std::vector<ValidationResult> validations;
};

VQGANTrainResult train_vqgan(const RunConfig& cfg, const std::vector<TrainingVolume>& train,
                             const std::vector<TrainingVolume>& val, const std::filesystem::path& out_dir,
                             RunStart start, const TrainHooks& hooks, Collectives* comm = nullptr,
                             std::optional<torch::Device> device = std::nullopt, const Stage1Init* init = nullptr);

// Reconstruction quality of `model` on volumes: mean PSNR and SSIM, plus the PSNR of predicting `mean_volume`.
ValidationResult evaluate_reconstruction(Stage1Model& model, const std::vector<TrainingVolume>& val,
                                         const torch::Tensor& mean_volume, const torch::Device& device);

}  // namespace meddiff
