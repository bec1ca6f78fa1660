#pragma once
// 3-D VQ-GAN decoder, mirroring the encoder: 1x1x1 projection from embedding_dim, one transposed-conv
// stage per encoder stage (stride 2 on the axes that stage halved), residual blocks, GN + SiLU, conv to
// one channel. No output activation (as the reference).
//
// Label-conditioned (vqgan.decoder_labels = N > 0): the decoder also sees the pair's label map. After each
// stage's transposed convolution, a bias-free 1x1x1 convolution of the label map's class fractions at that
// stage's resolution (one-hot at full resolution, averaged over the voxels a coarser voxel covers) is added
// to the features; the stage's residual blocks then shape the edges. One more such term, of the one-hot map,
// is added to the output: an intensity offset per label, which steps exactly at the map's edges (the 3x3x3
// layers before it alone left the MR demo's lesions a voxel wider than their labels). The convolutions start at zero, so a
// label-conditioned decoder starts as the plain one (and can be initialised from a plain checkpoint). A
// missing label map adds nothing (the same as all-zero fractions, which training shows the decoder for
// vqgan.decoder_label_dropout of its samples).
//
// With vqgan.decoder_label_heads the output also has one head per label: a 3x3x3 convolution of the last
// normalised features with N x C outputs, of which each voxel adds the C of its own label. A fixed offset per
// label steps at the map's edge but cannot follow a case's own level, so the layers before it carried part of
// a small structure's contrast, a voxel blurred (the MR demo's pairs: 9 % of the brain voxels around a lesion
// as bright as it); a head per label lets the latent set each label's level and texture and the map where it
// applies. Zero-initialised like the other terms.
#include "models/blocks.h"
#include "models/vqgan_params.h"

namespace meddiff {

struct VQDecoderImpl : torch::nn::Module {
  VQDecoderImpl(const VQGANParams& p, int64_t image_channels);
  // z [B, E, d, h, w]; labels int [B, D, H, W] at full resolution or undefined; keep [B] float (1 = use the
  // sample's labels, 0 = decode it without) or undefined (all kept).
  torch::Tensor forward(const torch::Tensor& z, const torch::Tensor& labels = {}, const torch::Tensor& keep = {});
  // The label term of up-stage k (k = the number of stages: the output's) for a run of full-resolution label planes `labels` [B, D', H', W'] (whole
  // stage voxels along every axis): [B, C_k, D'/f, H'/f, W'/f].
  torch::Tensor label_term(size_t k, const torch::Tensor& labels, const torch::Tensor& keep = {}) const;
  // The heads' term for the last features `features` (already normalised and activated) whose head outputs
  // heads [B, N*C, D', H', W'] are given: each voxel's own label's C channels (zero where `keep` is 0).
  torch::Tensor head_term(const torch::Tensor& heads, const torch::Tensor& labels, const torch::Tensor& keep = {}) const;
  int64_t label_classes = 0;   // N (0: not label-conditioned)
  std::vector<Int3> label_pool;  // per up-stage, then the output: full-resolution voxels per stage voxel along [D, H, W]
  torch::nn::Conv3d post_vq_conv{nullptr};
  torch::nn::ModuleList up{nullptr};        // per stage: Sequential(ConvTranspose3d, ResBlock3d...)
  torch::nn::ModuleList label_in{nullptr};  // per stage: Conv3d(N, C_k, 1, bias = false), then Conv3d(N, C, 1) of the output
                                            // (label-conditioned only)
  torch::nn::GroupNorm final_norm{nullptr};
  SamePadConv3d conv_last{nullptr};
  SamePadConv3d label_heads{nullptr};  // N * C outputs (vqgan.decoder_label_heads only)
};
TORCH_MODULE(VQDecoder);

// Fails naming `where` unless `labels` holds only values 0..classes-1.
void check_decoder_labels(const torch::Tensor& labels, int64_t classes, const std::string& where);

}  // namespace meddiff
