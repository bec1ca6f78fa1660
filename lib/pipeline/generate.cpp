#include "pipeline/generate.h"

#include "core/error.h"
#include "pipeline/device.h"

namespace meddiff {

torch::Tensor generate_volumes(LoadedLDM& ldm, LatentAutoencoder& autoencoder, const torch::Tensor& x_T, const torch::Tensor& classes,
                               const torch::Tensor& cond, const SamplerParams& sp, const std::function<torch::Tensor(int64_t)>& noise,
                               const std::function<void(int64_t, int64_t)>& on_step, const AutoencoderRun& decode,
                               const torch::Tensor& labels) {
  torch::NoGradGuard ng;
  const bool labelled = ldm.net->cond_channels() > 0;
  if (labelled && (!cond.defined() || cond.size(0) != x_T.size(0) || cond.size(1) != ldm.net->cond_channels()))
    fail("this model is conditioned on label maps: one label condition per volume is needed");
  torch::Tensor cls = ldm.num_classes > 0 ? classes : torch::Tensor();
  // The sampler's condition ids: the class ids, or for a label-conditioned model the volume's row, whose
  // class and label condition the network then looks up; the null id is the unconditional branch.
  torch::Tensor ids = cls;
  int64_t null_id = ldm.net->null_class();
  if (labelled) {
    ids = torch::arange(x_T.size(0), torch::TensorOptions().dtype(torch::kLong));
    null_id = -1;
  }
  // The networks run one volume at a time by default: kernels may pick other algorithms (and round
  // differently) for other batch sizes, and a volume must not depend on the batch it was generated in.
  // sp.batch_networks runs the whole batch (volumes and the guidance pair) in one forward instead:
  // faster on a GPU, the same up to float rounding, not bit-identical.
  ModelFn fn = [&](const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& c) {
    std::vector<torch::Tensor> cis, conds;
    for (int64_t i = 0; i < x.size(0) && labelled; ++i) {
      const int64_t row = c.defined() ? c[i].item<int64_t>() : i;  // ids live on the CPU: no device sync
      if (row < 0) {
        if (cls.defined()) cis.push_back(torch::full({1}, ldm.net->null_class(), torch::TensorOptions().dtype(torch::kLong).device(t.device())));
        conds.push_back(torch::zeros_like(cond.slice(0, 0, 1)));
      } else {
        if (cls.defined()) cis.push_back(cls.slice(0, row, row + 1));
        conds.push_back(cond.slice(0, row, row + 1));
      }
    }
    auto class_of = [&](int64_t i0, int64_t i1) {
      if (labelled) return cis.empty() ? torch::Tensor() : torch::cat(std::vector<torch::Tensor>(cis.begin() + i0, cis.begin() + i1));
      return c.defined() ? c.slice(0, i0, i1) : c;
    };
    auto cond_of = [&](int64_t i0, int64_t i1) {
      return labelled ? torch::cat(std::vector<torch::Tensor>(conds.begin() + i0, conds.begin() + i1)) : torch::Tensor();
    };
    AutocastGuard bf16(sp.bf16 && x.is_cuda());
    if (sp.batch_networks) return ldm.net->forward(x, t, class_of(0, x.size(0)), cond_of(0, x.size(0)));
    std::vector<torch::Tensor> out;
    for (int64_t i = 0; i < x.size(0); ++i)
      out.push_back(ldm.net->forward(x.slice(0, i, i + 1), t.slice(0, i, i + 1), class_of(i, i + 1), cond_of(i, i + 1)));
    return torch::cat(out);
  };
  SamplerParams params = sp;
  params.x0_bound = ldm.norm.bound;  // clip predicted latents to the range the training latents span
  torch::Tensor z;
  if (ldm.maisi) {
    // MAISI's recipe: its fp16 timestep list for this latent size, Euler steps, the velocity guided as MAISI does
    auto velocity = [&](const torch::Tensor& x, const torch::Tensor& t) {
      auto o = network_outputs(fn, x, t, ids, null_id, params.guidance);
      return o.uncond ? *o.uncond + params.guidance * (o.cond - *o.uncond) : o.cond;
    };
    const auto ts = maisi_rflow_timesteps(*ldm.maisi, params.steps, x_T.size(2) * x_T.size(3) * x_T.size(4));
    z = maisi_rflow_sample(*ldm.maisi, x_T, ts, velocity, on_step);
  } else if (ldm.rflow) {
    z = sample_rflow(ldm.rflow_shift, fn, x_T, ids, null_id, params, on_step);
  } else {
    z = sample(ldm.schedule, ldm.prediction, fn, x_T, ids, null_id, params, noise, on_step);
  }
  z = ldm.norm.invert(z);
  std::vector<torch::Tensor> vols;
  for (int64_t i = 0; i < z.size(0); ++i) {
    auto v = autoencoder.decode(z.slice(0, i, i + 1), decode, labels.defined() ? labels.slice(0, i, i + 1) : torch::Tensor())
                 .clamp(-1, ldm.output_top);
    // MONAI's arrays are (x, y, z): meddiff's volumes are [D, H, W] = (z, y, x)
    vols.push_back(ldm.network_xyz ? v.permute({0, 1, 4, 3, 2}).contiguous() : v);
  }
  return torch::cat(vols);  // [B, C, D, H, W]
}

}  // namespace meddiff
