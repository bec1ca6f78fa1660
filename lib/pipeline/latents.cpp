#include "pipeline/latents.h"

#include "core/error.h"
#include "core/progress.h"
#include "pipeline/autoencoder.h"

namespace meddiff {

namespace {
torch::Tensor per_channel(const std::vector<double>& v, const torch::Tensor& like) {
  std::vector<int64_t> shape(static_cast<size_t>(like.dim()), 1);
  shape[1] = static_cast<int64_t>(v.size());
  return torch::tensor(v, like.options().dtype(torch::kDouble)).to(like.dtype()).view(shape);
}
}  // namespace

torch::Tensor LatentNorm::apply(const torch::Tensor& z) const { return (z - per_channel(offset, z)) / per_channel(scale, z); }
torch::Tensor LatentNorm::invert(const torch::Tensor& z) const { return z * per_channel(scale, z) + per_channel(offset, z); }

nlohmann::json LatentNorm::to_json() const {
  return {{"kind", kind}, {"offset", offset}, {"scale", scale}, {"bound", bound}};
}
LatentNorm LatentNorm::from_json(const nlohmann::json& j) {
  return {j.at("kind").get<std::string>(), j.at("offset").get<std::vector<double>>(), j.at("scale").get<std::vector<double>>(),
          j.value("bound", 1.0)};
}

LatentSet encode_latents(LatentAutoencoder& ae, const std::vector<TrainingVolume>& volumes, const torch::Device& device) {
  return encode_latents(ae, static_cast<int64_t>(volumes.size()), [&](int64_t i) { return volumes[static_cast<size_t>(i)]; }, device);
}

LatentSet encode_latents(LatentAutoencoder& ae, int64_t count, const std::function<TrainingVolume(int64_t)>& volume,
                         const torch::Device& device) {
  torch::NoGradGuard ng;
  std::vector<torch::Tensor> zs;
  std::vector<int64_t> cls;
  Progress progress("encoding latents", count);
  for (int64_t i = 0; i < count; ++i) {
    const TrainingVolume v = volume(i);
    zs.push_back(ae.encode(v.x.unsqueeze(0).to(device, torch::kFloat), AutoencoderRun{}).to(torch::kCPU, torch::kFloat)[0]);  // [E, d, h, w]
    cls.push_back(v.class_label);
    progress.update(static_cast<int64_t>(zs.size()));
  }
  progress.finish();
  return {torch::stack(zs), torch::tensor(cls, torch::kLong)};
}

std::vector<TrainingVolume> latent_items(const torch::Tensor& zn, const torch::Tensor& classes) {
  std::vector<TrainingVolume> items(static_cast<size_t>(zn.size(0)));
  for (int64_t i = 0; i < zn.size(0); ++i) {
    items[static_cast<size_t>(i)].x = zn[i];
    items[static_cast<size_t>(i)].class_label = classes[i].item<int64_t>();
  }
  return items;
}

LatentNorm fit_latent_norm(const std::string& kind, const LatentAutoencoder& ae, const torch::Tensor& latents) {
  LatentNorm n;
  n.kind = kind;
  const int64_t E = latents.size(1);
  if (kind == "codebook_minmax") {
    if (!ae.codebook().defined())
      fail("ldm.latent_norm = codebook_minmax needs a VQ-GAN's codebook; the {} autoencoder has none: use channel_meanstd", ae.family());
    auto e = ae.codebook().to(torch::kCPU, torch::kDouble);
    double lo = e.min().item<double>(), hi = e.max().item<double>();
    if (!(hi > lo)) fail("the VQ-GAN codebook is constant; train the VQ-GAN first");
    n.offset.assign(static_cast<size_t>(E), 0.5 * (lo + hi));
    n.scale.assign(static_cast<size_t>(E), 0.5 * (hi - lo));
  } else {
    auto per = latents.transpose(0, 1).reshape({E, -1}).to(torch::kDouble);
    auto mean = per.mean(1), std = per.std(1).clamp_min(1e-6);
    for (int64_t c = 0; c < E; ++c) {
      n.offset.push_back(mean[c].item<double>());
      n.scale.push_back(std[c].item<double>());
    }
  }
  n.bound = std::max(1.0, n.apply(latents).abs().max().item<double>());
  return n;
}

}  // namespace meddiff
