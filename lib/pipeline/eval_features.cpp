#include "pipeline/eval_features.h"

#include "core/progress.h"

namespace meddiff {

LatentFeatures latent_features(VQGAN& model, const std::vector<TrainingVolume>& volumes, const AutoencoderRun& run,
                               const torch::Device& device) {
  torch::NoGradGuard ng;
  std::vector<torch::Tensor> f, z;
  Progress progress("features", static_cast<int64_t>(volumes.size()));
  for (const auto& v : volumes) {
    auto lat = encode_volume(model, v.x.unsqueeze(0).to(device), run).to(torch::kCPU, torch::kFloat);  // [1, E, d, h, w]
    auto l = lat[0].to(torch::kDouble);
    auto flat = l.flatten(1);
    auto pooled = torch::adaptive_avg_pool3d(l.unsqueeze(0), {2, 2, 2}).flatten();
    f.push_back(torch::cat({flat.mean(1), flat.std(1), pooled}));
    z.push_back(lat[0]);
    progress.update(static_cast<int64_t>(f.size()));
  }
  progress.finish();
  return {torch::stack(f), torch::stack(z)};
}

}  // namespace meddiff
