#include "pipeline/generate.h"

#include "core/error.h"

namespace meddiff {

torch::Tensor generate_volumes(LoadedLDM& ldm, VQGAN& vqgan, const torch::Tensor& x_T, const torch::Tensor& classes,
                               const torch::Tensor& cond, const SamplerParams& sp, const std::function<torch::Tensor(int64_t)>& noise,
                               const std::function<void(int64_t, int64_t)>& on_step, const AutoencoderRun& decode) {
  torch::NoGradGuard ng;
  const bool labelled = ldm.model->cond_channels > 0;
  if (labelled && (!cond.defined() || cond.size(0) != x_T.size(0) || cond.size(1) != ldm.model->cond_channels))
    fail("this model is conditioned on label maps: one label condition per volume is needed");
  torch::Tensor cls = ldm.num_classes > 0 ? classes : torch::Tensor();
  // The sampler's condition ids: the class ids, or for a label-conditioned model the volume's row, whose
  // class and label condition the network then looks up; the null id is the unconditional branch.
  torch::Tensor ids = cls;
  int64_t null_id = ldm.model->null_class();
  if (labelled) {
    ids = torch::arange(x_T.size(0), torch::TensorOptions().dtype(torch::kLong));
    null_id = -1;
  }
  // The networks run one volume at a time: kernels may pick other algorithms (and round differently)
  // for other batch sizes, and a volume must not depend on the batch it was generated in.
  ModelFn fn = [&](const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& c) {
    std::vector<torch::Tensor> out;
    for (int64_t i = 0; i < x.size(0); ++i) {
      auto xi = x.slice(0, i, i + 1), ti = t.slice(0, i, i + 1);
      if (!labelled) {
        out.push_back(ldm.model->forward(xi, ti, c.defined() ? c.slice(0, i, i + 1) : c));
        continue;
      }
      const int64_t row = c.defined() ? c[i].item<int64_t>() : i;  // ids live on the CPU: no device sync
      torch::Tensor ci, condi;
      if (row < 0) {
        if (cls.defined()) ci = torch::full({1}, ldm.model->null_class(), torch::TensorOptions().dtype(torch::kLong).device(ti.device()));
        condi = torch::zeros_like(cond.slice(0, 0, 1));
      } else {
        if (cls.defined()) ci = cls.slice(0, row, row + 1);
        condi = cond.slice(0, row, row + 1);
      }
      out.push_back(ldm.model->forward(xi, ti, ci, condi));
    }
    return torch::cat(out);
  };
  SamplerParams params = sp;
  params.x0_bound = ldm.norm.bound;  // clip predicted latents to the range the training latents span
  auto z = ldm.norm.invert(ldm.rflow ? sample_rflow(ldm.rflow_shift, fn, x_T, ids, null_id, params, on_step)
                                     : sample(ldm.schedule, ldm.prediction, fn, x_T, ids, null_id, params, noise, on_step));
  std::vector<torch::Tensor> vols;
  for (int64_t i = 0; i < z.size(0); ++i) vols.push_back(decode_latent(vqgan, z.slice(0, i, i + 1), decode).clamp(-1, 1));
  return torch::cat(vols);  // [B, 1, D, H, W]
}

}  // namespace meddiff
