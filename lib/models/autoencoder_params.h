#pragma once
// Which autoencoder stage 1 trains (config section "autoencoder"):
//   kind "vqgan": meddiff's VQ-GAN (section "vqgan"), the reference's;
//   kind "kl":    a KL-regularised autoencoder with the blocks of MAISI's AutoencoderKlMaisi ("autoencoder.kl";
//                 the defaults are MAISI-v2's released architecture, without attention), trained by the same
//                 trainer with the same L1, perceptual and adversarial terms plus vqgan_train.kl_weight times
//                 the KL divergence of its Gaussian posterior. Its checkpoints are kind "kl-autoencoder", in
//                 MONAI's weight names and [0, 1] image convention.
#include "models/kl_params.h"
#include "models/vqgan_params.h"

#include <array>

namespace meddiff {

// MAISI-v2's autoencoder (NV-Generate-CTMR config_network_rflow.json) without attention.
KLParams trained_kl_defaults();

struct AutoencoderParams {
  std::string kind = "vqgan";  // vqgan or kl
  KLParams kl = trained_kl_defaults();

  template <typename V>
  void visit(V& v) {
    v("kind", kind, "stage 1's autoencoder: vqgan (section vqgan) or kl (a KL autoencoder with MAISI's blocks, section autoencoder.kl)");
    v("kl", kl);
  }
  void validate(const std::string& where = "autoencoder") const;
  bool is_kl() const { return kind == "kl"; }
};

// Stage 1's downsampling per axis [D, H, W].
std::array<int64_t, 3> stage1_downsample(const AutoencoderParams& a, const VQGANParams& vq);
// Latent shape [E, d, h, w] of stage 1 for an input [D, H, W]; throws naming `where` when a factor does not divide.
std::array<int64_t, 4> stage1_latent_shape(const AutoencoderParams& a, const VQGANParams& vq, const std::array<int64_t, 3>& shape,
                                           const std::string& where);

}  // namespace meddiff
