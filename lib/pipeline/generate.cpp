#include "pipeline/generate.h"

namespace meddiff {

torch::Tensor generate_volumes(LoadedLDM& ldm, VQGAN& vqgan, const torch::Tensor& x_T, const torch::Tensor& classes,
                               const SamplerParams& sp, const std::function<torch::Tensor(int64_t)>& noise,
                               const std::function<void(int64_t, int64_t)>& on_step, const AutoencoderRun& decode) {
  torch::NoGradGuard ng;
  // The networks run one volume at a time: kernels may pick other algorithms (and round differently)
  // for other batch sizes, and a volume must not depend on the batch it was generated in.
  ModelFn fn = [&](const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& c) {
    std::vector<torch::Tensor> out;
    for (int64_t i = 0; i < x.size(0); ++i)
      out.push_back(ldm.model->forward(x.slice(0, i, i + 1), t.slice(0, i, i + 1), c.defined() ? c.slice(0, i, i + 1) : c));
    return torch::cat(out);
  };
  torch::Tensor cls = ldm.num_classes > 0 ? classes : torch::Tensor();
  SamplerParams params = sp;
  params.x0_bound = ldm.norm.bound;  // clip predicted latents to the range the training latents span
  auto z = ldm.norm.invert(sample(ldm.schedule, ldm.prediction, fn, x_T, cls, ldm.model->null_class(), params, noise, on_step));
  std::vector<torch::Tensor> vols;
  for (int64_t i = 0; i < z.size(0); ++i) vols.push_back(decode_latent(vqgan, z.slice(0, i, i + 1), decode).clamp(-1, 1));
  return torch::cat(vols);  // [B, 1, D, H, W]
}

}  // namespace meddiff
