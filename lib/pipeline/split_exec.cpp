#include "pipeline/split_exec.h"

#include "core/error.h"

namespace meddiff::split {
namespace F = torch::nn::functional;

int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
int64_t ceil_div(int64_t a, int64_t b) { return -floor_div(-a, b); }

namespace {

// Voxels of one slice across the split axis: the product of the other two spatial sizes.
int64_t slice_voxels(const torch::Tensor& x, int64_t axis) {
  int64_t v = 1;
  for (int64_t d = 2; d < 5; ++d)
    if (d != axis) v *= x.size(d);
  return v;
}

// Output slices per slab so that the slab's work space stays under the plan's budget: the input slab
// and its processed copies, the output, and the convolution's buffers (up to C_in x kernel per output
// voxel when the library unfolds the input).
int64_t slab_length(const Plan& plan, int64_t in_slice_voxels, int64_t out_slice_voxels, int64_t c_in, int64_t c_out,
                    int64_t kernel_volume, int64_t stride, int64_t minimum = 1) {
  double per_slice = 4.0 * (static_cast<double>(out_slice_voxels) * static_cast<double>(c_out + c_in * kernel_volume) +
                            3.0 * static_cast<double>(in_slice_voxels * c_in * stride));
  return std::max<int64_t>(minimum, static_cast<int64_t>(static_cast<double>(plan.slab_bytes) / std::max(1.0, per_slice)));
}

int64_t spatial(int64_t axis) { return axis - 2; }  // 0 D, 1 H, 2 W

// Copies a slab's output to position o0 along `axis` of `out`, allocating `out` (length `total`
// along the axis) from the first slab.
void place(torch::Tensor& out, const torch::Tensor& y, int64_t axis, int64_t o0, int64_t total) {
  if (!out.defined()) {
    auto shape = y.sizes().vec();
    shape[static_cast<size_t>(axis)] = total;
    out = torch::empty(shape, y.options());
  }
  out.narrow(axis, o0, y.size(axis)).copy_(y);
}

// Input range [a0, a1) a SamePadConv3d's outputs [o0, o1) along `axis` read (before clipping to the tensor).
struct Range {
  int64_t a0, a1, c0, c1;  // wanted, and clipped to [0, L)
};
Range same_pad_range(SamePadConv3dImpl& conv, int64_t axis, int64_t L, int64_t o0, int64_t o1) {
  const int64_t sa = spatial(axis);
  const int64_t k = conv.conv->options.kernel_size()->at(static_cast<size_t>(sa));
  const int64_t s = conv.conv->options.stride()->at(static_cast<size_t>(sa));
  const int64_t lo = conv.pad[static_cast<size_t>(2 * (2 - sa))];
  Range r{o0 * s - lo, (o1 - 1) * s - lo + k, 0, 0};
  r.c0 = std::max<int64_t>(0, r.a0);
  r.c1 = std::min<int64_t>(L, r.a1);
  return r;
}

// Outputs [o0, o1) of a SamePadConv3d from its pre-processed input slab covering r.c0..r.c1: the
// slab is padded (replicate) where it meets the volume's edge, exactly as the whole tensor would be.
torch::Tensor same_pad_from_slab(SamePadConv3dImpl& conv, int64_t axis, const torch::Tensor& slab, const Range& r) {
  std::vector<int64_t> pad = conv.pad;
  const int64_t sa = spatial(axis);
  pad[static_cast<size_t>(2 * (2 - sa))] = r.c0 - r.a0;
  pad[static_cast<size_t>(2 * (2 - sa) + 1)] = r.a1 - r.c1;
  return conv.conv->forward(F::pad(slab, F::PadFuncOptions(pad).mode(torch::kReplicate)));
}

int64_t out_length(SamePadConv3dImpl& conv, int64_t axis, int64_t L) {
  const int64_t sa = spatial(axis);
  const int64_t k = conv.conv->options.kernel_size()->at(static_cast<size_t>(sa));
  const int64_t s = conv.conv->options.stride()->at(static_cast<size_t>(sa));
  const int64_t total = conv.pad[static_cast<size_t>(2 * (2 - sa))] + conv.pad[static_cast<size_t>(2 * (2 - sa) + 1)];
  return (L + total - k) / s + 1;
}

int64_t kernel_volume(SamePadConv3dImpl& conv) {
  const auto& k = *conv.conv->options.kernel_size();
  return k[0] * k[1] * k[2];
}

}  // namespace

// Sums and sums of squares per (sample, group) of `slab` [B, C, ...], in float64. A slab keeps every
// channel, and [B, C, ...] -> [B, G, C/G * voxels] groups channels as GroupNorm does.
void accumulate(const torch::Tensor& slab, int64_t groups, torch::Tensor& sum, torch::Tensor& sumsq) {
  auto v = slab.reshape({slab.size(0), groups, -1}).to(torch::kDouble);  // [B, G, n]
  sum += v.sum(-1);
  sumsq += v.pow(2).sum(-1);
}

GroupStats finish(const torch::Tensor& sum, const torch::Tensor& sumsq, double count, double eps) {
  auto mean = sum / count;
  auto var = (sumsq / count - mean.pow(2)).clamp_min(0);
  return {mean.to(torch::kFloat), (var + eps).rsqrt().to(torch::kFloat)};
}

GroupStats group_stats(const torch::Tensor& x, int64_t groups, double eps, const Plan& plan) {
  torch::NoGradGuard ng;
  const int64_t L = x.size(plan.axis), per = x.size(1) * slice_voxels(x, plan.axis);
  const int64_t n = std::max<int64_t>(1, plan.slab_bytes / std::max<int64_t>(1, per * 16));  // float64 copy and square
  auto opts = x.options().dtype(torch::kDouble);
  auto sum = torch::zeros({x.size(0), groups}, opts), sumsq = torch::zeros({x.size(0), groups}, opts);
  for (int64_t o0 = 0; o0 < L; o0 += n) {
    accumulate(x.narrow(plan.axis, o0, std::min(n, L - o0)), groups, sum, sumsq);
  }
  double count = static_cast<double>(x.numel() / x.size(0) / groups);
  return finish(sum, sumsq, count, eps);
}

torch::Tensor group_norm(const torch::Tensor& slab, const GroupStats& stats, const torch::Tensor& weight, const torch::Tensor& bias,
                         bool silu) {
  const int64_t B = slab.size(0), C = slab.size(1), G = stats.mean.size(1);
  auto shape = slab.sizes().vec();
  auto v = slab.reshape({B, G, C / G, -1});
  v = (v - stats.mean.view({B, G, 1, 1})) * stats.rstd.view({B, G, 1, 1});
  auto y = v.reshape(shape);
  std::vector<int64_t> cshape(static_cast<size_t>(slab.dim()), 1);
  cshape[1] = C;
  if (weight.defined()) y = y * weight.view(cshape) + bias.view(cshape);
  return silu ? torch::silu(y) : y;
}

torch::Tensor norm_silu(const torch::Tensor& slab, const GroupStats& stats, torch::nn::GroupNorm gn) {
  return gn->options.affine() ? group_norm(slab, stats, gn->weight, gn->bias, true) : group_norm(slab, stats, {}, {}, true);
}

namespace {
// The slabs of a SamePadConv3d's output along the plan's axis, each passed to `sink(o0, y)` (y: outputs
// o0.. of the slab), with `extra_out` more float channels per output voxel counted in the slab's work space.
void same_pad_slabs(SamePadConv3d conv, const torch::Tensor& x, const Pre& pre, const Plan& plan, int64_t extra_out,
                    const std::function<void(int64_t, const torch::Tensor&)>& sink) {
  torch::NoGradGuard ng;
  const int64_t a = plan.axis, L = x.size(a), Lout = out_length(*conv, a, L);
  const int64_t s = conv->conv->options.stride()->at(static_cast<size_t>(spatial(a)));
  int64_t out_slice = 1;
  for (int64_t d = 2; d < 5; ++d)
    if (d != a) out_slice *= (x.size(d) + conv->pad[static_cast<size_t>(2 * (4 - d))] + conv->pad[static_cast<size_t>(2 * (4 - d) + 1)] -
                              conv->conv->options.kernel_size()->at(static_cast<size_t>(d - 2))) /
                                 conv->conv->options.stride()->at(static_cast<size_t>(d - 2)) +
                             1;
  const int64_t n = slab_length(plan, slice_voxels(x, a), out_slice, x.size(1), conv->conv->options.out_channels() + extra_out,
                                kernel_volume(*conv), s);
  for (int64_t o0 = 0; o0 < Lout; o0 += n) {
    int64_t o1 = std::min(Lout, o0 + n);
    Range r = same_pad_range(*conv, a, L, o0, o1);
    auto slab = x.narrow(a, r.c0, r.c1 - r.c0);
    sink(o0, same_pad_from_slab(*conv, a, pre ? pre(slab) : slab, r));
  }
}
}  // namespace

torch::Tensor same_pad_conv(SamePadConv3d conv, const torch::Tensor& x, const Pre& pre, const Plan& plan) {
  const int64_t a = plan.axis, Lout = out_length(*conv, a, x.size(a));
  torch::Tensor out;
  same_pad_slabs(conv, x, pre, plan, 0, [&](int64_t o0, const torch::Tensor& y) { place(out, y, a, o0, Lout); });
  return out;
}

torch::Tensor pointwise_conv(torch::nn::Conv3d conv, const torch::Tensor& x, const Pre& pre, const Plan& plan) {
  torch::NoGradGuard ng;
  const int64_t a = plan.axis, L = x.size(a), cout = conv->options.out_channels();
  const int64_t n = slab_length(plan, slice_voxels(x, a), slice_voxels(x, a), x.size(1), cout, 1, 1);
  auto shape = x.sizes().vec();
  shape[1] = cout;
  auto out = torch::empty(shape, x.options());
  for (int64_t o0 = 0; o0 < L; o0 += n) {
    auto slab = x.narrow(a, o0, std::min(n, L - o0));
    out.narrow(a, o0, slab.size(a)).copy_(conv->forward(pre ? pre(slab) : slab));
  }
  return out;
}

torch::Tensor conv_transpose(torch::nn::ConvTranspose3d conv, const torch::Tensor& x, const Plan& plan) {
  torch::NoGradGuard ng;
  const int64_t a = plan.axis, sa = spatial(a), L = x.size(a);
  const auto& o = conv->options;
  const int64_t k = o.kernel_size()->at(static_cast<size_t>(sa)), s = o.stride()->at(static_cast<size_t>(sa));
  const auto& pad3 = std::get<torch::ExpandingArray<3>>(o.padding());
  std::vector<int64_t> padding(pad3->begin(), pad3->end());
  const int64_t p = padding[static_cast<size_t>(sa)];
  if (o.output_padding()->at(static_cast<size_t>(sa)) != 0 || o.dilation()->at(static_cast<size_t>(sa)) != 1 || o.groups() != 1)
    fail("split decoding: transposed convolutions with output padding, dilation or groups are not supported");
  const int64_t Lout = (L - 1) * s - 2 * p + k;
  padding[static_cast<size_t>(sa)] = 0;  // this axis is cut and cropped here
  int64_t out_slice = 1;
  for (int64_t d = 2; d < 5; ++d)
    if (d != a) {
      size_t i = static_cast<size_t>(d - 2);
      out_slice *= (x.size(d) - 1) * o.stride()->at(i) - 2 * pad3->at(i) + o.kernel_size()->at(i);
    }
  const auto& kk = *o.kernel_size();
  const int64_t n = slab_length(plan, slice_voxels(x, a), out_slice, x.size(1), o.out_channels(), kk[0] * kk[1] * kk[2], 1);
  torch::Tensor out;
  for (int64_t o0 = 0; o0 < Lout; o0 += n) {
    int64_t o1 = std::min(Lout, o0 + n);
    // Raw (uncropped) output r = o + p receives input i where 0 <= r - i*s < k.
    int64_t i_lo = std::max<int64_t>(0, ceil_div(o0 + p - k + 1, s));
    int64_t i_hi = std::min<int64_t>(L - 1, floor_div(o1 - 1 + p, s));
    auto slab = x.narrow(a, i_lo, i_hi - i_lo + 1);
    auto y = F::conv_transpose3d(slab, conv->weight, F::ConvTranspose3dFuncOptions().bias(conv->bias).stride(*o.stride()).padding(padding));
    place(out, y.narrow(a, o0 + p - i_lo * s, o1 - o0), a, o0, Lout);
  }
  return out;
}

void residual_block_inplace(ResBlock3dImpl& block, torch::Tensor& x, const Plan& plan) {
  torch::NoGradGuard ng;
  if (block.skip) fail("split decoding: residual blocks that change the channel count are not supported");
  const int64_t a = plan.axis, L = x.size(a), C = x.size(1);
  const int64_t g1 = block.norm1->options.num_groups(), g2 = block.norm2->options.num_groups();
  GroupStats s1 = group_stats(x, g1, block.norm1->options.eps(), plan);
  Pre pre1 = [&](const torch::Tensor& t) { return norm_silu(t, s1, block.norm1); };
  // Pass 1: the statistics of h = conv1(silu(gn1(x))), slab by slab; h is not kept.
  const int64_t kv = kernel_volume(*block.conv1);
  const int64_t n = slab_length(plan, slice_voxels(x, a), slice_voxels(x, a), C, 3 * C, 2 * kv, 1, /*minimum=*/2);
  auto opts = x.options().dtype(torch::kDouble);
  auto sum = torch::zeros({x.size(0), g2}, opts), sumsq = torch::zeros({x.size(0), g2}, opts);
  for (int64_t o0 = 0; o0 < L; o0 += n) {
    int64_t o1 = std::min(L, o0 + n);
    Range r = same_pad_range(*block.conv1, a, L, o0, o1);
    auto h = same_pad_from_slab(*block.conv1, a, pre1(x.narrow(a, r.c0, r.c1 - r.c0)), r);
    accumulate(h, g2, sum, sumsq);
  }
  GroupStats s2 = finish(sum, sumsq, static_cast<double>(x.numel() / x.size(0) / g2), block.norm2->options.eps());
  // Pass 2: per slab, h over the slab plus conv2's halo, then x + conv2(silu(gn2(h))). A slab's result
  // is written into x only after the next slab has read x around their border.
  torch::Tensor pending;
  int64_t pending_at = 0;
  for (int64_t o0 = 0; o0 < L; o0 += n) {
    int64_t o1 = std::min(L, o0 + n);
    Range r2 = same_pad_range(*block.conv2, a, L, o0, o1);  // h needed over r2.c0..r2.c1
    Range r1 = same_pad_range(*block.conv1, a, L, r2.c0, r2.c1);
    auto h = same_pad_from_slab(*block.conv1, a, pre1(x.narrow(a, r1.c0, r1.c1 - r1.c0)), r1);
    auto y = same_pad_from_slab(*block.conv2, a, norm_silu(h, s2, block.norm2), r2);
    auto result = x.narrow(a, o0, o1 - o0) + y;
    if (pending.defined()) x.narrow(a, pending_at, pending.size(a)).copy_(pending);
    pending = result;
    pending_at = o0;
  }
  if (pending.defined()) x.narrow(a, pending_at, pending.size(a)).copy_(pending);
}

void add_label_term(const VQDecoderImpl& dec, size_t k, torch::Tensor& h, const torch::Tensor& labels, const Plan& plan) {
  const int64_t axis = plan.axis, f = dec.label_pool[k][static_cast<size_t>(axis - 2)];
  const int64_t n = h.size(axis), C = h.size(1);
  const auto& pool = dec.label_pool[k];
  const int64_t F = pool[0] * pool[1] * pool[2];
  // per plane: its stage voxels x (int64 labels and a float one-hot per label at full resolution, the term and its cast)
  const double vox = static_cast<double>(h.numel() / n / C);
  const double per_plane = vox * static_cast<double>(8 * F + 4 * dec.label_classes * F + 8 * C);
  const int64_t chunk = std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(plan.slab_bytes) / per_plane));
  for (int64_t s = 0; s < n; s += chunk) {
    const int64_t e = std::min(n, s + chunk);
    h.slice(axis, s, e).add_(dec.label_term(k, labels.slice(axis - 1, s * f, e * f)).to(h.scalar_type()));
  }
}

void add_label_heads(const VQDecoderImpl& dec, const torch::Tensor& h, const Pre& pre, torch::Tensor& out, const torch::Tensor& labels,
                     const Plan& plan) {
  const int64_t a = plan.axis, C = out.size(1);
  // the gather's index (int64, C per voxel) and the chosen head's values next to the heads' output
  same_pad_slabs(dec.label_heads, h, pre, plan, 3 * C, [&](int64_t o0, const torch::Tensor& y) {
    out.narrow(a, o0, y.size(a)).add_(dec.head_term(y, labels.narrow(a - 1, o0, y.size(a))).to(out.scalar_type()));
  });
}

}  // namespace meddiff::split
