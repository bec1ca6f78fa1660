#include "models/blocks.h"
#include "ops/conv.h"
#include "ops/norm_act.h"

namespace meddiff {

torch::nn::GroupNorm group_norm(int64_t channels, double eps) {
  int64_t groups = std::min<int64_t>(32, std::max<int64_t>(1, channels / 4));
  while (channels % groups != 0) --groups;
  return torch::nn::GroupNorm(torch::nn::GroupNormOptions(groups, channels).eps(eps));
}

SamePadConv3dImpl::SamePadConv3dImpl(int64_t in, int64_t out, std::array<int64_t, 3> k, std::array<int64_t, 3> s) {
  conv = register_module("conv", torch::nn::Conv3d(torch::nn::Conv3dOptions(in, out, {k[0], k[1], k[2]})
                                                       .stride({s[0], s[1], s[2]}).padding(0).bias(true)));
  pad.resize(6);
  for (int a = 0; a < 3; ++a) {
    int64_t total = k[static_cast<size_t>(a)] - s[static_cast<size_t>(a)];  // keeps size / stride exactly
    pad[static_cast<size_t>(2 * (2 - a))] = total / 2 + total % 2;
    pad[static_cast<size_t>(2 * (2 - a) + 1)] = total / 2;
  }
}

torch::Tensor SamePadConv3dImpl::forward(const torch::Tensor& x) {
  namespace F = torch::nn::functional;
  return ops::conv3d(conv, F::pad(x, F::PadFuncOptions(pad).mode(torch::kReplicate)));
}

ResBlock3dImpl::ResBlock3dImpl(int64_t in, int64_t out) {
  norm1 = register_module("norm1", group_norm(in));
  conv1 = register_module("conv1", SamePadConv3d(in, out, Int3{3, 3, 3}, Int3{1, 1, 1}));
  norm2 = register_module("norm2", group_norm(out));
  conv2 = register_module("conv2", SamePadConv3d(out, out, Int3{3, 3, 3}, Int3{1, 1, 1}));
  if (in != out) skip = register_module("skip", torch::nn::Conv3d(torch::nn::Conv3dOptions(in, out, 1)));
  fn = [this](const std::vector<torch::Tensor>& in) { return forward_impl(in[0]); };
}

torch::Tensor ResBlock3dImpl::forward(const torch::Tensor& x) {
  return checkpointing && is_training() ? recompute(fn, {x}) : forward_impl(x);
}

torch::Tensor ResBlock3dImpl::forward_impl(const torch::Tensor& x) {
  auto h = conv1(ops::norm_act(norm1, x));   // [B, out, D, H, W]
  h = conv2(ops::norm_act(norm2, h));
  return h + (skip ? ops::conv3d(skip, x) : x);
}

}  // namespace meddiff
