#include "train/ldm_trainer.h"

#include "core/checkpoint.h"
#include "core/fs.h"
#include "core/log.h"
#include "core/progress.h"
#include "data/batches.h"
#include "data/label_check.h"
#include "data/label_maps.h"
#include "data/preview.h"
#include "data/intensity.h"
#include "pipeline/autoencoder.h"
#include "pipeline/device.h"
#include "pipeline/generate.h"
#include "train/augmented_copies.h"
#include "train/ldm_step.h"
#include "train/grad_sync.h"
#include "train/run_folder.h"

#include <cmath>

namespace meddiff {
namespace {

// Geometry for synthetic volumes: the training grid's spacing and direction, centred on the origin.
Geometry output_geometry(const TrainingVolume& v) {
  Geometry g = v.geometry;
  auto c = g.index_to_world(0.5 * double(v.x.size(3) - 1), 0.5 * double(v.x.size(2) - 1), 0.5 * double(v.x.size(1) - 1));
  for (int a = 0; a < 3; ++a) g.origin[static_cast<size_t>(a)] -= c[static_cast<size_t>(a)];
  return g;
}

}  // namespace

LDMTrainResult train_ldm(const RunConfig& cfg, LoadedAutoencoder& vq, const std::string& vqgan_path, const std::string& vqgan_sha256,
                         const std::vector<TrainingVolume>& train, int64_t num_classes, const std::filesystem::path& out_dir,
                         RunStart start_mode, const TrainHooks& hooks, Collectives* comm, std::optional<torch::Device> on) {
  const bool resume = start_mode == RunStart::Resume;
  const auto& t = cfg.ldm_train;
  if (train.empty()) fail("no training volumes");
  const int world = comm ? comm->world_size() : 1, rank = comm ? comm->rank() : 0;
  const bool writer = rank == 0;
  std::optional<RunFolder> folder;  // rank 0 checks and locks it; the others wait, then read
  if (writer) folder.emplace(out_dir, "train-ldm", start_mode);
  if (comm) comm->barrier();
  torch::Device device = on ? *on : choose_device(t.device);
  fs::path last = out_dir / "last.pt";
  const nlohmann::json data_fp = data_fingerprint(cfg.data, train);
  // A resume continues on the same VQ-GAN and data: checked before anything is encoded.
  std::optional<Checkpoint> resumed;
  fs::path from = resume ? resume_checkpoint(out_dir) : last;
  if (resume) {
    resumed = load_checkpoint_of_kind(from, "ldm", "a latent diffusion model");
    std::string was = resumed->extra.value("vqgan_sha256", "");
    if (!was.empty() && was != vqgan_sha256)
      fail("{}: was trained on the latents of another autoencoder (SHA-256 {}, {}); --vqgan {} has SHA-256 {}: resume with "
           "the same autoencoder or start a new --out",
           from.string(), was.substr(0, 16), resumed->extra.value("vqgan_path", "?"), vqgan_path, vqgan_sha256.substr(0, 16));
    std::string diff = data_difference(resumed->extra.value("data", nlohmann::json()), data_fp);
    if (!diff.empty())
      fail("{}: was trained on other data ({}); resume with the same data or start a new --out", from.string(), diff);
  }
  vq.ae->to(device);

  // Label condition: the label maps of the training cases, their names and the per-label intensity
  // ranges of the pair check; the maps themselves become the mask bank sampling draws from.
  int64_t num_labels = 0;
  nlohmann::json labels_json;
  std::vector<std::string> names;
  LabelIntensityRanges training_ranges;
  if (cfg.data.label_conditioned()) {
    num_labels = static_cast<int64_t>(cfg.data.label_names.size());
    if (num_labels == 0)
      for (const auto& v : train)
        if (v.label.defined()) num_labels = std::max(num_labels, v.label.max().item<int64_t>() + 1);
    num_labels = std::max<int64_t>(num_labels, 2);
    std::vector<torch::Tensor> bank;
    std::vector<int64_t> bank_classes;
    for (const auto& v : train) {
      check_label_map(v.label, cfg.data.shape, num_labels, v.label_source.empty() ? v.source : v.label_source);
      bank.push_back(v.label.to(torch::kUInt8));
      bank_classes.push_back(v.class_label);
    }
    names = label_names_or_default(cfg.data.label_names, num_labels);
    training_ranges = fit_label_ranges(train, num_labels);
    Checkpoint mb;
    mb.kind = "mask_bank";
    mb.tensors = {{"labels", torch::stack(bank)}, {"classes", torch::tensor(bank_classes, torch::kLong)}};
    mb.extra = {{"names", names}, {"geometry", geometry_json(output_geometry(train.front()))}};
    if (writer) save_checkpoint(mb, out_dir / "mask_bank.pt");
    labels_json = {{"mode", "condition"}, {"names", names}, {"training_ranges", training_ranges.to_json()}, {"mask_bank", "mask_bank.pt"},
                   {"mask_bank_count", bank.size()}, {"augment_copies", t.augment_copies}};
    log_info("labels: {} ({}), {} label maps in {}", num_labels, fmt::join(names, ", "), bank.size(), (out_dir / "mask_bank.pt").string());
  }

  // Latents: encoded once and cached next to the checkpoints; the cache is used only while the
  // VQ-GAN, the data settings and the cases (files, classes) are the same.
  // With ldm_train.augment_copies = K, stage 2 also learns K augmented copies of each case (image and
  // map warped together, train/augmented_copies): item N + i * K + k is copy k of case i.
  const int64_t n_cases = static_cast<int64_t>(train.size());
  const int64_t copies = num_labels > 0 ? t.augment_copies : 0;
  const auto copy_seed = static_cast<uint64_t>(t.seed);
  auto copy_of = [&](int64_t i) { return std::pair<int64_t, int64_t>{(i - n_cases) / copies, (i - n_cases) % copies}; };  // i >= n_cases
  auto stage2_volume = [&](int64_t i) -> TrainingVolume {
    if (i < n_cases) return train[static_cast<size_t>(i)];
    const auto [c, k] = copy_of(i);
    return augmented_copy(train[static_cast<size_t>(c)], c, k, copy_seed);
  };
  auto stage2_label = [&](int64_t i) -> torch::Tensor {
    if (i < n_cases) return train[static_cast<size_t>(i)].label;
    const auto [c, k] = copy_of(i);
    return augmented_copy_label(train[static_cast<size_t>(c)], c, k, copy_seed);
  };
  const int64_t n_items = n_cases * (1 + copies);
  fs::path cache = out_dir / "latents.pt";
  nlohmann::json cache_key = {{"vqgan_sha256", vqgan_sha256}, {"data", data_fp}, {"augment_copies", copies}, {"augment_seed", t.seed}};
  LatentSet lat;
  std::optional<Checkpoint> cached;
  std::string stale;
  // Rank 0 encodes (or checks the cache); the others wait for it and read the cache it left.
  if (!writer) comm->barrier();
  if (fs::exists(cache)) {
    cached = load_checkpoint(cache);
    const auto& k = cached->extra.value("key", nlohmann::json());
    if (k.value("vqgan_sha256", "") != vqgan_sha256) stale = "another autoencoder";
    else if (std::string d = data_difference(k.value("data", nlohmann::json()), data_fp); !d.empty() || !k.contains("data"))
      stale = d.empty() ? "no record of its data" : d;
    else if (k.value("augment_copies", int64_t{0}) != copies || (copies > 0 && k.value("augment_seed", int64_t{-1}) != t.seed))
      stale = fmt::format("{} augmented copies per case (seed {}), this run {} (seed {})", k.value("augment_copies", int64_t{0}),
                          k.value("augment_seed", int64_t{-1}), copies, t.seed);
  }
  if (cached && stale.empty()) {
    lat = {cached->tensor("latents"), cached->tensor("classes")};
    log_info("latents: {} cached in {}", lat.latents.size(0), cache.string());
  } else {
    if (!writer) fail("rank {}: {} is {} after rank 0 wrote it", rank, cache.string(), cached ? "stale" : "missing");
    if (cached) log_info("latents: {} is stale ({}); encoding again", cache.string(), stale);
    if (copies > 0) log_info("latents: {} cases and {} augmented copies of each (ldm_train.augment_copies)", n_cases, copies);
    lat = encode_latents(*vq.ae, n_items, stage2_volume, device);
    Checkpoint c;
    c.kind = "latents";
    c.tensors = {{"latents", lat.latents}, {"classes", lat.classes}};
    c.extra = {{"key", cache_key}};
    save_checkpoint(c, cache);
  }
  if (writer && comm) comm->barrier();
  LatentNorm norm = fit_latent_norm(cfg.ldm.latent_norm, *vq.ae, lat.latents);
  if (num_labels > 0 && writer) {
    // The pair check judges synthetic pairs against what the training images span (sample --qc-ranges
    // union also accepts what the autoencoder reproduces of them). The autoencoder's own per-label error
    // is reported here: where it misses a label, the synthetic pairs will too.
    std::vector<TrainingVolume> recon;
    const int64_t n_fit = std::min<int64_t>(n_cases, 64);  // the cases themselves, not their copies
    {
      torch::NoGradGuard ng;
      for (int64_t i = 0; i < n_fit; ++i) {
        TrainingVolume r = train[static_cast<size_t>(i)];
        auto map = r.label.defined() ? r.label.unsqueeze(0) : torch::Tensor();  // what a label-conditioned decoder sees
        r.x = vq.ae->decode(lat.latents.slice(0, i, i + 1).to(device), AutoencoderRun{}, map).clamp(-1, 1).to(torch::kCPU, torch::kFloat)[0];
        recon.push_back(r);
      }
    }
    LabelIntensityRanges reproduced = fit_label_ranges(recon, num_labels);
    LabelIntensityRanges ranges = merge_label_ranges(reproduced, training_ranges);
    labels_json["ranges"] = ranges.to_json();
    labels_json["reproduced_ranges"] = reproduced.to_json();
    const IntensityWindow w = output_window(cfg.data.modality_enum(), cfg.data.intensity());
    auto scanner = [&](double v) { return to_scanner_units(v, w); };
    // 'lesion' or, with several image channels, 'lesion' in t1ce
    auto what = [&](const LabelRange& r) {
      std::string n = fmt::format("'{}'", names[static_cast<size_t>(r.label)]);
      if (cfg.data.image_channels() > 1) n += " in " + cfg.data.channels.at(static_cast<size_t>(r.channel));
      return n;
    };
    for (const auto& r : reproduced.ranges)
      for (const auto& t : training_ranges.ranges)
        if (t.label == r.label && t.channel == r.channel && (r.median < t.lo || r.median > t.hi))
          log_warn("labels: the {} reproduces {} at a median of {:.0f} where the training images have {:.0f} ({} cases): "
                   "synthetic {} will be off by as much and fail the pair check, which accepts the training images' "
                   "[{:.0f}, {:.0f}]; a better autoencoder fixes this (sample --qc-ranges union would accept [{:.0f}, {:.0f}], and "
                   "with it pairs that teach a segmenter the wrong appearance)",
                   vq.kind(), what(r), scanner(r.median), scanner(t.median), n_fit, what(r), scanner(t.lo), scanner(t.hi), scanner(std::min(r.lo, t.lo)),
                   scanner(std::max(r.hi, t.hi)));
  }
  auto zn = norm.apply(lat.latents);  // [N, E, d, h, w]
  // latents in the batch machinery (no flips: latents are not flip-equivariant)
  std::vector<TrainingVolume> items = latent_items(zn, lat.classes);
  const int64_t E = zn.size(1);
  std::array<int64_t, 4> latent_shape{E, zn.size(2), zn.size(3), zn.size(4)};
  if (static_cast<int64_t>(items.size()) != n_items)
    fail("{}: holds {} latents where this run has {} (cases and augmented copies)", cache.string(), items.size(), n_items);
  const LabelCondition label_condition(cfg.ldm.label_condition, num_labels, cfg.data.shape, {latent_shape[1], latent_shape[2], latent_shape[3]});
  if (num_labels > 0)  // the label maps travel with the latents; the stepper builds their condition batch by batch
    for (size_t i = 0; i < items.size(); ++i) items[i].label = stage2_label(static_cast<int64_t>(i)).to(torch::kUInt8);

  LDMStepper st(cfg, E, num_classes, device, label_condition);
  int64_t start = 0;
  if (resumed) {
    resumed->load_module("model", *st.model);
    resumed->load_module("ema", *st.ema);
    resumed->load_optimizer("adamw", *st.opt, device);
    start = resumed->step;
    resumed.reset();
    log_info("resuming {} at step {}", from.string(), start);
  }
  st.set_collectives(comm);
  if (writer) write_text_atomically(out_dir / "config.json", config_to_json(cfg).dump(2) + "\n");
  auto metrics_log = writer ? folder->metrics(start, resume) : std::make_unique<JsonlWriter>();
  JsonlWriter& metrics = *metrics_log;
  nlohmann::json extra = {{"num_classes", num_classes}, {"latent_shape", latent_shape}, {"latent_norm", norm.to_json()},
                          {"geometry", geometry_json(output_geometry(train.front()))},
                          {"modality", to_string(cfg.data.modality_enum())}, {"vqgan_sha256", vqgan_sha256},
                          {"vqgan_path", fs::absolute(vqgan_path).string()}, {"vqgan_config", vq.config},
                          {"data", data_fp}};
  if (num_labels > 0) extra["labels"] = labels_json;
  auto save = [&](int64_t step) {
    if (comm && world > 1) {
      auto rec = replica_check(*comm, step, st.state());
      if (writer) metrics.write(rec);
    }
    if (!writer) return;
    Checkpoint c;
    c.kind = "ldm";
    c.step = step;
    c.config = config_to_json(cfg);
    c.extra = extra;
    c.put_module("model", *st.model);
    c.put_module("ema", *st.ema);
    c.put_optimizer("adamw", *st.opt);
    if (step % t.ckpt_every == 0) save_checkpoint(c, out_dir / fmt::format("step-{:07d}.pt", step));
    save_checkpoint(c, last);
  };
  auto preview = [&](int64_t step) {
    if (!hooks.write_png || !writer) return;
    LoadedLDM l;
    l.net = std::make_shared<UNet3dDenoiser>(st.ema);
    l.schedule = st.schedule;
    l.prediction = st.prediction;
    l.rflow = cfg.ldm.rflow();
    l.rflow_shift = resolved_rflow_shift(cfg.ldm, latent_shape);
    l.norm = norm;
    l.num_classes = num_classes;
    SamplerParams sp;
    sp.sampler = l.rflow ? "euler" : "ddim";
    sp.steps = l.rflow ? 20 : std::min<int64_t>(20, st.schedule.T);
    sp.guidance = cfg.sample.guidance;
    int64_t n = std::max<int64_t>(1, num_classes);
    auto gen = at::make_generator<at::CPUGeneratorImpl>(12345);
    auto x_T = torch::randn({n, E, latent_shape[1], latent_shape[2], latent_shape[3]}, gen).to(device);
    auto classes = torch::arange(n, torch::kLong).to(device);
    torch::Tensor cond, maps;  // the first training cases' label maps
    if (num_labels > 0) {
      std::vector<torch::Tensor> cs, ms;
      for (int64_t i = 0; i < n; ++i) {
        ms.push_back(items[static_cast<size_t>(i % static_cast<int64_t>(items.size()))].label);
        cs.push_back(label_condition(ms.back()));
      }
      cond = torch::stack(cs).to(device);
      maps = torch::stack(ms);
    }
    auto vols = generate_volumes(l, *vq.ae, x_T, classes, cond, sp, [&](int64_t) { return torch::zeros_like(x_T); }, nullptr, {}, maps)
                    .to(torch::kCPU);
    std::vector<torch::Tensor> rows;
    Geometry g = train.front().geometry;
    for (int64_t i = 0; i < n; ++i) rows.push_back(orthogonal_panel(vols[i][0], g, {-1, 1}));
    hooks.write_png(out_dir / "previews" / fmt::format("step-{:07d}.png", step), vconcat(rows));
  };

  std::optional<Progress> progress;
  if (writer) progress.emplace(world > 1 ? fmt::format("train-ldm x{}", world) : "train-ldm", t.steps, start);
  BatchPrefetcher batches(items, t.batch_size, static_cast<uint64_t>(t.seed), false, start * t.grad_accum, t.steps * t.grad_accum,
                          BatchSlice{rank * t.batch_size, world * t.batch_size});
  int64_t bad = 0;
  double last_loss = 0;
  auto t0 = std::chrono::steady_clock::now();
  for (int64_t step = start; step < t.steps; ++step) {
    LDMStepStats s = st.step(step, [&](int64_t) { return batches.next(); });
    if (!s.finite) {
      log_warn("step {}: non-finite loss; step skipped", step + 1);
      if (++bad >= t.nan_abort) fail("training diverged: {} non-finite losses in a row at step {} (lower ldm_train.lr)", bad, step + 1);
    } else {
      bad = 0;
      last_loss = s.loss;
    }
    int64_t done = step + 1;
    if (progress) progress->update(done, fmt::format("loss {:.4f} lr {:.2e}", s.loss, s.lr));
    if (writer && (done % t.log_every == 0 || done == t.steps))
      metrics.write({{"step", done}, {"loss", s.loss}, {"lr", s.lr}, {"it_per_s", progress->rate()}});
    if (done % t.ckpt_every == 0 || done == t.steps) save(done);
    if (done % t.val_every == 0 || done == t.steps) preview(done);
  }
  if (progress) progress->finish();
  LDMTrainResult r;
  r.final_step = t.steps;
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.seconds_per_step = t.steps > start ? secs / static_cast<double>(t.steps - start) : 0;
  r.peak_rss_mib = peak_rss_mib();
  r.final_loss = last_loss;
  return r;
}

}  // namespace meddiff
