#include "models/vqgan_decoder.h"
#include "ops/conv.h"
#include "ops/norm_act.h"

namespace meddiff {

VQDecoderImpl::VQDecoderImpl(const VQGANParams& p, int64_t image_channels) {
  auto strides = stage_strides(p);
  auto n = static_cast<int64_t>(strides.size());
  int64_t ch = p.n_hiddens << n;
  post_vq_conv = register_module("post_vq_conv", torch::nn::Conv3d(torch::nn::Conv3dOptions(p.embedding_dim, ch, 1)));
  up = register_module("up", torch::nn::ModuleList());
  for (int64_t i = n - 1; i >= 0; --i) {
    const auto& s = strides[static_cast<size_t>(i)];
    int64_t out = p.n_hiddens << i;
    torch::nn::Sequential stage;
    // kernel 4 / stride 2 / padding 1 doubles an axis; kernel 3 / stride 1 / padding 1 keeps it.
    stage->push_back(torch::nn::ConvTranspose3d(
        torch::nn::ConvTranspose3dOptions(ch, out, {s[0] == 2 ? 4 : 3, s[1] == 2 ? 4 : 3, s[2] == 2 ? 4 : 3})
            .stride({s[0], s[1], s[2]})
            .padding(1)));
    for (int64_t r = 0; r < p.n_res_blocks + 1; ++r) stage->push_back(ResBlock3d(out, out));
    up->push_back(stage);
    ch = out;
  }
  final_norm = register_module("final_norm", group_norm(ch));
  conv_last = register_module("conv_last", SamePadConv3d(ch, image_channels, Int3{3, 3, 3}, Int3{1, 1, 1}));
}

torch::Tensor VQDecoderImpl::forward(const torch::Tensor& z) {
  auto h = ops::conv3d(post_vq_conv, z);  // [B, C_top, d, h, w]
  for (const auto& stage : *up) h = stage->as<torch::nn::Sequential>()->forward(h);  // doubles halved axes
  return conv_last(ops::norm_act(final_norm, h));  // [B, C, D, H, W]
}

}  // namespace meddiff
