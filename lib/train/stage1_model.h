#pragma once
// The autoencoder stage 1 trains, whichever kind the config names (autoencoder.kind): the trainer, the
// step and the memory probe see only this interface.
//   vqgan: meddiff's VQ-GAN (EMA codebook, commitment loss; checkpoint kind "vqgan", module "model");
//   kl:    the KL autoencoder with MAISI's blocks (models/autoencoder_kl.h). Training decodes a sample
//          z = mu + sigma * eps of the posterior (eps drawn from the step's generator, so a resumed run
//          repeats it), the regulariser is vqgan_train.kl_weight x KL(N(mu, sigma) || N(0, 1)) summed over
//          the latent and averaged over the batch (MONAI's tutorials' form); evaluation decodes mu. The
//          network sees images in [0, 1] as MONAI's and MAISI's do (checkpoint kind "kl-autoencoder",
//          module "autoencoder", MONAI AutoencoderKL's weight names; with autoencoder.kl.upsample = nearest
//          the network is exactly MONAI's AutoencoderKL).
#include "core/collectives.h"
#include "pipeline/latent_autoencoder.h"
#include "train/train_config.h"

#include <torch/torch.h>

#include <memory>
#include <string>

namespace meddiff {

struct Stage1Forward {
  torch::Tensor reconstruction;  // [B, C, D, H, W] in [-1, 1] (not clamped)
  torch::Tensor regulariser;     // scalar, weighted: the commitment loss or kl_weight x KL
  // VQ-GAN codebook statistics (zero for a KL autoencoder)
  torch::Tensor perplexity, usage, restarted;
};

class Stage1Model {
 public:
  virtual ~Stage1Model() = default;
  // Training forward of x [B, C, D, H, W] in [-1, 1]; `gen` (CPU) draws the step's random choices; `seg`
  // int [B, D, H, W]: the cases' label maps (or undefined), which a label-conditioned decoder sees.
  virtual Stage1Forward forward(const torch::Tensor& x, at::Generator gen, const torch::Tensor& seg = {}) = 0;
  // The deterministic reconstruction (validation, previews), in [-1, 1] up to the decoder's overshoot.
  virtual torch::Tensor reconstruct(const torch::Tensor& x, const torch::Tensor& seg = {}) = 0;
  // The label values a label-conditioned decoder takes (0: it does not see label maps).
  virtual int64_t decoder_labels() const { return 0; }
  virtual torch::nn::Module& module() = 0;
  virtual void set_collectives(Collectives*) {}
  virtual std::vector<torch::Tensor> codebook() const { return {}; }  // compared across ranks at checkpoints
  virtual std::string checkpoint_kind() const = 0;                  // "vqgan" or "kl-autoencoder"
  virtual std::string module_key() const = 0;                       // the module's name in the checkpoint
  virtual std::string regulariser_name() const = 0;                 // "commitment" or "kl" (metrics.jsonl)
  virtual bool has_codebook() const { return false; }
  // The same weights for inference (encoding latents, decoding samples).
  virtual std::shared_ptr<LatentAutoencoder> inference() = 0;
};

std::unique_ptr<Stage1Model> make_stage1_model(const RunConfig& cfg, int64_t image_channels);

}  // namespace meddiff
