#include "ops/conv.h"

#include <ATen/Context.h>

namespace meddiff::ops {

bool conv3d_uses_onednn(const torch::Tensor& x) {
  return at::hasMKLDNN() && at::globalContext().userEnabledMkldnn() && x.device().is_cpu() && x.scalar_type() == torch::kFloat &&
         x.dim() == 5 && !(torch::GradMode::is_enabled() && x.requires_grad());
}

torch::Tensor conv3d(const torch::nn::Conv3d& conv, const torch::Tensor& x) {
  const auto& o = conv->options;
  const auto* pad = std::get_if<torch::ExpandingArray<3>>(&o.padding());
  if (!pad || o.transposed() || !conv3d_uses_onednn(x) || !std::holds_alternative<torch::enumtype::kZeros>(o.padding_mode()) ||
      (torch::GradMode::is_enabled() && conv->weight.requires_grad()))
    return conv.ptr()->forward(x);
  return at::mkldnn_convolution(x.contiguous(), conv->weight, conv->bias.defined() ? conv->bias : torch::Tensor(), **pad, *o.stride(),
                                *o.dilation(), o.groups());
}

}  // namespace meddiff::ops
