#pragma once
// `train-vqgan --init CKPT`: stage 1 starts from trained weights instead of random ones, then trains on
// the user's data with the run's own settings (fine-tuning). CKPT is
//   - a meddiff stage-1 checkpoint (a VQ-GAN or a KL autoencoder from train-vqgan), or
//   - an autoencoder brought in by `meddiff import` (MAISI-v2's AutoencoderKlMaisi, a MONAI bundle's
//     AutoencoderKL), which then trains as autoencoder.kind = kl.
// The run takes the checkpoint's architecture (autoencoder and vqgan sections, or the imported network's
// definition) over the config's, saying so; the discriminators and optimisers start fresh. The source's
// path and SHA-256 are recorded in every checkpoint of the run. A resumed run continues from its own
// last.pt and ignores --init.
#include "core/checkpoint.h"
#include "train/train_config.h"

#include <filesystem>

namespace meddiff {

struct Stage1Init {
  Checkpoint checkpoint;
  std::filesystem::path path;
  std::string sha256;
  bool imported = false;  // brought in by meddiff import (weights trained on MONAI's [0, 1] images of their own intensity mapping)
  nlohmann::json record() const;  // {"path", "sha256", "kind", "imported"}
};

// Reads `path` and sets cfg's autoencoder (and vqgan) sections to its architecture; `image_channels` is the
// data's. A checkpoint that is not an autoencoder, or takes another number of channels, is one error.
Stage1Init read_stage1_init(const std::filesystem::path& path, RunConfig& cfg, int64_t image_channels);

}  // namespace meddiff
