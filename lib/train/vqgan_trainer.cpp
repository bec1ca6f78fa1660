#include "train/vqgan_trainer.h"

#include "core/checkpoint.h"
#include "core/fs.h"
#include "core/log.h"
#include "core/progress.h"
#include "data/batches.h"
#include "data/metrics.h"
#include "data/preview.h"
#include "train/device.h"
#include "train/perceptual.h"
#include "train/run_folder.h"

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

// One random slice per sample along `axis` (0 = D) of [B, 1, D, H, W] -> [B, 1, *, *].
torch::Tensor random_slices(const torch::Tensor& x, const torch::Tensor& index, int64_t axis) {
  std::vector<torch::Tensor> out;
  for (int64_t b = 0; b < x.size(0); ++b) out.push_back(x[b].select(1 + axis, index[b].item<int64_t>()));
  return torch::stack(out);  // [B, 1, ., .]
}

torch::Tensor feature_matching(const std::vector<torch::Tensor>& fake, const std::vector<torch::Tensor>& real) {
  torch::Tensor l = torch::zeros({}, fake.front().options());
  for (size_t i = 0; i < fake.size(); ++i) l = l + torch::l1_loss(fake[i], real[i].detach());
  return l / static_cast<double>(fake.size());
}

double clip(const std::vector<torch::Tensor>& params, double max_norm) {
  if (max_norm <= 0) return 0;
  return torch::nn::utils::clip_grad_norm_(params, max_norm);
}

struct Models {
  VQGAN vqgan{nullptr};
  PatchDiscriminator disc2d{nullptr}, disc3d{nullptr};
};

Models build_models(const RunConfig& cfg) {
  torch::manual_seed(static_cast<uint64_t>(cfg.vqgan_train.seed));
  Models m;
  m.vqgan = VQGAN(cfg.vqgan);
  m.disc2d = PatchDiscriminator(2, 1, cfg.vqgan.disc_channels, cfg.vqgan.disc_layers, cfg.vqgan.disc_norm);
  m.disc3d = PatchDiscriminator(3, 1, cfg.vqgan.disc_channels, cfg.vqgan.disc_layers, cfg.vqgan.disc_norm);
  return m;
}

torch::Tensor mean_of(const std::vector<TrainingVolume>& v) {
  auto m = torch::zeros_like(v.front().x);
  for (const auto& c : v) m += c.x;
  return m / static_cast<double>(v.size());
}

}  // namespace

ValidationResult evaluate_reconstruction(VQGAN& model, const std::vector<TrainingVolume>& val,
                                         const torch::Tensor& mean_volume, const torch::Device& device) {
  torch::NoGradGuard ng;
  bool was_training = model->is_training();
  model->eval();
  ValidationResult r;
  for (const auto& c : val) {
    auto x = c.x.unsqueeze(0).to(device);
    auto rec = model->forward(x).reconstruction.clamp(-1, 1).to(torch::kCPU, torch::kFloat);
    r.psnr += psnr(c.x.unsqueeze(0), rec);
    r.ssim += ssim3d(c.x.unsqueeze(0), rec);
    r.psnr_mean_baseline += psnr(c.x, mean_volume);
  }
  double n = static_cast<double>(std::max<size_t>(1, val.size()));
  r.psnr /= n;
  r.ssim /= n;
  r.psnr_mean_baseline /= n;
  model->train(was_training);
  return r;
}

double estimate_vqgan_memory_bytes(const RunConfig& cfg) {
  // Activations: each encoder/decoder stage keeps ~(2 + 4 * res blocks) tensors of its size for backward.
  const auto& p = cfg.vqgan;
  double voxels = static_cast<double>(cfg.data.shape[0] * cfg.data.shape[1] * cfg.data.shape[2]);
  double act = 3.0 * p.n_hiddens * voxels;  // stem and last conv at full resolution
  double v = voxels;
  int64_t i = 0;
  for (const auto& s : stage_strides(p)) {
    v /= static_cast<double>(s[0] * s[1] * s[2]);
    double ch = static_cast<double>(p.n_hiddens << (i + 1));
    act += ch * v * (2 + 4 * p.n_res_blocks) + ch * v * (2 + 4 * (p.n_res_blocks + 1)) + ch * 2 * v * 2;
    ++i;
  }
  act += 2.0 * p.disc_channels * voxels / 8 * 3;  // 3-D discriminator, first layers dominate
  Models m = build_models(cfg);
  double params = 0;
  for (const auto& t : m.vqgan->parameters()) params += static_cast<double>(t.numel());
  for (const auto& t : m.disc2d->parameters()) params += static_cast<double>(t.numel());
  for (const auto& t : m.disc3d->parameters()) params += static_cast<double>(t.numel());
  return 4.0 * (params * 4 + act * static_cast<double>(cfg.vqgan_train.batch_size) * 2);
}

LoadedVQGAN load_vqgan(const std::filesystem::path& path, const torch::Device& device) {
  Checkpoint c = load_checkpoint(path);
  if (c.kind != "vqgan") fail("{}: is a '{}' checkpoint, not a VQ-GAN", path.string(), c.kind);
  LoadedVQGAN out;
  out.config = config_from_json<RunConfig>(c.config);
  out.model = VQGAN(out.config.vqgan);
  c.load_module("model", *out.model);
  out.model->to(device);
  out.model->eval();
  out.step = c.step;
  return out;
}

VQGANTrainResult train_vqgan(const RunConfig& cfg, const std::vector<TrainingVolume>& train,
                             const std::vector<TrainingVolume>& val, const std::filesystem::path& out_dir, bool resume,
                             const TrainHooks& hooks) {
  const auto& t = cfg.vqgan_train;
  if (train.empty()) fail("no training volumes");
  RunFolder folder(out_dir, "train-vqgan", resume);
  torch::Device device = choose_device(t.device);
  bool bf16 = use_bf16(t.precision, device);
  std::vector<TrainingVolume> all_cases = train;
  all_cases.insert(all_cases.end(), val.begin(), val.end());
  const nlohmann::json data_fp = data_fingerprint(cfg.data, all_cases);
  Models m = build_models(cfg);
  m.vqgan->to(device);
  m.disc2d->to(device);
  m.disc3d->to(device);
  auto gen_params = m.vqgan->parameters();
  auto disc_params = m.disc2d->parameters();
  for (const auto& p : m.disc3d->parameters()) disc_params.push_back(p);
  auto opt_g = make_optimizer(t, gen_params);
  auto opt_d = make_optimizer(t, disc_params);
  int64_t start = 0;
  fs::path last = folder.last();
  if (resume) {
    Checkpoint c = load_checkpoint(last);
    if (c.kind != "vqgan") fail("{}: is a '{}' checkpoint, not a VQ-GAN", last.string(), c.kind);
    std::string diff = data_difference(c.extra.value("data", nlohmann::json()), data_fp);
    if (!diff.empty())
      fail("{}: was trained on other data ({}); resume with the same data or start a new --out", last.string(), diff);
    c.load_module("model", *m.vqgan);
    c.load_module("disc2d", *m.disc2d);
    c.load_module("disc3d", *m.disc3d);
    c.load_optimizer("generator", *opt_g, device);
    c.load_optimizer("discriminator", *opt_d, device);
    start = c.step;
    log_info("resuming {} at step {}", last.string(), start);
  }
  m.vqgan->train();
  m.disc2d->train();
  m.disc3d->train();
  write_text_atomically(out_dir / "config.json", config_to_json(cfg).dump(2) + "\n");
  auto metrics_log = folder.metrics(start, resume);
  JsonlWriter& metrics = *metrics_log;
  std::unique_ptr<PerceptualLoss> perceptual;
  if (t.perceptual_weight > 0) perceptual = std::make_unique<PerceptualLoss>(t.perceptual_model, device);

  auto save = [&](int64_t step) {
    Checkpoint c;
    c.kind = "vqgan";
    c.step = step;
    c.config = config_to_json(cfg);
    c.extra = {{"data", data_fp}};
    c.put_module("model", *m.vqgan);
    c.put_module("disc2d", *m.disc2d);
    c.put_module("disc3d", *m.disc3d);
    c.put_optimizer("generator", *opt_g);
    c.put_optimizer("discriminator", *opt_d);
    if (step % t.ckpt_every == 0) save_checkpoint(c, out_dir / fmt::format("step-{:07d}.pt", step));
    save_checkpoint(c, last);
  };
  torch::Tensor mean_volume = mean_of(train);
  VQGANTrainResult result;
  auto validate = [&](int64_t step) {
    if (val.empty()) return;
    ValidationResult r = evaluate_reconstruction(m.vqgan, val, mean_volume, device);
    r.step = step;
    result.validations.push_back(r);
    metrics.write({{"step", step}, {"val_psnr", r.psnr}, {"val_ssim", r.ssim}, {"val_psnr_mean_baseline", r.psnr_mean_baseline}});
    log_info("step {} validation: PSNR {:.2f} dB (mean-volume baseline {:.2f} dB), SSIM {:.4f}", step, r.psnr,
             r.psnr_mean_baseline, r.ssim);
    if (hooks.write_png) {
      torch::NoGradGuard ng;
      m.vqgan->eval();
      const auto& c = val.front();
      auto rec = m.vqgan->forward(c.x.unsqueeze(0).to(device)).reconstruction.clamp(-1, 1).to(torch::kCPU, torch::kFloat)[0][0];
      m.vqgan->train();
      auto x = c.x[0];
      auto panel = vconcat({orthogonal_panel(x, c.geometry, {-1, 1}), orthogonal_panel(rec, c.geometry, {-1, 1}),
                            orthogonal_panel((rec - x).abs(), c.geometry, {0, 1})});
      hooks.write_png(out_dir / "previews" / fmt::format("step-{:07d}.png", step), panel);
    }
  };

  Progress progress("train-vqgan", t.steps, start);
  BatchPrefetcher batches(train, t.batch_size, static_cast<uint64_t>(cfg.data.seed), cfg.data.flip, start, t.steps);
  int64_t bad_in_row = 0;
  auto t0 = std::chrono::steady_clock::now();
  for (int64_t step = start; step < t.steps; ++step) {
    Batch batch = batches.next();
    auto x = batch.x.to(device);  // [B, 1, D, H, W]
    auto gen = at::make_generator<at::CPUGeneratorImpl>(step_seed(static_cast<uint64_t>(t.seed), step, 1));
    bool gan = step >= t.gan_start;
    int64_t axis_len = x.size(2 + t.slice_axis);
    auto slice_idx = torch::randint(0, axis_len, {x.size(0)}, gen, torch::kLong);

    torch::Tensor loss_g, l1, adv, fm, perc, rec, real2d, fake2d;
    VQOutput vq;
    {
      AutocastGuard ac(bf16);
      auto out = m.vqgan->forward(x, gen);
      vq = out.vq;
      rec = out.reconstruction.to(torch::kFloat);
      l1 = torch::l1_loss(rec, x) * t.l1_weight;
      loss_g = l1 + vq.commitment;
      real2d = random_slices(x, slice_idx, t.slice_axis);
      fake2d = random_slices(rec, slice_idx, t.slice_axis);
      if (perceptual) {
        perc = (*perceptual)(real2d, fake2d) * t.perceptual_weight;
        loss_g = loss_g + perc;
      }
      if (gan) {
        auto [logit2d, feat2d] = m.disc2d->forward(fake2d);
        auto [logit3d, feat3d] = m.disc3d->forward(rec);
        adv = -logit2d.mean() * t.image_gan_weight - logit3d.mean() * t.video_gan_weight;
        std::vector<torch::Tensor> rf2d, rf3d;
        {
          torch::NoGradGuard ng;
          rf2d = m.disc2d->forward(real2d).second;
          rf3d = m.disc3d->forward(x).second;
        }
        fm = (feature_matching(feat2d, rf2d) * t.image_gan_weight + feature_matching(feat3d, rf3d) * t.video_gan_weight) *
             t.feature_matching_weight;
        loss_g = loss_g + adv + fm;
      }
    }
    double lg = loss_g.item<double>();
    double ld = 0;
    bool finite = std::isfinite(lg);
    if (finite) {
      opt_g->zero_grad();
      loss_g.backward();
      clip(gen_params, t.grad_clip);
      opt_g->step();
      if (gan) {
        // The discriminators judge this step's reconstruction (detached), as the reference does.
        AutocastGuard ac(bf16);
        // Hinge loss (Lim & Ye 2017): mean(relu(1 - D(real))) + mean(relu(1 + D(fake)))
        auto hinge = [](const torch::Tensor& r, const torch::Tensor& f) {
          return 0.5 * (torch::relu(1 - r).mean() + torch::relu(1 + f).mean());
        };
        auto loss_d = hinge(m.disc2d->forward(real2d).first, m.disc2d->forward(fake2d.detach()).first) * t.image_gan_weight +
                      hinge(m.disc3d->forward(x).first, m.disc3d->forward(rec.detach()).first) * t.video_gan_weight;
        ld = loss_d.item<double>();
        if (std::isfinite(ld)) {
          opt_d->zero_grad();
          loss_d.backward();
          clip(disc_params, t.grad_clip);
          opt_d->step();
        } else {
          finite = false;
        }
      }
    }
    if (!finite) {
      ++bad_in_row;
      log_warn("step {}: non-finite loss (generator {}, discriminator {}); step skipped", step + 1, lg, ld);
      opt_g->zero_grad();
      opt_d->zero_grad();
      if (bad_in_row >= t.nan_abort)
        fail("training diverged: {} non-finite losses in a row at step {} (lower vqgan_train.lr or use precision fp32)",
             bad_in_row, step + 1);
    } else {
      bad_in_row = 0;
    }
    int64_t done = step + 1;
    std::string fields = fmt::format("loss {:.4f} l1 {:.4f} perplexity {:.1f} codes {:.1f}%", lg, l1.item<double>(),
                                     vq.perplexity, 100 * vq.usage);
    progress.update(done, fields);
    if (done % t.log_every == 0 || done == t.steps) {
      json rec = {{"step", done}, {"loss", lg}, {"l1", l1.item<double>()}, {"commitment", vq.commitment.item<double>()},
                  {"perplexity", vq.perplexity}, {"code_usage", vq.usage}, {"codes_restarted", vq.restarted},
                  {"it_per_s", progress.rate()}, {"gan", gan}};
      if (adv.defined()) rec["g_adv"] = adv.item<double>();
      if (fm.defined()) rec["feature_matching"] = fm.item<double>();
      if (perc.defined()) rec["perceptual"] = perc.item<double>();
      if (gan) rec["d_loss"] = ld;
      metrics.write(rec);
    }
    if (done % t.val_every == 0 || done == t.steps) validate(done);
    if (done % t.ckpt_every == 0 || done == t.steps) save(done);
  }
  progress.finish();
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  result.final_step = t.steps;
  result.seconds_per_step = t.steps > start ? secs / static_cast<double>(t.steps - start) : 0;
  result.peak_rss_mib = peak_rss_mib();
  return result;
}

}  // namespace meddiff
