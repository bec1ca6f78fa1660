#pragma once
// Exact piecewise execution of the VQ-GAN's layers for volumes too large to run whole (the MAISI
// approach): every convolution's input is split along one spatial axis into slabs that carry the
// halo the kernel reaches, and GroupNorm statistics are computed over the whole tensor (in float64
// sums, slab by slab) before any slab is normalised. The result equals the unsplit layer's up to
// float rounding: no overlap blending, no seams.
//
// Memory: only the layers' full inputs/outputs are whole tensors; a residual block is computed in
// place (its inner activation is recomputed per slab instead of stored), so at most about two full
// activations of the largest resolution live at once, plus one slab's work space.
#include "models/blocks.h"
#include "models/vqgan_decoder.h"

#include <torch/torch.h>

#include <functional>

namespace meddiff::split {

// How layers are cut: along `axis` (2, 3 or 4 of [B, C, D, H, W]) into slabs whose work space (the
// slab's input, pre-processed copy, padded copy, output and the convolution's own buffers) stays under
// `slab_bytes`.
struct Plan {
  int64_t axis = 2;
  int64_t slab_bytes = int64_t{512} << 20;
};

// Integer division rounding towards minus / plus infinity (slab index arithmetic, b > 0).
int64_t floor_div(int64_t a, int64_t b);
int64_t ceil_div(int64_t a, int64_t b);

// Per (sample, group) mean and 1/std of x [B, C, ...] over all of its voxels, gathered slab by slab.
struct GroupStats {
  torch::Tensor mean, rstd;  // [B, G] float
};
GroupStats group_stats(const torch::Tensor& x, int64_t groups, double eps, const Plan& plan);
// Sums and sums of squares per (sample, group) of `slab` [B, C, ...] added to sum / sumsq [B, G] (float64), and
// the statistics they give over `count` values per (sample, group).
void accumulate(const torch::Tensor& slab, int64_t groups, torch::Tensor& sum, torch::Tensor& sumsq);
GroupStats finish(const torch::Tensor& sum, const torch::Tensor& sumsq, double count, double eps);
// GroupNorm of a slab with statistics of the whole tensor (affine when `weight` is defined), then SiLU if asked.
torch::Tensor group_norm(const torch::Tensor& slab, const GroupStats& stats, const torch::Tensor& weight, const torch::Tensor& bias,
                         bool silu);
// GroupNorm (affine) of a slab with statistics of the whole tensor, then SiLU.
torch::Tensor norm_silu(const torch::Tensor& slab, const GroupStats& stats, torch::nn::GroupNorm gn);

// A pointwise transform applied to each input slab before the convolution (e.g. GN + SiLU).
using Pre = std::function<torch::Tensor(const torch::Tensor&)>;

// conv(pad_replicate(pre(x))) of a SamePadConv3d, slab by slab.
torch::Tensor same_pad_conv(SamePadConv3d conv, const torch::Tensor& x, const Pre& pre, const Plan& plan);
// A 1x1x1 convolution, slab by slab.
torch::Tensor pointwise_conv(torch::nn::Conv3d conv, const torch::Tensor& x, const Pre& pre, const Plan& plan);
// ConvTranspose3d (any stride, kernel and zero padding), slab by slab of its output.
torch::Tensor conv_transpose(torch::nn::ConvTranspose3d conv, const torch::Tensor& x, const Plan& plan);
// x + conv2(silu(gn2(conv1(silu(gn1(x)))))) computed into x's own storage (x must not be needed
// afterwards); the inner activation is never stored whole.
void residual_block_inplace(ResBlock3dImpl& block, torch::Tensor& x, const Plan& plan);

// h += the label term of a label-conditioned decoder's up-stage k (VQDecoderImpl::label_term) for the
// full-resolution label maps `labels` [B, D, H, W], a run of planes along plan.axis at a time: the one-hot
// fractions (N float channels at full resolution per stage voxel) stay within the slab budget.
void add_label_term(const VQDecoderImpl& dec, size_t k, torch::Tensor& h, const torch::Tensor& labels, const Plan& plan);
// out += the label heads' term of a label-conditioned decoder (VQDecoderImpl::head_term) for its last features h
// (pre-processed by `pre`: the final GroupNorm + SiLU), slab by slab: the N x C heads exist for one slab at a time.
void add_label_heads(const VQDecoderImpl& dec, const torch::Tensor& h, const Pre& pre, torch::Tensor& out, const torch::Tensor& labels,
                     const Plan& plan);

}  // namespace meddiff::split
