#include "train/ldm_trainer.h"

#include "core/checkpoint.h"
#include "core/fs.h"
#include "core/log.h"
#include "core/progress.h"
#include "data/batches.h"
#include "data/preview.h"
#include "train/device.h"
#include "train/ema.h"
#include "train/run_folder.h"

#include <cmath>

namespace meddiff {
namespace {

nlohmann::json geometry_json(const Geometry& g) {
  return {{"spacing", g.spacing}, {"origin", g.origin}, {"direction", g.direction}};
}
Geometry geometry_from(const nlohmann::json& j) {
  Geometry g;
  g.spacing = j.at("spacing").get<std::array<double, 3>>();
  g.origin = j.at("origin").get<std::array<double, 3>>();
  g.direction = j.at("direction").get<std::array<double, 9>>();
  return g;
}

// Geometry for synthetic volumes: the training grid's spacing and direction, centred on the origin.
Geometry output_geometry(const TrainingVolume& v) {
  Geometry g = v.geometry;
  auto c = g.index_to_world(0.5 * double(v.x.size(3) - 1), 0.5 * double(v.x.size(2) - 1), 0.5 * double(v.x.size(1) - 1));
  for (int a = 0; a < 3; ++a) g.origin[static_cast<size_t>(a)] -= c[static_cast<size_t>(a)];
  return g;
}

UNet3d build_unet(const RunConfig& cfg, int64_t channels, int64_t num_classes) {
  torch::manual_seed(static_cast<uint64_t>(cfg.ldm_train.seed));
  return UNet3d(cfg.ldm.unet, channels, num_classes);
}

}  // namespace

torch::Tensor generate_volumes(LoadedLDM& ldm, VQGAN& vqgan, const torch::Tensor& x_T, const torch::Tensor& classes,
                               const SamplerParams& sp, const std::function<torch::Tensor(int64_t)>& noise,
                               const std::function<void(int64_t, int64_t)>& on_step) {
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
  for (int64_t i = 0; i < z.size(0); ++i) vols.push_back(vqgan->decode_latent(z.slice(0, i, i + 1)).clamp(-1, 1));
  return torch::cat(vols);  // [B, 1, D, H, W]
}

LoadedLDM load_ldm(const std::filesystem::path& path, const torch::Device& device) {
  Checkpoint c = load_checkpoint(path);
  if (c.kind != "ldm") fail("{}: is a '{}' checkpoint, not a latent diffusion model", path.string(), c.kind);
  LoadedLDM l;
  l.config = config_from_json<RunConfig>(c.config);
  const auto& x = c.extra;
  l.num_classes = x.at("num_classes").get<int64_t>();
  l.latent_shape = x.at("latent_shape").get<std::array<int64_t, 4>>();
  l.norm = LatentNorm::from_json(x.at("latent_norm"));
  l.geometry = geometry_from(x.at("geometry"));
  l.modality = parse_modality(x.at("modality").get<std::string>());
  l.vqgan_sha256 = x.value("vqgan_sha256", "");
  l.vqgan_path = x.value("vqgan_path", "");
  l.model = UNet3d(l.config.ldm.unet, l.latent_shape[0], l.num_classes);
  c.load_module("ema", *l.model);
  l.model->to(device);
  l.model->eval();
  l.schedule = make_schedule(l.config.ldm.schedule, l.config.ldm.timesteps, l.config.ldm.cosine_s);
  l.prediction = parse_prediction(l.config.ldm.prediction);
  l.step = c.step;
  return l;
}

LDMTrainResult train_ldm(const RunConfig& cfg, LoadedVQGAN& vq, const std::string& vqgan_path, const std::string& vqgan_sha256,
                         const std::vector<TrainingVolume>& train, int64_t num_classes, const std::filesystem::path& out_dir,
                         bool resume, const TrainHooks& hooks) {
  const auto& t = cfg.ldm_train;
  if (train.empty()) fail("no training volumes");
  RunFolder folder(out_dir, "train-ldm", resume);
  torch::Device device = choose_device(t.device);
  bool bf16 = use_bf16(t.precision, device);
  fs::path last = folder.last();
  const nlohmann::json data_fp = data_fingerprint(cfg.data, train);
  // A resume continues on the same VQ-GAN and data: checked before anything is encoded.
  std::optional<Checkpoint> resumed;
  if (resume) {
    resumed = load_checkpoint(last);
    if (resumed->kind != "ldm") fail("{}: is a '{}' checkpoint, not a latent diffusion model", last.string(), resumed->kind);
    std::string was = resumed->extra.value("vqgan_sha256", "");
    if (!was.empty() && was != vqgan_sha256)
      fail("{}: was trained on the latents of another VQ-GAN (SHA-256 {}, {}); --vqgan {} has SHA-256 {}: resume with "
           "the same VQ-GAN or start a new --out",
           last.string(), was.substr(0, 16), resumed->extra.value("vqgan_path", "?"), vqgan_path, vqgan_sha256.substr(0, 16));
    std::string diff = data_difference(resumed->extra.value("data", nlohmann::json()), data_fp);
    if (!diff.empty())
      fail("{}: was trained on other data ({}); resume with the same data or start a new --out", last.string(), diff);
  }
  vq.model->to(device);

  // Latents: encoded once and cached next to the checkpoints; the cache is used only while the
  // VQ-GAN, the data settings and the cases (files, classes) are the same.
  fs::path cache = out_dir / "latents.pt";
  nlohmann::json cache_key = {{"vqgan_sha256", vqgan_sha256}, {"data", data_fp}};
  LatentSet lat;
  std::optional<Checkpoint> cached;
  std::string stale;
  if (fs::exists(cache)) {
    cached = load_checkpoint(cache);
    const auto& k = cached->extra.value("key", nlohmann::json());
    if (k.value("vqgan_sha256", "") != vqgan_sha256) stale = "another VQ-GAN";
    else if (std::string d = data_difference(k.value("data", nlohmann::json()), data_fp); !d.empty() || !k.contains("data"))
      stale = d.empty() ? "no record of its data" : d;
  }
  if (cached && stale.empty()) {
    lat = {cached->tensor("latents"), cached->tensor("classes")};
    log_info("latents: {} cached in {}", lat.latents.size(0), cache.string());
  } else {
    if (cached) log_info("latents: {} is stale ({}); encoding again", cache.string(), stale);
    lat = encode_latents(vq.model, train, device);
    Checkpoint c;
    c.kind = "latents";
    c.tensors = {{"latents", lat.latents}, {"classes", lat.classes}};
    c.extra = {{"key", cache_key}};
    save_checkpoint(c, cache);
  }
  LatentNorm norm = fit_latent_norm(cfg.ldm.latent_norm, vq.model, lat.latents);
  auto zn = norm.apply(lat.latents);  // [N, E, d, h, w]
  std::vector<TrainingVolume> items;  // latents in the batch machinery (no flips: latents are not flip-equivariant)
  for (int64_t i = 0; i < zn.size(0); ++i) items.push_back({zn[i], {}, {}, lat.classes[i].item<int64_t>(), ""});
  const int64_t E = zn.size(1);
  std::array<int64_t, 4> latent_shape{E, zn.size(2), zn.size(3), zn.size(4)};

  UNet3d model = build_unet(cfg, E, num_classes), ema = build_unet(cfg, E, num_classes);
  model->to(device);
  ema->to(device);
  ema_update(*ema, *model, 0.0);
  ema->eval();
  torch::optim::AdamW opt(model->parameters(), torch::optim::AdamWOptions(t.lr).betas({t.betas[0], t.betas[1]}).weight_decay(t.weight_decay));
  int64_t start = 0;
  if (resumed) {
    resumed->load_module("model", *model);
    resumed->load_module("ema", *ema);
    resumed->load_optimizer("adamw", opt, device);
    start = resumed->step;
    resumed.reset();
    log_info("resuming {} at step {}", last.string(), start);
  }
  NoiseSchedule schedule = make_schedule(cfg.ldm.schedule, cfg.ldm.timesteps, cfg.ldm.cosine_s);
  Prediction prediction = parse_prediction(cfg.ldm.prediction);
  auto ab_all = schedule.alphas_cumprod.to(torch::kFloat).to(device);
  write_text_atomically(out_dir / "config.json", config_to_json(cfg).dump(2) + "\n");
  auto metrics_log = folder.metrics(start, resume);
  JsonlWriter& metrics = *metrics_log;
  nlohmann::json extra = {{"num_classes", num_classes}, {"latent_shape", latent_shape}, {"latent_norm", norm.to_json()},
                          {"geometry", geometry_json(output_geometry(train.front()))},
                          {"modality", to_string(cfg.data.modality_enum())}, {"vqgan_sha256", vqgan_sha256},
                          {"vqgan_path", fs::absolute(vqgan_path).string()}, {"vqgan_config", config_to_json(vq.config)},
                          {"data", data_fp}};
  auto save = [&](int64_t step) {
    Checkpoint c;
    c.kind = "ldm";
    c.step = step;
    c.config = config_to_json(cfg);
    c.extra = extra;
    c.put_module("model", *model);
    c.put_module("ema", *ema);
    c.put_optimizer("adamw", opt);
    if (step % t.ckpt_every == 0) save_checkpoint(c, out_dir / fmt::format("step-{:07d}.pt", step));
    save_checkpoint(c, last);
  };
  auto preview = [&](int64_t step) {
    if (!hooks.write_png) return;
    LoadedLDM l;
    l.config = cfg;
    l.model = ema;
    l.schedule = schedule;
    l.prediction = prediction;
    l.norm = norm;
    l.num_classes = num_classes;
    SamplerParams sp;
    sp.sampler = "ddim";
    sp.steps = std::min<int64_t>(20, schedule.T);
    sp.guidance = cfg.sample.guidance;
    int64_t n = std::max<int64_t>(1, num_classes);
    auto gen = at::make_generator<at::CPUGeneratorImpl>(12345);
    auto x_T = torch::randn({n, E, latent_shape[1], latent_shape[2], latent_shape[3]}, gen).to(device);
    auto classes = torch::arange(n, torch::kLong).to(device);
    auto vols = generate_volumes(l, vq.model, x_T, classes, sp, [&](int64_t) { return torch::zeros_like(x_T); }).to(torch::kCPU);
    std::vector<torch::Tensor> rows;
    Geometry g = train.front().geometry;
    for (int64_t i = 0; i < n; ++i) rows.push_back(orthogonal_panel(vols[i][0], g, {-1, 1}));
    hooks.write_png(out_dir / "previews" / fmt::format("step-{:07d}.png", step), vconcat(rows));
  };

  Progress progress("train-ldm", t.steps, start);
  BatchPrefetcher batches(items, t.batch_size, static_cast<uint64_t>(t.seed), false, start, t.steps);
  model->train();
  int64_t bad = 0;
  double last_loss = 0;
  auto t0 = std::chrono::steady_clock::now();
  for (int64_t step = start; step < t.steps; ++step) {
    Batch b = batches.next();
    auto gen = at::make_generator<at::CPUGeneratorImpl>(step_seed(static_cast<uint64_t>(t.seed), step, 2));
    const int64_t B = b.x.size(0);
    auto x0 = b.x.to(device);
    auto tt = torch::randint(0, schedule.T, {B}, gen, torch::kLong);
    auto eps = torch::randn(b.x.sizes(), gen);
    auto drop = torch::rand({B}, gen) < cfg.ldm.unet.class_dropout;
    auto cls = torch::where(drop, torch::full({B}, num_classes, torch::kLong), b.labels).to(device);
    tt = tt.to(device);
    eps = eps.to(device);
    auto ab = ab_all.index_select(0, tt);
    auto x_t = q_sample(x0, eps, ab);
    auto target = prediction_target(prediction, x0, eps, ab);
    double lr = t.lr * std::min(1.0, static_cast<double>(step + 1) / static_cast<double>(std::max<int64_t>(1, t.warmup)));
    for (auto& group : opt.param_groups()) static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
    torch::Tensor loss;
    {
      AutocastGuard ac(bf16);
      auto out = model->forward(x_t, tt, num_classes > 0 ? cls : torch::Tensor()).to(torch::kFloat);
      loss = cfg.ldm.loss == "l1" ? torch::l1_loss(out, target) : torch::mse_loss(out, target);
    }
    double lv = loss.item<double>();
    if (!std::isfinite(lv)) {
      opt.zero_grad();
      log_warn("step {}: non-finite loss; step skipped", step + 1);
      if (++bad >= t.nan_abort) fail("training diverged: {} non-finite losses in a row at step {} (lower ldm_train.lr)", bad, step + 1);
    } else {
      bad = 0;
      opt.zero_grad();
      loss.backward();
      if (t.grad_clip > 0) torch::nn::utils::clip_grad_norm_(model->parameters(), t.grad_clip);
      opt.step();
      ema_update(*ema, *model, step + 1 < t.ema_start ? 0.0 : t.ema_decay);
      last_loss = lv;
    }
    int64_t done = step + 1;
    progress.update(done, fmt::format("loss {:.4f} lr {:.2e}", lv, lr));
    if (done % t.log_every == 0 || done == t.steps)
      metrics.write({{"step", done}, {"loss", lv}, {"lr", lr}, {"it_per_s", progress.rate()}});
    if (done % t.ckpt_every == 0 || done == t.steps) save(done);
    if (done % t.val_every == 0 || done == t.steps) preview(done);
  }
  progress.finish();
  LDMTrainResult r;
  r.final_step = t.steps;
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.seconds_per_step = t.steps > start ? secs / static_cast<double>(t.steps - start) : 0;
  r.peak_rss_mib = peak_rss_mib();
  r.final_loss = last_loss;
  return r;
}

}  // namespace meddiff
