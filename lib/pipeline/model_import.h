#pragma once
// Importing models trained elsewhere into meddiff checkpoints, from the files users download (no Python):
//  - MAISI-v2 (NV-Generate-CT / -MR): NV-Generate-CTMR's network config (config_network_rflow.json: autoencoder_def,
//    diffusion_unet_def, noise_scheduler), the autoencoder's raw state dict (autoencoder_v1.pt) and the U-Net file
//    ({"unet_state_dict", "scale_factor", "num_train_timesteps", ...}, diff_unet_3d_rflow-ct.pt);
//  - a MONAI bundle such as the model zoo's brats_mri_generative_diffusion: configs/inference.json (autoencoder_def,
//    network_def, noise_scheduler, set_timesteps) with models/model_autoencoder.pt and models/model.pt, whose keys
//    may carry MONAI Generative's older names.
// Each network is built from its definition and loaded by name: unknown, missing or mis-shaped keys are one error
// listing them; weights the network never uses (an attention output projection where include_fc is false) are
// named in a warning. The result is two checkpoints: "kl-autoencoder" (the autoencoder) and "monai-unet" (the
// U-Net with its sampling recipe: scheduler, steps, guidance, latent scale factor, output intensity mapping,
// modality codes), each recording the network definition and the source files' SHA-256.
#include "core/checkpoint.h"

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace meddiff {

struct ImportedModel {
  Checkpoint autoencoder;        // kind "kl-autoencoder"
  Checkpoint unet;               // kind "monai-unet"
  std::optional<Checkpoint> controlnet;  // kind "monai-controlnet" (MAISI's ControlNet, when given)
  std::vector<std::string> warnings;
};

struct MaisiFiles {
  std::filesystem::path network_config, autoencoder, unet;
  double guidance = 0;           // NV-Generate-CTMR: rflow-ct 0, rflow-mr 15, rflow-mr-brain 2
  int64_t steps = 30;
  // MAISI's ControlNet (controlnet_3d_rflow-ct.pt: {"controlnet_state_dict", ...}; empty: none), built from the
  // config's controlnet_def. As NV-Generate-CTMR loads it, weights its file lacks are the U-Net's of the same name
  // and shape (monai.networks.utils.copy_model_state); the rest is checked as for the other networks.
  std::filesystem::path controlnet;
};
ImportedModel import_maisi(const MaisiFiles& f);

ImportedModel import_monai_bundle(const std::filesystem::path& bundle_dir);

}  // namespace meddiff
