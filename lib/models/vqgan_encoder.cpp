#include "models/vqgan_encoder.h"
#include "ops/conv.h"
#include "ops/norm_act.h"

namespace meddiff {

VQEncoderImpl::VQEncoderImpl(const VQGANParams& p, int64_t image_channels) {
  conv_first = register_module("conv_first", SamePadConv3d(image_channels, p.n_hiddens, Int3{3, 3, 3}, Int3{1, 1, 1}));
  down = register_module("down", torch::nn::ModuleList());
  int64_t ch = p.n_hiddens;
  int64_t i = 0;
  for (const auto& s : stage_strides(p)) {
    int64_t out = p.n_hiddens << (i + 1);
    torch::nn::Sequential stage;
    stage->push_back(SamePadConv3d(ch, out, Int3{s[0] == 2 ? 4 : 3, s[1] == 2 ? 4 : 3, s[2] == 2 ? 4 : 3}, s));
    for (int64_t r = 0; r < p.n_res_blocks; ++r) stage->push_back(ResBlock3d(out, out));
    down->push_back(stage);
    ch = out;
    ++i;
  }
  final_norm = register_module("final_norm", group_norm(ch));
  pre_vq_conv = register_module("pre_vq_conv", torch::nn::Conv3d(torch::nn::Conv3dOptions(ch, p.embedding_dim, 1)));
}

torch::Tensor VQEncoderImpl::forward(const torch::Tensor& x) {
  auto h = conv_first(x);  // [B, n_hiddens, D, H, W]
  for (const auto& stage : *down) h = stage->as<torch::nn::Sequential>()->forward(h);  // [B, C_i, D/2^i, ...]
  return ops::conv3d(pre_vq_conv, ops::norm_act(final_norm, h));  // [B, E, d, h, w]
}

}  // namespace meddiff
