#include "models/monai_blocks.h"
#include "ops/attention.h"
#include "ops/conv.h"
#include "ops/norm_act.h"

namespace meddiff {

MonaiConvImpl::MonaiConvImpl(int64_t in, int64_t out, int64_t k, int64_t s, int64_t p) {
  conv = register_module("conv", torch::nn::Conv3d(torch::nn::Conv3dOptions(in, out, k).stride(s).padding(p < 0 ? k / 2 : p).bias(true)));
}

torch::Tensor MonaiConvImpl::forward(const torch::Tensor& x) { return ops::conv3d(conv, x); }

MonaiNormImpl::MonaiNormImpl(int64_t channels, int64_t groups, double eps) : groups(groups), eps(eps) {
  weight = register_parameter("weight", torch::ones({channels}));
  bias = register_parameter("bias", torch::zeros({channels}));
}

torch::Tensor MonaiNormImpl::forward(const torch::Tensor& x, bool silu) {
  return ops::norm_act(x, groups, weight, bias, eps, {}, {}, silu);
}

torch::Tensor upsample2x(const torch::Tensor& x, bool trilinear) {
  namespace F = torch::nn::functional;
  auto o = F::InterpolateFuncOptions().scale_factor(std::vector<double>{2.0, 2.0, 2.0});
  if (trilinear) o.mode(torch::kTrilinear).align_corners(false);
  else o.mode(torch::kNearest);
  return F::interpolate(x, o);
}

MonaiUpsampleImpl::MonaiUpsampleImpl(int64_t channels, bool trilinear) : trilinear(trilinear) {
  postconv = register_module("postconv", MonaiConv(channels, channels, 3));
}

torch::Tensor MonaiUpsampleImpl::forward(const torch::Tensor& x) { return postconv->forward(upsample2x(x, trilinear)); }

MonaiSelfAttentionImpl::MonaiSelfAttentionImpl(int64_t c, bool out_projection) {
  if (out_projection) out_proj = register_module("out_proj", torch::nn::Linear(c, c));
  to_q = register_module("to_q", torch::nn::Linear(c, c));
  to_k = register_module("to_k", torch::nn::Linear(c, c));
  to_v = register_module("to_v", torch::nn::Linear(c, c));
}

MonaiAttentionImpl::MonaiAttentionImpl(int64_t channels, int64_t heads, bool out_projection, int64_t groups, double eps)
    : heads(heads) {
  TORCH_CHECK(heads >= 1 && channels % heads == 0, "attention: ", channels, " channels do not split into ", heads, " heads");
  norm = register_module("norm", MonaiNorm(channels, groups, eps));
  attn = register_module("attn", MonaiSelfAttention(channels, out_projection));
}

torch::Tensor MonaiAttentionImpl::forward(const torch::Tensor& x) {
  const auto shape = x.sizes().vec();
  const int64_t B = shape[0], C = shape[1];
  auto t = norm->forward(x).flatten(2).transpose(1, 2);  // [B, N, C], voxels in C order of the spatial axes
  const int64_t N = t.size(1);
  auto split = [&](const torch::Tensor& y) { return y.view({B, N, heads, C / heads}).transpose(1, 2); };  // [B, h, N, d]
  auto o = ops::attention(split(attn->to_q(t)), split(attn->to_k(t)), split(attn->to_v(t)));
  o = o.transpose(1, 2).reshape({B, N, C});
  if (attn->out_proj) o = attn->out_proj(o);
  return o.transpose(1, 2).reshape(shape) + x;
}

}  // namespace meddiff
