#include "train/vqgan_trainer.h"

#include "core/checkpoint.h"
#include "core/fs.h"
#include "core/log.h"
#include "core/progress.h"
#include "data/batches.h"
#include "data/metrics.h"
#include "data/preview.h"
#include "pipeline/device.h"
#include "train/vqgan_step.h"
#include "train/grad_sync.h"
#include "train/run_folder.h"

#include <algorithm>
#include <cmath>

namespace meddiff {
namespace {

// The mean training volume of the validation's baseline, over at most 16 evenly spaced cases: reading every case
// would bring a whole mapped dataset cache into memory before the first step.
torch::Tensor mean_of(const std::vector<TrainingVolume>& v) {
  const size_t n = std::min<size_t>(v.size(), 16);
  auto m = torch::zeros_like(v.front().x, torch::kFloat);
  for (size_t k = 0; k < n; ++k) m += v[k * v.size() / n].x;  // x may be a float16 view of the dataset cache
  return m / static_cast<double>(n);
}

}  // namespace

ValidationResult evaluate_reconstruction(Stage1Model& model, const std::vector<TrainingVolume>& val,
                                         const torch::Tensor& mean_volume, const torch::Device& device) {
  torch::NoGradGuard ng;
  bool was_training = model.module().is_training();
  model.module().eval();
  ValidationResult r;
  for (const auto& c : val) {
    auto xf = c.x.to(torch::kFloat);  // a float16 view when the cases come from the dataset cache
    auto x = xf.unsqueeze(0).to(device);
    auto seg = c.label.defined() ? c.label.unsqueeze(0).to(device) : torch::Tensor();
    auto rec = model.reconstruct(x, seg).clamp(-1, 1).to(torch::kCPU, torch::kFloat);
    r.psnr += psnr(xf.unsqueeze(0), rec);
    r.ssim += ssim3d(xf.unsqueeze(0), rec);
    r.psnr_mean_baseline += psnr(xf, mean_volume);
  }
  double n = static_cast<double>(std::max<size_t>(1, val.size()));
  r.psnr /= n;
  r.ssim /= n;
  r.psnr_mean_baseline /= n;
  model.module().train(was_training);
  return r;
}

VQGANTrainResult train_vqgan(const RunConfig& cfg, const std::vector<TrainingVolume>& train,
                             const std::vector<TrainingVolume>& val, const std::filesystem::path& out_dir, RunStart start_mode,
                             const TrainHooks& hooks, Collectives* comm, std::optional<torch::Device> on, const Stage1Init* init) {
  const auto& t = cfg.vqgan_train;
  if (train.empty()) fail("no training volumes");
  const int world = comm ? comm->world_size() : 1, rank = comm ? comm->rank() : 0;
  const bool writer = rank == 0;
  // Rank 0 checks and locks the folder; the others wait for it, then read the same last.pt.
  std::optional<RunFolder> folder;
  const bool resume = start_mode == RunStart::Resume;
  if (writer) folder.emplace(out_dir, "train-vqgan", start_mode);
  if (comm) comm->barrier();
  torch::Device device = on ? *on : choose_device(t.device);
  std::vector<TrainingVolume> all_cases = train;
  all_cases.insert(all_cases.end(), val.begin(), val.end());
  const nlohmann::json data_fp = data_fingerprint(cfg.data, all_cases);
  if (t.label_balance > 0 && writer) {
    const auto with_labels = std::count_if(train.begin(), train.end(), [](const TrainingVolume& v) { return v.label.defined(); });
    if (with_labels < static_cast<std::ptrdiff_t>(train.size()))
      log_warn("vqgan_train.label_balance {} applies to batches whose cases all have label maps; {} of {} training cases have "
               "one, the other batches take plain L1", t.label_balance, with_labels, train.size());
  }
  VQGANStepper st(cfg, device);
  // The label maps travel with the batches only when the loss or the decoder reads them.
  const int64_t decoder_labels = st.model->decoder_labels();
  std::vector<TrainingVolume> batch_cases = train;
  for (auto& c : batch_cases) {
    if (t.label_balance <= 0 && decoder_labels == 0) c.label = torch::Tensor();
    else if (c.label.defined())  // known from the dataset cache: its label maps are not read here
      st.num_labels = std::max(st.num_labels, c.label_count >= 0 ? c.label_count : c.label.max().item<int64_t>() + 1);
    else if (decoder_labels > 0)
      fail("{}: has no label map, but vqgan.decoder_labels = {} decodes every training case with its label map", c.source,
           decoder_labels);
  }
  if (decoder_labels > 0 && st.num_labels > decoder_labels)
    fail("config: 'vqgan.decoder_labels' is {}, but the training label maps hold labels up to {}: set it to {}", decoder_labels,
         st.num_labels - 1, st.num_labels);
  int64_t start = 0;
  fs::path last = out_dir / "last.pt";
  if (resume) {
    const fs::path from = resume_checkpoint(out_dir);
    Checkpoint c = load_checkpoint_of_kind(from, st.model->checkpoint_kind(), cfg.autoencoder.is_kl() ? "a KL autoencoder" : "a VQ-GAN");
    std::string diff = data_difference(c.extra.value("data", nlohmann::json()), data_fp);
    if (!diff.empty())
      fail("{}: was trained on other data ({}); resume with the same data or start a new --out", from.string(), diff);
    c.load_module(st.model->module_key(), st.model->module());
    c.load_module("disc2d", *st.disc2d);
    c.load_module("disc3d", *st.disc3d);
    c.load_optimizer("generator", *st.opt_g, device);
    c.load_optimizer("discriminator", *st.opt_d, device);
    start = c.step;
    log_info("resuming {} at step {}", from.string(), start);
  } else if (init) {
    init->checkpoint.load_module(st.model->module_key(), st.model->module());
    if (writer) log_info("starting from the weights of {} (step {})", init->path.string(), init->checkpoint.step);
  }
  st.set_collectives(comm);
  if (writer) write_text_atomically(out_dir / "config.json", config_to_json(cfg).dump(2) + "\n");
  auto metrics_log = writer ? folder->metrics(start, resume) : std::make_unique<JsonlWriter>();
  JsonlWriter& metrics = *metrics_log;
  auto check_replicas = [&](int64_t step) {
    if (!comm || world == 1) return;
    auto rec = replica_check(*comm, step, st.state(), st.codebook());
    if (writer) metrics.write(rec);
  };

  auto save = [&](int64_t step) {
    check_replicas(step);
    if (!writer) return;
    Checkpoint c;
    c.kind = st.model->checkpoint_kind();
    c.step = step;
    c.config = config_to_json(cfg);
    c.extra = {{"data", data_fp}};
    if (init) c.extra["init"] = init->record();
    c.put_module(st.model->module_key(), st.model->module());
    c.put_module("disc2d", *st.disc2d);
    c.put_module("disc3d", *st.disc3d);
    c.put_optimizer("generator", *st.opt_g);
    c.put_optimizer("discriminator", *st.opt_d);
    if (step % t.ckpt_every == 0) save_checkpoint(c, out_dir / fmt::format("step-{:07d}.pt", step));
    save_checkpoint(c, last);
  };
  torch::Tensor mean_volume = val.empty() || !writer ? torch::Tensor() : mean_of(train);
  VQGANTrainResult result;
  auto validate = [&](int64_t step) {
    if (val.empty() || !writer) return;
    ValidationResult r = evaluate_reconstruction(*st.model, val, mean_volume, device);
    r.step = step;
    result.validations.push_back(r);
    metrics.write({{"step", step}, {"val_psnr", r.psnr}, {"val_ssim", r.ssim}, {"val_psnr_mean_baseline", r.psnr_mean_baseline}});
    log_info("step {} validation: PSNR {:.2f} dB (mean-volume baseline {:.2f} dB), SSIM {:.4f}", step, r.psnr,
             r.psnr_mean_baseline, r.ssim);
    if (hooks.write_png) {
      torch::NoGradGuard ng;
      st.model->module().eval();
      const auto& c = val.front();
      auto seg = c.label.defined() ? c.label.unsqueeze(0).to(device) : torch::Tensor();
      auto recs = st.model->reconstruct(c.x.unsqueeze(0).to(device, torch::kFloat), seg).clamp(-1, 1).to(torch::kCPU, torch::kFloat)[0];
      st.model->module().train();
      std::vector<torch::Tensor> rows;  // per channel: input, reconstruction, |error|
      for (int64_t ch = 0; ch < c.x.size(0); ++ch) {
        auto x = c.x[ch].to(torch::kFloat);
        auto rec = recs[ch];
        rows.push_back(orthogonal_panel(x, c.geometry, {-1, 1}));
        rows.push_back(orthogonal_panel(rec, c.geometry, {-1, 1}));
        rows.push_back(orthogonal_panel((rec - x).abs(), c.geometry, {0, 1}));
      }
      auto panel = vconcat(rows);
      hooks.write_png(out_dir / "previews" / fmt::format("step-{:07d}.png", step), panel);
    }
  };

  std::optional<Progress> progress;
  if (writer) progress.emplace(world > 1 ? fmt::format("train-vqgan x{}", world) : "train-vqgan", t.steps, start);
  // Micro-batch m of step s is global batch number s * grad_accum + m of the data order; this rank
  // takes its slice of it.
  BatchPrefetcher batches(batch_cases, t.batch_size, static_cast<uint64_t>(cfg.data.seed), cfg.data.flip, start * t.grad_accum,
                          t.steps * t.grad_accum, BatchSlice{rank * t.batch_size, world * t.batch_size},
                          BatchPatch{t.patch, t.patch_foreground});
  int64_t bad_in_row = 0;
  auto t0 = std::chrono::steady_clock::now();
  for (int64_t step = start; step < t.steps; ++step) {
    VQGANStepStats s = st.step(step, [&](int64_t) { return batches.next(); });
    if (!s.finite) {
      ++bad_in_row;
      log_warn("step {}: non-finite loss (generator {}, discriminator {}); step skipped", step + 1, s.loss, s.d_loss);
      if (bad_in_row >= t.nan_abort)
        fail("training diverged: {} non-finite losses in a row at step {} (lower vqgan_train.lr or use precision fp32)",
             bad_in_row, step + 1);
    } else {
      bad_in_row = 0;
    }
    int64_t done = step + 1;
    const bool vq = st.model->has_codebook();
    if (progress)
      progress->update(done, vq ? fmt::format("loss {:.4f} l1 {:.4f} perplexity {:.1f} codes {:.1f}%", s.loss, s.l1, s.perplexity, 100 * s.usage)
                                : fmt::format("loss {:.4f} l1 {:.4f} kl {:.4g}", s.loss, s.l1, s.regulariser));
    if (writer && (done % t.log_every == 0 || done == t.steps)) {
      json rec = {{"step", done}, {"loss", s.loss}, {"l1", s.l1}, {st.model->regulariser_name(), s.regulariser},
                  {"it_per_s", progress ? progress->rate() : 0.0}, {"gan", s.gan}};
      if (vq) {
        rec["perplexity"] = s.perplexity;
        rec["code_usage"] = s.usage;
        rec["codes_restarted"] = s.restarted;
      }
      if (s.gan) {
        rec["g_adv"] = s.adv;
        rec["feature_matching"] = s.feature_matching;
        rec["d_loss"] = s.d_loss;
      }
      if (st.perceptual) rec["perceptual"] = s.perceptual;
      metrics.write(rec);
    }
    if (done % t.val_every == 0 || done == t.steps) validate(done);
    if (done % t.ckpt_every == 0 || done == t.steps) save(done);
  }
  if (progress) progress->finish();
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  result.final_step = t.steps;
  result.seconds_per_step = t.steps > start ? secs / static_cast<double>(t.steps - start) : 0;
  result.peak_rss_mib = peak_rss_mib();
  return result;
}

}  // namespace meddiff
