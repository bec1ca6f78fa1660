#pragma once
// Perceptual loss, an extension point that is off by default: nothing is downloaded. When the user
// supplies a TorchScript feature extractor (for example LPIPS-VGG16 traced with torch.jit.trace from
// their own weights) it is applied to random 2-D slices, repeated to 3 channels, and the loss is the
// mean squared distance of the features it returns (a tensor or a list of tensors).
#include <torch/torch.h>

#include <memory>
#include <string>

namespace meddiff {

class PerceptualLoss {
 public:
  explicit PerceptualLoss(const std::string& torchscript_file, const torch::Device& device);
  ~PerceptualLoss();
  torch::Tensor operator()(const torch::Tensor& real2d, const torch::Tensor& fake2d);  // [B,1,H,W] in [-1,1]

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace meddiff
