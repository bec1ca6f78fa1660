#pragma once
// The autoencoder of a latent diffusion model, whichever family it is: meddiff's VQ-GAN (checkpoint kind
// "vqgan": nearest-code quantisation, exact split execution within a memory budget) or an imported KL
// autoencoder (kind "kl-autoencoder": MONAI's AutoencoderKL, MAISI's AutoencoderKlMaisi, imported, or one
// meddiff trained with autoencoder.kind = kl). Sampling,
// reconstruction and decoding go through this interface; each family keeps its own conventions inside:
// images cross it in meddiff's range [-1, 1] (MONAI's autoencoders were trained on [0, 1], mapped here),
// latents in the family's own units (the diffusion model's latent normalisation is the LDM's business).
#include "core/checkpoint.h"
#include "models/autoencoder_kl.h"
#include "pipeline/autoencoder.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <memory>

namespace meddiff {

class LatentAutoencoder {
 public:
  virtual ~LatentAutoencoder() = default;
  // x [B, C, D, H, W] in [-1, 1] -> latent [B, E, d, h, w] (a VQ-GAN's pre-quantisation latent, a KL
  // autoencoder's posterior mean).
  virtual torch::Tensor encode(const torch::Tensor& x, const AutoencoderRun& run) = 0;
  // latent -> image [B, C, D, H, W] in [-1, 1] up to the decoder's overshoot (not clamped). `labels` int
  // [B, D, H, W]: the pairs' label maps, for a label-conditioned decoder (decoder_labels() > 0); other
  // decoders, and every decoder when it is undefined, decode the latent alone.
  virtual torch::Tensor decode(const torch::Tensor& z, const AutoencoderRun& run, const torch::Tensor& labels = {}) = 0;
  // The number of label values a label-conditioned decoder sees (0: it sees the latent only).
  virtual int64_t decoder_labels() const { return 0; }
  virtual std::array<int64_t, 3> downsample() const = 0;  // per axis [D, H, W]
  virtual int64_t latent_channels() const = 0;
  virtual std::string family() const = 0;                  // "vqgan", "kl" (trained by meddiff), "monai", "maisi"
  virtual torch::Tensor codebook() const { return {}; }    // a VQ-GAN's code vectors [n_codes, E]; undefined otherwise
  virtual void to(const torch::Device& device) = 0;        // moves the weights
};

// meddiff's VQ-GAN (sharing the module's weights).
class VQGANAutoencoder : public LatentAutoencoder {
 public:
  explicit VQGANAutoencoder(VQGAN m) : model(std::move(m)) {}
  torch::Tensor encode(const torch::Tensor& x, const AutoencoderRun& run) override { return encode_volume(model, x, run); }
  torch::Tensor decode(const torch::Tensor& z, const AutoencoderRun& run, const torch::Tensor& labels = {}) override {
    return decode_latent(model, z, run, labels);
  }
  int64_t decoder_labels() const override { return model->params.decoder_labels; }
  std::array<int64_t, 3> downsample() const override { return model->params.downsample; }
  int64_t latent_channels() const override { return model->params.embedding_dim; }
  std::string family() const override { return "vqgan"; }
  torch::Tensor codebook() const override { return model->quantizer->embeddings; }
  void to(const torch::Device& device) override { model->to(device); }
  VQGAN model;
};

// A KL autoencoder (sharing the module's weights). MONAI's and MAISI's KL autoencoders take and give images in
// [0, 1] (and meddiff trains its own so): y = (x + 1) / 2 on the way in, x = 2y - 1 on the way out. A decode that
// would not fit the memory budget whole runs block by block (pipeline/kl_out_of_core.h); encoding runs whole, and a
// volume beyond the budget is refused with the figure.
class KLAutoencoder : public LatentAutoencoder {
 public:
  KLAutoencoder(AutoencoderKL m, std::string fam) : model(std::move(m)), fam(std::move(fam)) {}
  torch::Tensor encode(const torch::Tensor& x, const AutoencoderRun& run) override;
  torch::Tensor decode(const torch::Tensor& z, const AutoencoderRun& run, const torch::Tensor& labels = {}) override;
  std::array<int64_t, 3> downsample() const override;
  int64_t latent_channels() const override { return model->params.latent_channels; }
  std::string family() const override { return fam; }
  void to(const torch::Device& device) override { model->to(device); }
  AutoencoderKL model;

 private:
  std::string fam;
};

// The KL autoencoder of a checkpoint written by meddiff import (its config holds the MONAI network definition).
std::shared_ptr<KLAutoencoder> load_imported_kl(const Checkpoint& checkpoint, const std::string& where, const torch::Device& device);

// The autoencoder of a "vqgan" or "kl-autoencoder" checkpoint (imported or trained), in eval mode on `device`.
std::shared_ptr<LatentAutoencoder> load_latent_autoencoder(const std::filesystem::path& checkpoint, const torch::Device& device);

}  // namespace meddiff
