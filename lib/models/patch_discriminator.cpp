#include "models/patch_discriminator.h"

#include "models/blocks.h"
#include "models/sync_batch_norm.h"

namespace meddiff {
namespace {

torch::nn::AnyModule conv(int dims, int64_t in, int64_t out, int64_t stride, bool bias = true) {
  // kernel 4, padding 2 (as pix2pix / the reference)
  if (dims == 2)
    return torch::nn::AnyModule(torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 4).stride(stride).padding(2).bias(bias)));
  return torch::nn::AnyModule(torch::nn::Conv3d(torch::nn::Conv3dOptions(in, out, 4).stride(stride).padding(2).bias(bias)));
}

torch::nn::AnyModule norm(int dims, int64_t ch, const std::string& kind) {
  if (kind == "group") return torch::nn::AnyModule(group_norm(ch, 1e-5));
  return torch::nn::AnyModule(SyncBatchNorm(ch));  // BatchNorm2d/3d, synchronised across ranks when training data-parallel
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
    // No bias before BatchNorm, as pix2pix's NLayerDiscriminator: the norm removes it (its gradient is
    // zero, and Adam would turn rounding noise into steps of the learning rate).
    b->push_back(conv(dims, ch, out, n < n_layers ? 2 : 1, norm_kind != "batch"));
    b->push_back(norm(dims, out, norm_kind));
    b->push_back(torch::nn::LeakyReLU(torch::nn::LeakyReLUOptions().negative_slope(0.2)));
    blocks->push_back(b);
    ch = out;
  }
  torch::nn::Sequential last;
  last->push_back(conv(dims, ch, 1, 1));
  blocks->push_back(last);
}

void PatchDiscriminatorImpl::set_collectives(Collectives* comm) {
  for (const auto& m : modules(/*include_self=*/false))
    if (auto* bn = dynamic_cast<SyncBatchNormImpl*>(m.get())) bn->comm = comm;
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
