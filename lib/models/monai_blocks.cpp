#include "models/monai_blocks.h"
#include "ops/attention.h"
#include "ops/conv.h"
#include "ops/norm_act.h"

namespace meddiff {

MonaiConvImpl::MonaiConvImpl(int64_t in, int64_t out, int64_t k, int64_t s, int64_t p) {
  conv = register_module("conv", torch::nn::Conv3d(torch::nn::Conv3dOptions(in, out, k).stride(s).padding(p < 0 ? k / 2 : p).bias(true)));
}

torch::Tensor MonaiConvImpl::forward(const torch::Tensor& x) { return ops::conv3d(conv, x); }

MonaiNormImpl::MonaiNormImpl(int64_t channels, int64_t groups, double eps, bool fp16_output)
    : groups(groups), eps(eps), fp16_output(fp16_output) {
  weight = register_parameter("weight", torch::ones({channels}));
  bias = register_parameter("bias", torch::zeros({channels}));
}

torch::Tensor MonaiNormImpl::forward(const torch::Tensor& x, bool silu) {
  if (!fp16_output) return ops::norm_act(x, groups, weight, bias, eps, {}, {}, silu);
  // MaisiGroupNorm3D's arithmetic, group by group in float32: (x - mean) / sqrt(var + eps), then float16
  TORCH_CHECK(x.dim() == 5, "MAISI's GroupNorm expects [B, C, D, H, W]");
  const int64_t B = x.size(0), C = x.size(1);
  auto v = x.view({B, groups, C / groups, x.size(2), x.size(3), x.size(4)});
  std::vector<torch::Tensor> parts;
  for (int64_t g = 0; g < groups; ++g) {
    auto a = v.narrow(1, g, 1).to(torch::kFloat);
    auto mean = a.mean({2, 3, 4, 5}, /*keepdim=*/true);
    auto sd = a.var({2, 3, 4, 5}, /*unbiased=*/false, /*keepdim=*/true).add_(eps).sqrt_();
    parts.push_back(((a - mean) / sd).to(torch::kHalf));
  }
  return affine(torch::cat(parts, 1).view(x.sizes()), silu).to(x.scalar_type());
}

torch::Tensor MonaiNormImpl::affine(const torch::Tensor& normalised, bool silu) const {
  std::vector<int64_t> shape(static_cast<size_t>(normalised.dim()), 1);
  shape[1] = normalised.size(1);
  if (!fp16_output) {
    auto y = normalised * weight.view(shape) + bias.view(shape);
    return silu ? torch::silu(y) : y;
  }
  // MAISI's norm_float16: the weight and bias applied in place to the float16 values (each product and sum computed
  // in float32, stored as float16), then SiLU of the float16 tensor
  auto y = normalised.to(torch::kHalf, /*non_blocking=*/false, /*copy=*/true);
  y.mul_(weight.view(shape)).add_(bias.view(shape));
  return (silu ? torch::silu(y) : y).to(normalised.scalar_type());
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
