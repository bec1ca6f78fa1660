#include "ops/conv.h"

#include <ATen/Context.h>

namespace meddiff::ops {

torch::Tensor conv3d(const torch::nn::Conv3d& conv, const torch::Tensor& x) {
  const auto& o = conv->options;
  const auto* pad = std::get_if<torch::ExpandingArray<3>>(&o.padding());
  const bool needs_grad = torch::GradMode::is_enabled() && (x.requires_grad() || conv->weight.requires_grad());
  const bool onednn = at::hasMKLDNN() && at::globalContext().userEnabledMkldnn() && x.device().is_cpu() &&
                      x.scalar_type() == torch::kFloat && x.dim() == 5 && !needs_grad && pad && !o.transposed() &&
                      std::holds_alternative<torch::enumtype::kZeros>(o.padding_mode());
  if (!onednn) return conv.ptr()->forward(x);
  return at::mkldnn_convolution(x.contiguous(), conv->weight, conv->bias.defined() ? conv->bias : torch::Tensor(), **pad, *o.stride(),
                                *o.dilation(), o.groups());
}

}  // namespace meddiff::ops
