#include "models/patch_discriminator.h"

#include "models/blocks.h"

namespace meddiff {
namespace {

torch::nn::AnyModule conv(int dims, int64_t in, int64_t out, int64_t stride) {
  // kernel 4, padding 2 (as pix2pix / the reference)
  if (dims == 2) return torch::nn::AnyModule(torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 4).stride(stride).padding(2)));
  return torch::nn::AnyModule(torch::nn::Conv3d(torch::nn::Conv3dOptions(in, out, 4).stride(stride).padding(2)));
}

torch::nn::AnyModule norm(int dims, int64_t ch, const std::string& kind) {
  if (kind == "group") return torch::nn::AnyModule(group_norm(ch, 1e-5));
  if (dims == 2) return torch::nn::AnyModule(torch::nn::BatchNorm2d(ch));
  return torch::nn::AnyModule(torch::nn::BatchNorm3d(ch));
}

}  // namespace

PatchDiscriminatorImpl::PatchDiscriminatorImpl(int dims, int64_t in_channels, int64_t ndf, int64_t n_layers,
                                               const std::string& norm_kind) {
  blocks = register_module("blocks", torch::nn::ModuleList());
  auto lrelu = torch::nn::LeakyReLU(torch::nn::LeakyReLUOptions().negative_slope(0.2));
  torch::nn::Sequential first;
  first->push_back(conv(dims, in_channels, ndf, 2));
  first->push_back(lrelu);
  blocks->push_back(first);
  int64_t ch = ndf;
  for (int64_t n = 1; n <= n_layers; ++n) {
    int64_t out = ndf * std::min<int64_t>(int64_t{1} << n, 8);
    torch::nn::Sequential b;
    b->push_back(conv(dims, ch, out, n < n_layers ? 2 : 1));
    b->push_back(norm(dims, out, norm_kind));
    b->push_back(torch::nn::LeakyReLU(torch::nn::LeakyReLUOptions().negative_slope(0.2)));
    blocks->push_back(b);
    ch = out;
  }
  torch::nn::Sequential last;
  last->push_back(conv(dims, ch, 1, 1));
  blocks->push_back(last);
}

std::pair<torch::Tensor, std::vector<torch::Tensor>> PatchDiscriminatorImpl::forward(const torch::Tensor& x) {
  std::vector<torch::Tensor> features;
  auto h = x;
  for (size_t i = 0; i < blocks->size(); ++i) {
    h = blocks[i]->as<torch::nn::Sequential>()->forward(h);
    if (i + 1 < blocks->size()) features.push_back(h);
  }
  return {h, features};
}

}  // namespace meddiff
