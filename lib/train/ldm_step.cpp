#include "train/ldm_step.h"

#include "core/error.h"
#include "diffusion/rectified_flow.h"
#include "pipeline/device.h"
#include "train/ema.h"
#include "train/grad_sync.h"

#include <cmath>

namespace meddiff {

SampleDraws draw_sample(uint64_t seed, int64_t draw, int64_t index, at::IntArrayRef shape, bool rflow, int64_t timesteps,
                        double class_dropout, double label_dropout) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(sample_seed(seed, draw, 2, index));
  SampleDraws d;
  d.t = rflow ? torch::rand({1}, gen, torch::kDouble) : torch::randint(0, timesteps, {1}, gen, torch::kLong);
  d.noise = torch::randn(shape, gen);
  const double u = torch::rand({1}, gen, torch::kDouble).item<double>();
  d.drop_class = u < class_dropout;
  d.drop_labels = u < label_dropout;
  return d;
}

torch::Tensor diffusion_loss(const torch::Tensor& out, const torch::Tensor& target, const std::string& kind,
                             const torch::Tensor& fractions, double balance) {
  auto err = kind == "l1" ? (out - target).abs() : (out - target).square();  // [B, C, d, h, w]
  auto plain = err.mean();
  if (balance <= 0 || !fractions.defined()) return plain;
  auto e = err.mean(1, /*keepdim=*/true);                     // the channels' mean per latent voxel
  auto w = fractions.to(e.dtype());                           // [B, L, d, h, w]
  const std::vector<int64_t> all_but_label{0, 2, 3, 4};
  auto mass = w.sum(all_but_label);                           // [L]: how much of the batch each label covers
  auto per_label = (w * e).sum(all_but_label) / mass.clamp_min(1e-12);
  auto present = (mass > 0).to(e.dtype());
  auto n_present = present.sum();
  auto balanced = (per_label * present).sum() / n_present.clamp_min(1.0);
  // no label in the batch (every map dropped or absent): the plain mean, without reading the device
  return torch::where(n_present > 0, (1 - balance) * plain + balance * balanced, plain);
}

double ldm_lr(const LDMTrainParams& t, int64_t step) {
  return t.lr * std::min(1.0, static_cast<double>(step + 1) / static_cast<double>(std::max<int64_t>(1, t.warmup)));
}

LDMStepper::LDMStepper(const RunConfig& c, int64_t channels, int64_t n_classes, const torch::Device& d, const LabelCondition& lc)
    : cfg(c), device(d), num_classes(n_classes), labels(lc) {
  const auto& t = cfg.ldm_train;
  bf16 = use_bf16(t.precision, device);
  torch::manual_seed(static_cast<uint64_t>(t.seed));
  model = UNet3d(cfg.ldm.unet, channels, num_classes, labels.channels());
  torch::manual_seed(static_cast<uint64_t>(t.seed));
  ema = UNet3d(cfg.ldm.unet, channels, num_classes, labels.channels());
  set_checkpointing(*model, t.checkpointing);
  model->to(device);
  ema->to(device);
  ema_update(*ema, *model, 0.0);
  ema->eval();
  model->train();
  opt = std::make_unique<torch::optim::AdamW>(
      model->parameters(), torch::optim::AdamWOptions(t.lr).betas({t.betas[0], t.betas[1]}).weight_decay(t.weight_decay));
  schedule = make_schedule(cfg.ldm.schedule, cfg.ldm.timesteps, cfg.ldm.cosine_s);
  prediction = parse_prediction(cfg.ldm.prediction);
  alphas_cumprod = schedule.alphas_cumprod.to(torch::kFloat).to(device);
}

void LDMStepper::set_collectives(Collectives* c) {
  comm = c;
  if (c) {
    broadcast_state(*c, *model);
    broadcast_state(*c, *ema);
  }
}

std::vector<torch::Tensor> LDMStepper::state() const {
  auto v = state_tensors(*model);
  auto e = state_tensors(*ema);
  v.insert(v.end(), e.begin(), e.end());
  return v;
}

LDMStepStats LDMStepper::step(int64_t step, const std::function<Batch(int64_t)>& next_batch) {
  const auto& t = cfg.ldm_train;
  const double scale = 1.0 / static_cast<double>(t.grad_accum);
  LDMStepStats st;
  st.lr = ldm_lr(t, step);
  for (auto& group : opt->param_groups()) static_cast<torch::optim::AdamWOptions&>(group.options()).lr(st.lr);
  opt->zero_grad();
  auto loss_sum = torch::zeros({}, torch::TensorOptions().device(device));
  for (int64_t micro = 0; micro < t.grad_accum; ++micro) {
    Batch b = next_batch(micro);
    const int64_t B = b.x.size(0);
    const int64_t draw = step * t.grad_accum + micro;
    // Per sample, from its index in the global batch (draw_sample).
    std::vector<torch::Tensor> ts, noise;
    std::vector<uint8_t> drop_class, keep_labels;
    for (int64_t j = 0; j < B; ++j) {
      auto d = draw_sample(static_cast<uint64_t>(t.seed), draw, b.first + j, b.x[j].sizes(), cfg.ldm.rflow(), schedule.T,
                           cfg.ldm.unet.class_dropout, cfg.ldm.unet.label_dropout);
      ts.push_back(d.t);
      noise.push_back(d.noise);
      drop_class.push_back(d.drop_class);
      keep_labels.push_back(!d.drop_labels);
    }
    auto tt = torch::cat(ts).to(device);
    auto eps = torch::stack(noise).to(device);
    auto drop = torch::tensor(std::vector<int64_t>(drop_class.begin(), drop_class.end())).to(torch::kBool);
    auto cls = torch::where(drop, torch::full({B}, num_classes, torch::kLong), b.labels).to(device);
    torch::Tensor cond, fractions;  // the condition the network sees; the label fractions the loss weighs by
    if (labels.channels() > 0) {
      if (!b.seg.defined()) fail("the model is conditioned on label maps but the batch has none");
      auto full = labels(b.seg.to(device));
      fractions = labels.fractions(full);
      // label dropout: the null condition (zeros) for classifier-free guidance on the labels
      auto keep = torch::tensor(std::vector<float>(keep_labels.begin(), keep_labels.end())).view({B, 1, 1, 1, 1});
      cond = full * keep.to(device);
    }
    auto x0 = b.x.to(device);
    torch::Tensor x_t, target, t_in;
    if (cfg.ldm.rflow()) {
      // uniform times, shifted; the network sees 1000 t
      const double shift = resolved_rflow_shift(cfg.ldm, {x0.size(1), x0.size(2), x0.size(3), x0.size(4)});
      auto tf = rflow_shift_time(tt.to(torch::kDouble), shift).to(torch::kFloat);
      x_t = rflow_interpolate(x0, eps, tf);
      target = rflow_velocity_target(x0, eps);
      t_in = tf * 1000.0;
    } else {
      auto ab = alphas_cumprod.index_select(0, tt);
      x_t = q_sample(x0, eps, ab);
      target = prediction_target(prediction, x0, eps, ab);
      t_in = tt;
    }
    torch::Tensor loss;
    {
      AutocastGuard ac(bf16);
      auto out = model->forward(x_t, t_in, num_classes > 0 ? cls : torch::Tensor(), cond).to(torch::kFloat);
      loss = diffusion_loss(out, target, cfg.ldm.loss, fractions, t.label_balance);
    }
    (loss * scale).backward();
    loss_sum = loss_sum + loss.detach();
  }
  if (comm && comm->world_size() > 1) {
    std::vector<torch::Tensor> v{loss_sum};
    comm->all_reduce_sum(v);
    loss_sum = v[0] / static_cast<double>(comm->world_size());
    average_gradients(*comm, model->parameters());
  }
  st.loss = loss_sum.item<double>() * scale;  // the one read from the device per step
  st.finite = std::isfinite(st.loss);
  if (!st.finite) {
    opt->zero_grad();
    return st;
  }
  if (t.grad_clip > 0) torch::nn::utils::clip_grad_norm_(model->parameters(), t.grad_clip);
  opt->step();
  ema_update(*ema, *model, step + 1 < t.ema_start ? 0.0 : t.ema_decay);
  return st;
}

}  // namespace meddiff
