#include "pipeline/denoiser.h"

#include "core/error.h"

namespace meddiff {

torch::Tensor MonaiDenoiser::forward(const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& cls, const torch::Tensor& cond) {
  if (cond.defined() && cond.numel() > 0) fail("an imported MONAI U-Net takes no label condition");
  MonaiUNetInputs in;
  if (net->params.num_class_embeds > 0) in.class_labels = cls.defined() ? cls : torch::full({x.size(0)}, null, torch::kLong);
  if (net->params.spacing_input) {
    if (!spacing.defined()) fail("this MAISI U-Net takes the voxel spacing: give sample --spacing");
    in.spacing = spacing.expand({x.size(0), 3});
  }
  return net->forward(x, t, in);
}

}  // namespace meddiff
