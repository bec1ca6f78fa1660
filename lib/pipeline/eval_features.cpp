#include "pipeline/eval_features.h"

#include "core/error.h"

#include <torch/script.h>

#include <filesystem>

namespace meddiff {

LatentFeatures latent_features(LatentAutoencoder& model, const torch::Tensor& x, const AutoencoderRun& run, const torch::Device& device) {
  torch::NoGradGuard ng;
  auto lat = model.encode(x.unsqueeze(0).to(device), run).to(torch::kCPU, torch::kFloat);  // [1, E, d, h, w]
  auto l = lat[0].to(torch::kDouble);
  auto flat = l.flatten(1);
  auto pooled = torch::adaptive_avg_pool3d(l.unsqueeze(0), {2, 2, 2}).flatten();
  return {torch::cat({flat.mean(1), flat.std(1), pooled}), lat[0]};
}

struct FeatureNetwork::Impl {
  mutable torch::jit::script::Module module;
};

FeatureNetwork::FeatureNetwork(const std::string& spec, const torch::Device& device)
    : impl_(std::make_unique<Impl>()), device_(device) {
  auto colon = spec.find(':');
  std::string kind = colon == std::string::npos ? "" : spec.substr(0, colon);
  if (kind != "3d" && kind != "2d")
    fail("--features: expected vqgan, 3d:FILE or 2d:FILE (a TorchScript network; got '{}')", spec);
  slice_wise_ = kind == "2d";
  file_ = spec.substr(colon + 1);
  if (!std::filesystem::is_regular_file(file_)) fail("{}: no such file (--features)", file_);
  try {
    impl_->module = torch::jit::load(file_, device);
  } catch (const std::exception&) {
    fail("{}: not a TorchScript module (--features; save one with torch.jit.trace(net, example).save(FILE))", file_);
  }
  impl_->module.eval();
}

FeatureNetwork::~FeatureNetwork() = default;

torch::Tensor FeatureNetwork::forward(const torch::Tensor& x) const {
  c10::IValue out;
  try {
    out = impl_->module.forward({x.to(device_)});
  } catch (const std::exception& e) {
    std::string what = e.what();
    fail("{}: the network failed on an input of shape {}: {}", file_, fmt::format("{}", fmt::join(x.sizes(), "x")),
         what.substr(0, what.find('\n')));
  }
  torch::Tensor t;
  if (out.isTensor()) t = out.toTensor();
  else if (out.isTuple() && !out.toTupleRef().elements().empty() && out.toTupleRef().elements()[0].isTensor())
    t = out.toTupleRef().elements()[0].toTensor();
  else if (out.isList() && !out.toListRef().empty() && out.toListRef()[0].isTensor()) t = out.toListRef()[0].toTensor();
  else fail("{}: the network must return a tensor (or a tuple or list whose first element is one)", file_);
  if (t.dim() < 2 || t.size(0) != x.size(0))
    fail("{}: the network returned shape {} for a batch of {}; expected [batch, features, ...]", file_,
         fmt::format("{}", fmt::join(t.sizes(), "x")), x.size(0));
  t = t.to(torch::kCPU, torch::kDouble);
  if (t.dim() > 2) t = t.flatten(2).mean(2);  // average over spatial dimensions
  if (!torch::isfinite(t).all().item<bool>()) fail("{}: the network returned NaN or infinite features", file_);
  return t;
}

namespace {

torch::Tensor normalise(torch::Tensor x, const FeatureInput& in) {  // x: one channel [1, D, H, W] in [-1, 1]
  x = x.to(torch::kFloat);
  if (in.norm == "zscore") return (x - x.mean()) / x.std().clamp_min(1e-6);
  if (in.norm == "unit") return (x + 1) * 0.5;
  if (in.norm == "raw") return x;
  fail("--feature-input must be zscore, unit or raw (got '{}')", in.norm);
}

}  // namespace

FeatureNetwork::Result FeatureNetwork::features(const torch::Tensor& volume, const FeatureInput& in) const {
  torch::NoGradGuard ng;
  Result r;
  if (volume.size(0) > 1) {  // several channels: each one's features, side by side
    std::vector<Result> per;
    for (int64_t c = 0; c < volume.size(0); ++c) per.push_back(features(volume.slice(0, c, c + 1), in));
    std::vector<torch::Tensor> f;
    for (const auto& p : per) f.push_back(p.feature);
    r.feature = torch::cat(f);
    if (slice_wise_)
      for (size_t a = 0; a < 3; ++a) {
        std::vector<torch::Tensor> planes;
        for (const auto& p : per) planes.push_back(p.planes[a]);
        r.planes[a] = torch::cat(planes, 1);
      }
    return r;
  }
  auto x = normalise(volume, in).unsqueeze(0);  // [1, 1, D, H, W]
  if (!slice_wise_) {
    if (in.size[0] > 0)
      x = torch::nn::functional::interpolate(
          x, torch::nn::functional::InterpolateFuncOptions().size(std::vector<int64_t>(in.size.begin(), in.size.end()))
                 .mode(torch::kTrilinear).align_corners(false));
    r.feature = forward(x.repeat({1, in.channels, 1, 1, 1}))[0];
    return r;
  }
  std::vector<torch::Tensor> means;
  for (int64_t axis = 0; axis < 3; ++axis) {
    auto s = x[0][0].movedim(axis, 0).unsqueeze(1);  // [S, 1, h, w]
    if (in.size[1] > 0)
      s = torch::nn::functional::interpolate(
          s, torch::nn::functional::InterpolateFuncOptions().size(std::vector<int64_t>{in.size[1], in.size[2]})
                 .mode(torch::kBilinear).align_corners(false));
    s = s.repeat({1, in.channels, 1, 1});
    std::vector<torch::Tensor> fs;
    for (int64_t b = 0; b < s.size(0); b += in.batch) fs.push_back(forward(s.slice(0, b, std::min(s.size(0), b + in.batch))));
    r.planes[static_cast<size_t>(axis)] = torch::cat(fs);
    means.push_back(r.planes[static_cast<size_t>(axis)].mean(0));
  }
  r.feature = torch::cat(means);
  return r;
}

}  // namespace meddiff
