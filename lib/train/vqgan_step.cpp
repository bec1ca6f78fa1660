#include "train/vqgan_step.h"

#include "pipeline/device.h"
#include "train/grad_sync.h"

#include <cmath>

namespace meddiff {
namespace {

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const VQGANTrainParams& t, std::vector<torch::Tensor> params) {
  if (t.optimizer == "adamw")
    return std::make_unique<torch::optim::AdamW>(
        params, torch::optim::AdamWOptions(t.lr).betas({t.betas[0], t.betas[1]}).weight_decay(t.weight_decay));
  return std::make_unique<torch::optim::Adam>(
      params, torch::optim::AdamOptions(t.lr).betas({t.betas[0], t.betas[1]}).weight_decay(t.weight_decay));
}

// One slice per sample along `axis` (0 = D) of [B, C, D, H, W] -> [B, C, *, *].
torch::Tensor select_slices(const torch::Tensor& x, const std::vector<int64_t>& index, int64_t axis) {
  std::vector<torch::Tensor> out;
  for (int64_t b = 0; b < x.size(0); ++b) out.push_back(x[b].select(1 + axis, index[static_cast<size_t>(b)]));
  return torch::stack(out);  // [B, C, ., .]
}

torch::Tensor feature_matching(const std::vector<torch::Tensor>& fake, const std::vector<torch::Tensor>& real) {
  torch::Tensor l = torch::zeros({}, fake.front().options());
  for (size_t i = 0; i < fake.size(); ++i) l = l + torch::l1_loss(fake[i], real[i].detach());
  return l / static_cast<double>(fake.size());
}

void set_requires_grad(const std::vector<torch::Tensor>& params, bool on) {
  for (auto p : params) p.requires_grad_(on);
}

}  // namespace

VQGANStepper::VQGANStepper(const RunConfig& c, const torch::Device& d) : cfg(c), device(d) {
  const auto& t = cfg.vqgan_train;
  bf16 = use_bf16(t.precision, device);
  torch::manual_seed(static_cast<uint64_t>(t.seed));
  const int64_t C = cfg.data.image_channels();
  model = make_stage1_model(cfg, C);
  disc2d = PatchDiscriminator(2, C, cfg.vqgan.disc_channels, cfg.vqgan.disc_layers, cfg.vqgan.disc_norm);
  disc3d = PatchDiscriminator(3, C, cfg.vqgan.disc_channels, cfg.vqgan.disc_layers, cfg.vqgan.disc_norm);
  model->module().to(device);
  disc2d->to(device);
  disc3d->to(device);
  gen_params = model->module().parameters();
  disc_params = disc2d->parameters();
  for (const auto& p : disc3d->parameters()) disc_params.push_back(p);
  opt_g = make_optimizer(t, gen_params);
  opt_d = make_optimizer(t, disc_params);
  if (t.perceptual_weight > 0) perceptual = std::make_unique<PerceptualLoss>(t.perceptual_model, device);
  model->module().train();
  disc2d->train();
  disc3d->train();
}

void VQGANStepper::set_collectives(Collectives* c) {
  comm = c;
  model->set_collectives(c);
  disc2d->set_collectives(c);
  disc3d->set_collectives(c);
  if (c) {
    broadcast_state(*c, model->module());
    broadcast_state(*c, *disc2d);
    broadcast_state(*c, *disc3d);
  }
}

std::vector<torch::Tensor> VQGANStepper::state() const {
  auto v = state_tensors(model->module());
  for (const auto& d : {state_tensors(*disc2d), state_tensors(*disc3d)}) v.insert(v.end(), d.begin(), d.end());
  return v;
}

std::vector<torch::Tensor> VQGANStepper::codebook() const { return model->codebook(); }

torch::Tensor reconstruction_l1(const torch::Tensor& rec, const torch::Tensor& x, const torch::Tensor& seg, double balance,
                                int64_t num_labels) {
  auto err = (rec - x).abs();  // [B, C, D, H, W]
  auto plain = err.mean();
  if (balance <= 0 || !seg.defined()) return plain;
  // per label: the mean error over its voxels in the batch; the labels present weigh alike
  auto e = err.mean(1).flatten();  // the channels' mean per voxel
  auto s = seg.flatten();
  const int64_t K = num_labels > 0 ? num_labels : s.max().item<int64_t>() + 1;  // given: no device-to-host read per step
  auto sums = torch::zeros({K}, e.options()).index_add_(0, s, e);
  auto counts = torch::bincount(s, {}, K).to(e.dtype());
  auto present = counts > 0;
  auto balanced = (sums.masked_select(present) / counts.masked_select(present)).mean();
  return (1 - balance) * plain + balance * balanced;
}

double stage1_lr(const VQGANTrainParams& t, int64_t step) {
  const auto n = static_cast<int64_t>(std::llround(t.lr_decay * static_cast<double>(t.steps)));
  const int64_t start = t.steps - n;
  if (n <= 0 || step < start) return t.lr;
  return t.lr * 0.5 * (1 + std::cos(M_PI * static_cast<double>(step - start) / static_cast<double>(n)));
}

VQGANStepStats VQGANStepper::step(int64_t step, const std::function<Batch(int64_t)>& next_batch) {
  const auto& t = cfg.vqgan_train;
  const bool gan = step >= t.gan_start;
  const double lr = stage1_lr(t, step);
  for (auto* opt : {opt_g.get(), opt_d.get()})
    for (auto& group : opt->param_groups()) group.options().set_lr(lr);
  const double scale = 1.0 / static_cast<double>(t.grad_accum);
  opt_g->zero_grad();
  opt_d->zero_grad();
  // Scalars summed over the micro-batches on the device; read once at the end.
  auto zero = torch::zeros({}, torch::TensorOptions().device(device));
  torch::Tensor s_loss = zero, s_l1 = zero, s_commit = zero, s_perp = zero, s_usage = zero, s_restart = zero, s_adv = zero,
                s_fm = zero, s_perc = zero, s_d = zero;
  for (int64_t micro = 0; micro < t.grad_accum; ++micro) {
    Batch batch = next_batch(micro);
    auto x = batch.x.to(device);  // [B, C, D, H, W]
    const int64_t draw = step * t.grad_accum + micro;
    auto gen = at::make_generator<at::CPUGeneratorImpl>(step_seed(static_cast<uint64_t>(t.seed), draw, 1));
    std::vector<int64_t> slice_idx;  // per sample, from its index in the global batch
    for (int64_t b = 0; b < x.size(0); ++b)
      slice_idx.push_back(static_cast<int64_t>(sample_seed(static_cast<uint64_t>(t.seed), draw, 1, batch.first + b) %
                                               static_cast<uint64_t>(x.size(2 + t.slice_axis))));
    torch::Tensor loss_g, rec, real2d, fake2d;
    Stage1Forward out;
    set_requires_grad(disc_params, false);  // the generator's adversarial terms train the generator only
    {
      AutocastGuard ac(bf16);
      auto seg = batch.seg.defined() ? batch.seg.to(device) : torch::Tensor();
      out = model->forward(x, gen, seg);
      rec = out.reconstruction.to(torch::kFloat);
      auto l1 = reconstruction_l1(rec, x, seg, t.label_balance, num_labels) * t.l1_weight;
      loss_g = l1 + out.regulariser.to(torch::kFloat);
      s_l1 = s_l1 + l1.detach();
      real2d = select_slices(x, slice_idx, t.slice_axis);
      fake2d = select_slices(rec, slice_idx, t.slice_axis);
      if (perceptual) {
        // the 2-D network sees one grey slice at a time: channels folded into the batch
        auto grey = [](const torch::Tensor& s) { return s.reshape({-1, 1, s.size(2), s.size(3)}); };
        auto perc = (*perceptual)(grey(real2d), grey(fake2d)) * t.perceptual_weight;
        loss_g = loss_g + perc;
        s_perc = s_perc + perc.detach();
      }
      if (gan) {
        auto [logit2d, feat2d] = disc2d->forward(fake2d);
        auto [logit3d, feat3d] = disc3d->forward(rec);
        auto adv = -logit2d.mean() * t.image_gan_weight - logit3d.mean() * t.video_gan_weight;
        std::vector<torch::Tensor> rf2d, rf3d;
        {
          torch::NoGradGuard ng;
          rf2d = disc2d->forward(real2d).second;
          rf3d = disc3d->forward(x).second;
        }
        auto fm = (feature_matching(feat2d, rf2d) * t.image_gan_weight + feature_matching(feat3d, rf3d) * t.video_gan_weight) *
                  t.feature_matching_weight;
        loss_g = loss_g + adv + fm;
        s_adv = s_adv + adv.detach();
        s_fm = s_fm + fm.detach();
      }
    }
    (loss_g * scale).backward();
    set_requires_grad(disc_params, true);
    s_loss = s_loss + loss_g.detach();
    s_commit = s_commit + out.regulariser.detach().to(torch::kFloat);
    s_perp = s_perp + out.perplexity.to(torch::kFloat);
    s_usage = s_usage + out.usage.to(torch::kFloat);
    s_restart = s_restart + out.restarted;
    if (gan) {
      // The discriminators judge this micro-batch's reconstruction (detached), as the reference does.
      AutocastGuard ac(bf16);
      // Hinge loss (Lim & Ye 2017): mean(relu(1 - D(real))) + mean(relu(1 + D(fake)))
      auto hinge = [](const torch::Tensor& r, const torch::Tensor& f) {
        return 0.5 * (torch::relu(1 - r).mean() + torch::relu(1 + f).mean());
      };
      auto loss_d = hinge(disc2d->forward(real2d).first, disc2d->forward(fake2d.detach()).first) * t.image_gan_weight +
                    hinge(disc3d->forward(x).first, disc3d->forward(rec.detach()).first) * t.video_gan_weight;
      (loss_d.to(torch::kFloat) * scale).backward();
      s_d = s_d + loss_d.detach().to(torch::kFloat);
    }
  }
  auto sums = torch::stack({s_loss, s_l1, s_commit, s_perp, s_usage, s_restart, s_adv, s_fm, s_perc, s_d});
  if (comm && comm->world_size() > 1) {
    // The mean over the ranks: the same numbers (and the same NaN decision) on every rank.
    std::vector<torch::Tensor> v{sums};
    comm->all_reduce_sum(v);
    sums = v[0] / static_cast<double>(comm->world_size());
    average_gradients(*comm, gen_params);
    if (gan) average_gradients(*comm, disc_params);
  }
  auto v = sums.to(torch::kCPU, torch::kDouble) * scale;  // the one read from the device per step
  auto a = v.accessor<double, 1>();
  VQGANStepStats st{a[0], a[1], a[2], a[3], a[4], a[5] / scale, a[6], a[7], a[8], a[9], gan, true};
  st.finite = std::isfinite(st.loss) && std::isfinite(st.d_loss);
  if (!st.finite) {
    opt_g->zero_grad();
    opt_d->zero_grad();
    return st;
  }
  if (t.grad_clip > 0) torch::nn::utils::clip_grad_norm_(gen_params, t.grad_clip);
  opt_g->step();
  if (gan) {
    if (t.grad_clip > 0) torch::nn::utils::clip_grad_norm_(disc_params, t.grad_clip);
    opt_d->step();
  }
  return st;
}

}  // namespace meddiff
