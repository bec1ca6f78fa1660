#include "pipeline/denoiser.h"

#include "core/error.h"

namespace meddiff {

MonaiUNetInputs MonaiDenoiser::inputs(const torch::Tensor& x, const torch::Tensor& cls) const {
  MonaiUNetInputs in;
  if (net->params.num_class_embeds > 0) in.class_labels = cls.defined() ? cls : torch::full({x.size(0)}, null, torch::kLong);
  if (net->params.spacing_input) {
    if (!spacing.defined()) fail("this MAISI U-Net takes the voxel spacing: give sample --spacing");
    in.spacing = spacing.expand({x.size(0), 3});
  }
  return in;
}

torch::Tensor MonaiDenoiser::forward(const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& cls, const torch::Tensor& cond) {
  if (cond.defined() && cond.numel() > 0) fail("an imported MONAI U-Net takes no label condition");
  return net->forward(x, t, inputs(x, cls));
}

torch::Tensor MonaiControlNetDenoiser::forward(const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& cls, const torch::Tensor& cond) {
  auto in = inputs(x, cls);
  torch::Tensor classes;
  if (control->params.unet.num_class_embeds > 0) classes = cls.defined() ? cls : torch::full({x.size(0)}, null, torch::kLong);
  const auto& p = control->params.unet;
  auto e = cond.defined() ? cond
                          : torch::zeros({x.size(0), p.channels.at(0), x.size(2), x.size(3), x.size(4)}, x.options());
  auto r = control->residuals(x, t, e, classes);
  in.down_residuals = std::move(r.down);
  in.mid_residual = r.mid;
  return net->forward(x, t, in);
}

}  // namespace meddiff
