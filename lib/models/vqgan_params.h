#pragma once
// VQ-GAN architecture settings (after FirasGit/medicaldiffusion vq_gan_3d).
#include "core/config.h"

#include <array>

namespace meddiff {

struct VQGANParams {
  int64_t n_hiddens = 16;                   // channels after the stem; stage i has n_hiddens * 2^(i+1)
  std::array<int64_t, 3> downsample{4, 4, 4};  // total factor per axis [D, H, W] (typed x, y, z), each a power of two
  int64_t embedding_dim = 8;                // latent channels
  int64_t n_codes = 2048;                   // codebook size
  int64_t n_res_blocks = 1;                 // residual blocks per encoder stage (decoder: one more)
  double commitment_weight = 0.25;          // beta of the commitment loss
  double ema_decay = 0.99;                  // codebook EMA decay
  double ema_eps = 1e-7;                    // Laplace smoothing of the EMA cluster sizes
  double restart_threshold = 1.0;           // codes whose EMA count falls below this are restarted
  int64_t disc_channels = 64;               // PatchGAN width (ndf)
  int64_t disc_layers = 3;                  // PatchGAN strided layers
  std::string disc_norm = "batch";          // "batch" (reference) or "group"
  int64_t decoder_labels = 0;               // > 0: the decoder also sees the label map (this many label values)
  double decoder_label_dropout = 0.1;       // share of training samples decoded without it
  bool decoder_label_heads = false;         // the output from one head per label, chosen voxel by voxel by the map

  template <typename V>
  void visit(V& v) {
    v("n_hiddens", n_hiddens, "encoder width after the stem; stage i has n_hiddens*2^(i+1) channels");
    v("downsample", xyz(downsample), "total downsampling per axis [x,y,z], powers of two (e.g. [4,4,1])");
    v("embedding_dim", embedding_dim, "latent channels (the diffusion model works on these)");
    v("n_codes", n_codes, "codebook size");
    v("n_res_blocks", n_res_blocks, "residual blocks per encoder stage (decoder uses one more)");
    v("commitment_weight", commitment_weight, "weight of the commitment loss (beta)");
    v("ema_decay", ema_decay, "EMA decay of the codebook");
    v("ema_eps", ema_eps, "epsilon of the EMA cluster-size smoothing");
    v("restart_threshold", restart_threshold, "codes with an EMA count below this are restarted from encoder outputs");
    v("disc_channels", disc_channels, "PatchGAN discriminator width");
    v("disc_layers", disc_layers, "PatchGAN strided layers");
    v("disc_norm", disc_norm, "discriminator normalisation: batch or group");
    v("decoder_labels", decoder_labels,
      "0: the decoder sees the latent only; N > 0: it also sees the pair's label map (values 0..N-1) at every resolution, "
      "so synthetic images follow their label maps' edges (needs label maps in training; N = 1 + the largest label)");
    v("decoder_label_dropout", decoder_label_dropout,
      "with decoder_labels: the share of training samples decoded without their label map, so volumes without one "
      "(reconstruct without --label, unpaired sampling) still decode");
    v("decoder_label_heads", decoder_label_heads,
      "with decoder_labels: one output head per label (a 3x3x3 convolution of the last features), each voxel taking its "
      "label's head: the latent sets each label's level and texture, the map where it applies, so a structure's edge is the "
      "map's even where a sampled latent is a voxel off (false: one fixed intensity offset per label)");
  }
  void validate(const std::string& where = "vqgan") const;
  int64_t stages() const;  // log2 of the largest factor
};

}  // namespace meddiff

namespace meddiff {
// Per encoder stage, the stride along [D, H, W] (2 while that axis still has factor left, else 1).
std::vector<std::array<int64_t, 3>> stage_strides(const VQGANParams& p);
}  // namespace meddiff
