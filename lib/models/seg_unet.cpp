#include "models/seg_unet.h"

#include "core/error.h"
#include "ops/conv.h"
#include "ops/norm_act.h"

namespace meddiff {

NormActConvImpl::NormActConvImpl(int64_t in, int64_t out) {
  norm = register_module("norm", group_norm(in));
  conv = register_module("conv", SamePadConv3d(in, out, Int3{3, 3, 3}, Int3{1, 1, 1}));
}

torch::Tensor NormActConvImpl::forward(const torch::Tensor& x) { return conv(ops::norm_act(norm, x)); }

SegUNetImpl::SegUNetImpl(int64_t in_channels, int64_t num_labels, int64_t base, int64_t lv) : levels(lv) {
  if (in_channels < 1 || num_labels < 2 || base < 4 || levels < 1 || levels > 5)
    fail("segmentation U-Net: needs >= 1 input channel, >= 2 labels, >= 4 base channels and 1..5 levels");
  stem = register_module("stem", SamePadConv3d(in_channels, base, Int3{3, 3, 3}, Int3{1, 1, 1}));
  down_blocks = register_module("down_blocks", torch::nn::ModuleList());
  downsamplers = register_module("downsamplers", torch::nn::ModuleList());
  up_blocks = register_module("up_blocks", torch::nn::ModuleList());
  int64_t c = base;
  for (int64_t l = 0; l < levels; ++l) {
    down_blocks->push_back(NormActConv(c, c));
    downsamplers->push_back(SamePadConv3d(c, 2 * c, Int3{4, 4, 4}, Int3{2, 2, 2}));
    c *= 2;
  }
  mid = register_module("mid", ResBlock3d(c, c));
  for (int64_t l = levels - 1; l >= 0; --l) {
    up_projections.push_back(register_module(fmt::format("up_projection_{}", levels - 1 - l),
                                             torch::nn::Conv3d(torch::nn::Conv3dOptions(c, c / 2, 1))));
    up_blocks->push_back(NormActConv(c / 2, c / 2));
    c /= 2;
  }
  norm_out = register_module("norm_out", group_norm(c));
  head = register_module("head", torch::nn::Conv3d(torch::nn::Conv3dOptions(c, num_labels, 1)));
}

torch::Tensor SegUNetImpl::forward(const torch::Tensor& x_in) {
  namespace F = torch::nn::functional;
  const int64_t m = int64_t{1} << levels;
  std::vector<int64_t> pad;  // F.pad order: W, H, D
  for (int64_t a = 4; a >= 2; --a) {
    pad.push_back(0);
    pad.push_back((m - x_in.size(a) % m) % m);
  }
  auto h = stem(F::pad(x_in, F::PadFuncOptions(pad).mode(torch::kReplicate)));  // [B, c, D, H, W]
  std::vector<torch::Tensor> skips;
  for (int64_t l = 0; l < levels; ++l) {
    h = down_blocks[static_cast<size_t>(l)]->as<NormActConv>()->forward(h);
    skips.push_back(h);
    h = downsamplers[static_cast<size_t>(l)]->as<SamePadConv3d>()->forward(h);  // [B, 2c, D/2, H/2, W/2]
  }
  h = mid(h);
  for (int64_t l = 0; l < levels; ++l) {
    const auto& skip = skips[static_cast<size_t>(levels - 1 - l)];
    h = F::interpolate(h, F::InterpolateFuncOptions().size(std::vector<int64_t>{skip.size(2), skip.size(3), skip.size(4)})
                              .mode(torch::kTrilinear).align_corners(false));
    h = ops::conv3d(up_projections[static_cast<size_t>(l)], h) + skip;  // [B, c_l, ...]
    h = up_blocks[static_cast<size_t>(l)]->as<NormActConv>()->forward(h);
  }
  auto logits = ops::conv3d(head, ops::norm_act(norm_out, h));  // [B, K, D', H', W']
  return logits.slice(2, 0, x_in.size(2)).slice(3, 0, x_in.size(3)).slice(4, 0, x_in.size(4));
}

}  // namespace meddiff
