#include "train/perceptual.h"

#include "core/error.h"

#include <torch/script.h>

#include <filesystem>

namespace meddiff {

struct PerceptualLoss::Impl {
  torch::jit::script::Module module;
};

PerceptualLoss::PerceptualLoss(const std::string& file, const torch::Device& device) : impl_(std::make_unique<Impl>()) {
  if (!std::filesystem::exists(file)) fail("{}: no such file (vqgan_train.perceptual_model)", file);
  try {
    impl_->module = torch::jit::load(file, device);
  } catch (const std::exception& e) {
    fail("{}: not a TorchScript module (vqgan_train.perceptual_model)", file);
  }
  impl_->module.eval();
  for (auto p : impl_->module.parameters()) p.set_requires_grad(false);
}

PerceptualLoss::~PerceptualLoss() = default;

torch::Tensor PerceptualLoss::operator()(const torch::Tensor& real2d, const torch::Tensor& fake2d) {
  auto features = [&](const torch::Tensor& x) { return impl_->module.forward({x.repeat({1, 3, 1, 1})}); };
  auto fr = features(real2d.detach()), ff = features(fake2d);
  auto as_list = [](const c10::IValue& v) {
    std::vector<torch::Tensor> out;
    if (v.isTensor()) out.push_back(v.toTensor());
    else if (v.isTensorList()) for (const auto& t : v.toTensorVector()) out.push_back(t);
    else if (v.isTuple()) for (const auto& e : v.toTupleRef().elements()) out.push_back(e.toTensor());
    else if (v.isList()) for (const auto& e : v.toListRef()) out.push_back(e.toTensor());
    else fail("perceptual model must return a tensor or a list/tuple of tensors");
    return out;
  };
  auto a = as_list(fr), b = as_list(ff);
  torch::Tensor loss = torch::zeros({}, fake2d.options());
  for (size_t i = 0; i < a.size(); ++i) loss = loss + torch::mse_loss(b[i], a[i].detach());
  return loss / static_cast<double>(std::max<size_t>(1, a.size()));
}

}  // namespace meddiff
