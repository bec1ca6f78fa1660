#include "train/imported_ldm_trainer.h"

#include "core/checkpoint.h"
#include "core/fs.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/sha256.h"
#include "data/batches.h"
#include "data/ras_axes.h"
#include "pipeline/device.h"
#include "pipeline/imported_ldm.h"
#include "train/grad_sync.h"
#include "train/ldm_step.h"
#include "train/run_folder.h"

#include <cmath>

namespace meddiff {
namespace fs = std::filesystem;

torch::Tensor maisi_spacing_input(const Geometry& g) {
  const RasAxes ras = ras_axes(g);
  std::vector<double> s;
  for (size_t a = 0; a < 3; ++a) s.push_back(g.spacing[static_cast<size_t>(2 - ras.source_dim[a])]);  // [D, H, W] dim d: spacing of index axis 2 - d
  return torch::tensor(s, torch::kDouble);
}

namespace {

struct Latents {
  torch::Tensor z;        // [N, C, x, y, z] on the CPU, times the scale factor
  torch::Tensor spacing;  // [N, 3] float (maisi_spacing_value), for a spacing input
};

Latents encode_cases(LoadedAutoencoder& vq, const std::vector<TrainingVolume>& train, double scale_factor, const nlohmann::json& recipe,
                     const torch::Device& device) {
  torch::NoGradGuard ng;
  std::vector<torch::Tensor> zs, sp;
  Progress progress("encoding latents", static_cast<int64_t>(train.size()));
  for (size_t i = 0; i < train.size(); ++i) {
    const auto& v = train[i];
    auto x = to_ras_xyz(v.x, ras_axes(v.geometry)).unsqueeze(0).to(device);  // [1, C, X, Y, Z]
    zs.push_back(vq.ae->encode(x, AutoencoderRun{}).to(torch::kCPU, torch::kFloat)[0] * scale_factor);
    if (i > 0 && zs.back().sizes() != zs.front().sizes())
      fail("{}: its latent is [{}] where the first case's is [{}]: the cases must share one grid (data.shape)", v.source,
           fmt::join(zs.back().sizes(), ", "), fmt::join(zs.front().sizes(), ", "));
    sp.push_back(maisi_spacing_value(recipe, maisi_spacing_input(v.geometry)));
    progress.update(static_cast<int64_t>(i) + 1);
  }
  progress.finish();
  return {torch::stack(zs), torch::stack(sp)};
}

}  // namespace

torch::Tensor imported_ldm_loss(const LoadedLDM& l, MonaiUNet& net, const torch::Tensor& x0, const torch::Tensor& noise, const torch::Tensor& u,
                                const MonaiUNetInputs& in, const torch::Tensor& alphas_cumprod) {
  if (l.maisi) {
    const int64_t latent_voxels = x0.size(2) * x0.size(3) * x0.size(4);
    auto ts = maisi_rflow_train_timesteps(*l.maisi, u, latent_voxels).to(x0.device());
    auto velocity = net->forward(maisi_rflow_add_noise(*l.maisi, x0, noise, ts), ts, in);
    return (velocity.to(torch::kFloat) - (x0 - noise)).abs().mean();
  }
  auto tl = u.to(torch::kLong).to(x0.device());
  auto ab = alphas_cumprod.to(x0.device(), torch::kFloat).index_select(0, tl);
  auto pred = net->forward(q_sample(x0, noise, ab), tl, in);
  return (pred.to(torch::kFloat) - prediction_target(l.prediction, x0, noise, ab)).square().mean();
}

LDMTrainResult fine_tune_imported_ldm(const RunConfig& cfg, const ImportedFineTune& init, LoadedAutoencoder& vq,
                                      const std::vector<TrainingVolume>& train, const fs::path& out_dir, RunStart start_mode,
                                      Collectives* comm, std::optional<torch::Device> on) {
  const auto& t = cfg.ldm_train;
  if (train.empty()) fail("no training volumes");
  const bool resume = start_mode == RunStart::Resume;
  const int world = comm ? comm->world_size() : 1, rank = comm ? comm->rank() : 0;
  const bool writer = rank == 0;
  std::optional<RunFolder> folder;
  if (writer) folder.emplace(out_dir, "train-ldm", start_mode);
  if (comm) comm->barrier();
  torch::Device device = on ? *on : choose_device(t.device);

  // The source: its network, recipe and weights (a resume reads its own last.pt instead, which carries the same).
  const fs::path from = resume ? resume_checkpoint(out_dir) : init.init;
  Checkpoint src = load_checkpoint_of_kind(from, "monai-unet", "a U-Net brought in by meddiff import");
  LoadedLDM l = load_imported_ldm(src, from, device);
  auto* den = dynamic_cast<MonaiDenoiser*>(l.net.get());
  if (!den) fail("{}: holds no MONAI U-Net", from.string());
  MonaiUNet net = den->net;
  const bool maisi = l.maisi.has_value();
  const double scale_factor = l.recipe.value("scale_factor", 1.0);
  int64_t cls = -1;  // the class every case takes (MAISI: the modality code)
  if (net->params.num_class_embeds > 0) {
    if (init.modality_class) cls = *init.modality_class;
    else if (cfg.data.modality_enum() == Modality::CT) cls = 1;
    else
      fail("{}: the U-Net takes a modality code; give --modality-class (MAISI's: T1 9, T2 10, FLAIR 11, ...) for these MR cases",
           from.string());
    if (cls < 0 || cls >= net->params.num_class_embeds)
      fail("--modality-class {}: the U-Net knows codes 0..{}", cls, net->params.num_class_embeds - 1);
  } else if (init.modality_class) {
    log_warn("--modality-class {}: the U-Net of {} takes no class; ignored", *init.modality_class, from.string());
  }
  vq.ae->to(device);
  Latents lat = encode_cases(vq, train, scale_factor, l.recipe, device);
  const int64_t N = lat.z.size(0);
  log_info("fine-tuning {} ({} U-Net, {} parameters) on {} case(s): latents [{}], {}", init.init.string(), l.family,
           src.parameter_count("unet"), N, fmt::join(lat.z.sizes().slice(1), ", "),
           maisi ? "MAISI's rectified flow, L1 on the velocity" : fmt::format("{} on its beta schedule, mean squared error", l.recipe.value("scheduler", "ddpm")));

  net->train();
  net->to(device);
  if (comm) broadcast_state(*comm, *net);
  torch::optim::Adam opt(net->parameters(), torch::optim::AdamOptions(t.lr).betas({t.betas[0], t.betas[1]}).weight_decay(t.weight_decay));
  int64_t start = 0;
  if (resume) {
    src.load_optimizer("adam", opt, device);
    start = src.step;
    log_info("resuming {} at step {}", from.string(), start);
  }
  const torch::Tensor alphas = maisi ? torch::Tensor() : l.schedule.alphas_cumprod.to(torch::kFloat).to(device);
  const bool bf16 = use_bf16(t.precision, device);

  // The checkpoint: the source's definition and recipe, the fine-tuned weights; autoencoder.pt beside it.
  Checkpoint out;
  out.kind = "monai-unet";
  out.config = src.config;
  out.extra = src.extra;
  if (!resume) {
    out.extra["fine_tuned_from"] = {{"path", fs::absolute(init.init).string()}, {"sha256", sha256_file(init.init)}};
    out.extra["fine_tuned_on"] = {{"cases", N}, {"data", cfg.data.manifest}, {"modality_class", cls}};
  }
  const fs::path ae_src = from.parent_path() / "autoencoder.pt", ae_dst = out_dir / "autoencoder.pt";
  if (writer && !resume && fs::absolute(ae_src) != fs::absolute(ae_dst))
    write_atomically(ae_dst, [&](const fs::path& tmp) { fs::copy_file(ae_src, tmp, fs::copy_options::overwrite_existing); });
  if (writer) write_text_atomically(out_dir / "config.json", config_to_json(cfg).dump(2) + "\n");
  auto metrics_log = writer ? folder->metrics(start, resume) : std::make_unique<JsonlWriter>();
  auto save = [&](int64_t step) {
    if (comm && world > 1) {
      auto rec = replica_check(*comm, step, state_tensors(*net));
      if (writer) metrics_log->write(rec);
    }
    if (!writer) return;
    out.step = step;
    out.tensors.clear();
    out.put_module("unet", *net);
    out.put_optimizer("adam", opt);
    if (step % t.ckpt_every == 0) save_checkpoint(out, out_dir / fmt::format("step-{:07d}.pt", step));
    save_checkpoint(out, out_dir / "last.pt");
  };

  std::optional<Progress> progress;
  if (writer) progress.emplace(world > 1 ? fmt::format("train-ldm x{}", world) : "train-ldm", t.steps, start);
  const auto seed = static_cast<uint64_t>(t.seed);
  const std::vector<int64_t> sample_shape(lat.z.sizes().begin() + 1, lat.z.sizes().end());
  double last_loss = 0;
  int64_t bad = 0;
  auto t0 = std::chrono::steady_clock::now();
  for (int64_t step = start; step < t.steps; ++step) {
    const double lr = ldm_lr(t, step);
    for (auto& g : opt.param_groups()) static_cast<torch::optim::AdamOptions&>(g.options()).lr(lr);
    opt.zero_grad();
    auto loss_sum = torch::zeros({}, torch::TensorOptions().device(device));
    for (int64_t micro = 0; micro < t.grad_accum; ++micro) {
      const int64_t draw = step * t.grad_accum + micro;
      std::vector<torch::Tensor> x0, noise, u, sp;
      for (int64_t j = 0; j < t.batch_size; ++j) {
        const int64_t slot = rank * t.batch_size + j;  // the sample's index in the global batch
        auto gen = at::make_generator<at::CPUGeneratorImpl>(sample_seed(seed, draw, 7, slot));
        const int64_t i = torch::randint(0, N, {1}, gen).item<int64_t>();
        x0.push_back(lat.z[i]);
        sp.push_back(lat.spacing[i]);
        u.push_back(maisi ? torch::rand({1}, gen) : torch::randint(0, l.schedule.T, {1}, gen).to(torch::kFloat));
        noise.push_back(torch::randn(sample_shape, gen));
      }
      auto xb = torch::stack(x0).to(device), eps = torch::stack(noise).to(device), ub = torch::cat(u);
      MonaiUNetInputs in;
      if (cls >= 0) in.class_labels = torch::full({t.batch_size}, cls, torch::kLong).to(device);
      if (net->params.spacing_input) in.spacing = torch::stack(sp).to(device);
      AutocastGuard ac(bf16);  // the networks' forward (bf16 on CUDA with ldm_train.precision auto), the loss in float32
      torch::Tensor loss = imported_ldm_loss(l, net, xb, eps, ub, in, alphas);
      (loss / static_cast<double>(t.grad_accum)).backward();
      loss_sum = loss_sum + loss.detach();
    }
    if (comm && world > 1) {
      std::vector<torch::Tensor> v{loss_sum};
      comm->all_reduce_sum(v);
      loss_sum = v[0] / static_cast<double>(world);
      average_gradients(*comm, net->parameters());
    }
    const double loss = loss_sum.item<double>() / static_cast<double>(t.grad_accum);
    if (!std::isfinite(loss)) {
      opt.zero_grad();
      log_warn("step {}: non-finite loss; step skipped", step + 1);
      if (++bad >= t.nan_abort) fail("training diverged: {} non-finite losses in a row at step {} (lower ldm_train.lr)", bad, step + 1);
    } else {
      bad = 0;
      last_loss = loss;
      if (t.grad_clip > 0) torch::nn::utils::clip_grad_norm_(net->parameters(), t.grad_clip);
      opt.step();
    }
    const int64_t done = step + 1;
    if (progress) progress->update(done, fmt::format("loss {:.4f} lr {:.2e}", loss, lr));
    if (writer && (done % t.log_every == 0 || done == t.steps))
      metrics_log->write({{"step", done}, {"loss", loss}, {"lr", lr}, {"it_per_s", progress->rate()}});
    if (done % t.ckpt_every == 0 || done == t.steps) save(done);
  }
  if (progress) progress->finish();
  LDMTrainResult r;
  r.final_step = t.steps;
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.seconds_per_step = t.steps > start ? secs / static_cast<double>(t.steps - start) : 0;
  r.peak_rss_mib = peak_rss_mib();
  r.final_loss = last_loss;
  return r;
}

}  // namespace meddiff
