// meddiff sample: synthetic volumes from a trained latent diffusion model, as a resumable batch job.
//
// Volume i (0-based, global) has class --class, or i mod num_classes; its starting noise and every
// sampler step's noise come from (seed, i) alone, so batch size and sharding never change a volume.
// The pieces: the request (cli/sample_request.h), the job folder's bookkeeping (cli/sample_job.h), the
// label maps of paired sampling (cli/sample_labels.h), the generation loop with the per-pair check
// (pipeline/sample_batch.h) and the files of a volume (cli/sample_writer.h).
#include "cli/commands.h"
#include "cli/sample_job.h"
#include "cli/sample_labels.h"
#include "cli/sample_request.h"
#include "cli/sample_writer.h"
#include "core/error.h"
#include "core/log.h"
#include "core/output_policy.h"
#include "core/progress.h"
#include "core/sha256.h"
#include "core/torch_file.h"
#include "core/version.h"
#include "data/intensity.h"
#include "pipeline/device.h"
#include "pipeline/sample_batch.h"
#include "train/launch_env.h"

#include <chrono>
#include <iostream>

namespace meddiff::cli {
namespace {
namespace fs = std::filesystem;

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// --finalize: manifest.jsonl (and dataset.json) from the finished volumes' sidecars, the files of
// unfinished ones removed; the layout and name are the folder's job.json's.
int finalize(SampleRequest q) {
  auto recorded = SampleFolder::recorded_layout(q.out);
  if (!recorded) fail("{}: no job.json; nothing sampled here to finalize", q.out.string());
  if (q.layout_given && (recorded->kind != q.layout.kind || (recorded->kind == "nnunet" && recorded->name != q.layout.name)))
    usage_fail("--layout {} --name {}: {} was sampled with --layout {}{}", q.layout.kind, q.layout.name, q.out.string(), recorded->kind,
               recorded->kind == "nnunet" ? " --name " + recorded->name : "");
  SampleFolder folder(q.out, *recorded);
  folder.check_usable();
  auto job = folder.recorded_job();
  if (!job) fail("{}: no job.json; nothing sampled here to finalize", q.out.string());
  const int64_t removed = folder.remove_unfinished();
  const auto modality = parse_modality((*job)["info"].value("modality", "MR"));
  const auto names = (*job)["info"].value("label_names", std::vector<std::string>{});
  const auto channels = (*job)["info"].value("channel_names", std::vector<std::string>{});
  int64_t count = folder.rebuild([&](int64_t n) { return nnunet_dataset_json(recorded->name, modality, channels, names, n); });
  log_info("sample --finalize: {} finished volume(s) in {}{}", count, (q.out / "manifest.jsonl").string(),
           removed ? fmt::format("; {} file(s) of unfinished volumes removed", removed) : "");
  return 0;
}

void print_dry_run(const SampleRequest& q, LoadedLDM& ldm, LatentAutoencoder& ae, SampleFolder& folder, const nlohmann::json& settings,
                   const SamplerParams& sp, const std::vector<int64_t>& mine, const torch::Device& device,
                   const AutoencoderRun& decode, const std::optional<LabelSource>& labels) {
  auto recorded = folder.recorded_settings();
  std::string diff = recorded ? settings_difference(*recorded, settings) : "";
  int64_t finished = 0;
  if (diff.empty())
    for (int64_t i : mine) finished += folder.finished(i) ? 1 : 0;
  // One network evaluation and one decode, measured on this device.
  torch::NoGradGuard ng;
  auto x = sample_noise(q.seed, mine.front(), 0, ldm.latent_shape).unsqueeze(0).to(device);
  auto t = ldm.rflow ? torch::full({1}, 1000.0, torch::TensorOptions().dtype(torch::kFloat).device(device))
                     : torch::full({1}, ldm.schedule.T - 1, torch::TensorOptions().dtype(torch::kLong).device(device));
  auto c = torch::full({1}, class_of(q, ldm, mine.front()), torch::TensorOptions().dtype(torch::kLong).device(device));
  auto t0 = std::chrono::steady_clock::now();
  ldm.net->forward(x, t, ldm.num_classes > 0 ? c : torch::Tensor());
  synchronize(device);
  double t_net = seconds_since(t0);
  t0 = std::chrono::steady_clock::now();
  ae.decode(ldm.norm.invert(x), decode);
  synchronize(device);
  double t_dec = seconds_since(t0);
  const int64_t timesteps = network_evaluations(sp, ldm.schedule);
  bool guided = (ldm.num_classes > 0 || ldm.num_labels > 0) && sp.guidance != 1.0;
  double per_volume = static_cast<double>(timesteps) * t_net * (guided ? 2 : 1) + t_dec;
  int64_t todo = static_cast<int64_t>(mine.size()) - finished;
  std::cout << fmt::format(
      "dry run: {} volume(s) in {} (shard {}/{}: {} of them), {} already finished, {} to do\n"
      "  model: latent [{}], {} classes, {} {} steps, guidance {}, device {}\n"
      "  measured: U-Net {:.3f} s per evaluation ({} per volume), decode {:.3f} s: {:.1f} s per volume, about {} for this shard\n"
      "  peak memory: {:.0f} MiB host{}\n",
      q.n, q.out.string(), q.shard.k, q.shard.n, mine.size(), finished, todo, fmt::join(ldm.latent_shape, "x"), ldm.num_classes,
      sp.sampler, sp.steps, sp.guidance, device.str(), t_net, timesteps * (guided ? 2 : 1), t_dec, per_volume,
      format_duration(per_volume * static_cast<double>(todo)), peak_rss_mib(),
      device.is_cuda() ? fmt::format(", {:.0f} MiB CUDA", peak_device_mib(device)) : "");
  if (labels)
    std::cout << fmt::format("  label maps: {} ({} maps{}); a pair failing the per-label check is generated again up to {} "
                             "time(s), which the estimate leaves out\n",
                             labels->settings().value("source", ""), labels->count(),
                             labels->settings().value("augment", false) ? ", augmented" : "", q.qc_retries);
  if (!diff.empty())
    std::cout << fmt::format("  note: {} was sampled with other settings ({}): refused without --force\n", q.out.string(), diff);
}

// --initial-noise: [N, C, ...] with C and the spatial sizes of the latent (the network's layout); empty when not given.
torch::Tensor read_initial_noise(const std::string& file, const std::array<int64_t, 4>& latent) {
  if (file.empty()) return torch::empty({0});
  if (!fs::exists(file)) fail("{}: no such file (--initial-noise)", file);
  const PyRef v = read_torch_file(file);
  if (v->kind != PyValue::Kind::Tensor) fail("{}: holds no tensor (--initial-noise: torch.save of one tensor)", file);
  auto t = v->tensor;
  const bool fits = t.dim() == 5 && t.size(0) >= 1 && t.size(1) == latent[0] && t.size(2) == latent[1] && t.size(3) == latent[2] &&
                    t.size(4) == latent[3];
  if (!fits)
    fail("{}: noise of shape [{}] does not fit this job's latent: [N, {}, {}, {}, {}] (the network's layout)", file, fmt::join(t.sizes(), ", "),
         latent[0], latent[1], latent[2], latent[3]);
  if (!torch::isfinite(t).all().item<bool>()) fail("{}: the noise holds NaN or infinite values", file);
  return t.to(torch::kFloat);
}

// sample --eval: `meddiff eval` of the finished folder.
void evaluate(const SampleRequest& q, const LoadedLDM& ldm, const std::string& vq_path) {
  if (q.shard.n > 1) {
    log_warn("sample --eval: skipped in shard {}/{}; when every shard has finished, run meddiff eval --synthetic {} ...", q.shard.k,
             q.shard.n, q.out.string());
    return;
  }
  Args_t ev{"--real", q.eval, "--synthetic", (q.out / "manifest.jsonl").string(), "--vqgan", vq_path,
            "--out", (q.out / "eval").string(), "--device", q.device, "--force"};
  std::string train = !q.eval_train.empty() ? q.eval_train : ldm.data.manifest;
  if (!train.empty() && (fs::exists(train) || train.find_first_of("*?") != std::string::npos)) {
    ev.push_back("--train");
    ev.push_back(train);
  } else {
    log_warn("sample --eval: no memorisation audit (the LDM's training data '{}' is not here; give --eval-train)", train);
  }
  run_eval(ev);
}

}  // namespace

int run_sample(const Args_t& args) {
  SampleRequest q = parse_sample_request(args);
  if (q.finalize) return finalize(q);
  SampleFolder folder(q.out, q.layout);
  folder.check_usable();
  // Under torchrun or srun, rank r of N samples shard r+1/N: one command uses every GPU of a node.
  const LaunchEnv env = launch_env();
  if (env.distributed()) {
    if (q.shard_given && !(q.shard.k == 1 && q.shard.n == 1))
      usage_fail("--shard {}/{} in a launch of {} ranks: give one of them (rank r of N samples shard r+1/N)", q.shard.k, q.shard.n,
                 env.world_size);
    q.shard = {env.rank + 1, env.world_size};
    if (env.rank > 0) set_log_tag(fmt::format("[rank {}/{}] ", env.rank, env.world_size));
  }
  torch::Device device = rank_device(q.device, env);

  LoadedLDM ldm = load_ldm(q.ldm_path, device);
  if (!ldm.family.empty() && !q.labels.empty()) attach_controlnet(ldm, q.ldm_path, device);  // images from the user's maps
  auto [sp, batch] = resolve_sampler(q, ldm, device);
  if (ldm.label_embedding && sp.guidance != 1.0)
    usage_fail("--guidance {}: MAISI's guided image-from-mask sampling needs its unconditional map (the map without tumours), "
               "which meddiff does not build; sample with --guidance 1 (NV-Generate-CT's recipe uses none)", sp.guidance);
  const double terminal_alpha_bar = ldm.schedule.alpha_bar(ldm.schedule.T - 1);
  if (ldm.family.empty() && !ldm.rflow && ldm.prediction == Prediction::Eps && sp.sampler != "ddpm" && terminal_alpha_bar < 1e-3)
    log_warn("this model predicts eps and its schedule ends at alpha_bar {:.1e}: the first {} step divides by "
             "sqrt(alpha_bar), so samples may drift; ddpm, or a model trained with ldm.prediction = v, avoids this",
             terminal_alpha_bar, sp.sampler);
  fs::path vq_path = !q.vqgan_path.empty() ? fs::path(q.vqgan_path) : fs::path(ldm.vqgan_path);
  if (vq_path.empty() || !fs::exists(vq_path))
    fail("{}: the {} the LDM was trained with is not at '{}'; pass --vqgan", q.ldm_path,
         ldm.family.empty() ? "VQ-GAN checkpoint" : "autoencoder", vq_path.string());
  if (is_within(vq_path, q.out)) fail("{}: holds the input {}; give another folder for the samples", q.out.string(), vq_path.string());
  std::string vq_sha = sha256_file(vq_path), ldm_sha = sha256_file(q.ldm_path);
  if (!ldm.vqgan_sha256.empty() && vq_sha != ldm.vqgan_sha256)
    fail("{}: is not the autoencoder this LDM was trained with (SHA-256 {}..., expected {}...)", vq_path.string(), vq_sha.substr(0, 12),
         ldm.vqgan_sha256.substr(0, 12));
  auto ae = load_latent_autoencoder(vq_path, device);
  configure_output(ldm, q.output, ae->downsample()[0]);
  if (ae->latent_channels() != ldm.latent_shape[0])
    fail("{}: the autoencoder's latents have {} channels, the diffusion model's {}", vq_path.string(), ae->latent_channels(),
         ldm.latent_shape[0]);
  if (!q.eval.empty() && !ldm.family.empty())
    usage_fail("--eval: meddiff eval measures with the features of an autoencoder meddiff trained (its run's data settings); run `meddiff eval --synthetic {} --vqgan V ...` "
               "after sampling", q.out.string());
  const auto initial = read_initial_noise(q.initial_noise, ldm.latent_shape);
  AutoencoderRun decode;
  decode.budget_bytes = memory_budget_bytes(q.max_memory_gib.value_or(ldm.sample.max_memory_gib), device);

  // Paired sampling: a label map per volume, and the per-pair check.
  const bool paired = ldm.num_labels > 0;
  std::optional<LabelSource> labels;
  if (paired) {
    auto edits = parse_label_edits(q.remove_label, q.scale_label, ldm.num_labels);
    fs::path bank = !q.mask_bank.empty() ? fs::path(q.mask_bank) : ldm.mask_bank;
    labels.emplace(ldm, q.labels, bank, q.augment_labels, edits);
    if (!q.fixed_class && ldm.num_classes > 0) labels->check_classes(ldm.num_classes, q.labels);
  }

  const nlohmann::json settings = job_settings(q, ldm, sp, ldm_sha, vq_sha, labels ? labels->settings() : nlohmann::json());
  const nlohmann::json info = {{"modality", to_string(ldm.modality)}, {"ldm_step", ldm.step}, {"config", ldm.config},
                               {"label_names", ldm.label_names}, {"channel_names", ldm.data.channels}};
  const int64_t timesteps = network_evaluations(sp, ldm.schedule);  // per volume (x2 with guidance)
  std::vector<int64_t> mine;
  for (int64_t i = q.shard.k - 1; i < q.n; i += q.shard.n) mine.push_back(i);
  if (q.dry_run) {
    print_dry_run(q, ldm, *ae, folder, settings, sp, mine, device, decode, labels);
    return 0;
  }

  folder.lock_shard(q.shard.k, q.shard.n);
  folder.open(settings, info, q.force);
  auto dataset_json = [&](int64_t count) { return nnunet_dataset_json(q.layout.name, ldm.modality, ldm.data.channels, ldm.label_names, count); };
  folder.rebuild(dataset_json);  // repairs a manifest line lost to a kill
  std::vector<int64_t> todo;
  for (int64_t i : mine)
    if (!folder.finished(i)) todo.push_back(i);
  if (todo.size() < mine.size())
    log_info("{}: {} of {} volumes already finished, skipped", q.out.string(), mine.size() - todo.size(), mine.size());
  const IntensityWindow w = output_window(ldm.modality, ldm.data.intensity());
  PairRules rules;
  rules.retries = q.qc_retries;
  rules.ranges = q.qc_ranges == "union" ? &ldm.union_ranges : &ldm.label_ranges;
  rules.names = ldm.label_names;
  rules.window = w;
  rules.channel_names = ldm.data.channels;
  Progress progress(fmt::format("sample ({} {} steps)", sp.sampler, sp.steps), static_cast<int64_t>(todo.size()) * timesteps);
  int64_t steps_done = 0, qc_failed = 0, qc_regenerated = 0;
  for (size_t b0 = 0; b0 < todo.size(); b0 += static_cast<size_t>(batch)) {
    auto t0 = std::chrono::steady_clock::now();
    const size_t b1 = std::min(todo.size(), b0 + static_cast<size_t>(batch));
    std::vector<BatchItem> items;
    std::vector<PairLabel> pairs;
    for (size_t j = b0; j < b1; ++j) {
      BatchItem it;
      it.index = todo[j];
      it.cls = class_of(q, ldm, it.index);
      if (it.index < initial.size(0)) it.initial_noise = initial[it.index];
      if (paired) {
        pairs.push_back(labels->for_volume(q.seed, it.index));
        it.label = pairs.back().label;
        it.cond = ldm.label_embedding ? ldm.label_embedding(it.label) : ldm.label_condition(it.label);
        // the map's class (checked against the model above), unless --class
        if (!q.fixed_class && ldm.num_classes > 0 && pairs.back().class_label) it.cls = *pairs.back().class_label;
      }
      items.push_back(it);
    }
    const int64_t base = steps_done, n_items = static_cast<int64_t>(items.size());
    BatchResult res = generate_batch(ldm, *ae, items, sp, q.seed, device, decode, rules,
                                     [&](int64_t s) { progress.update(base + s * n_items); });
    steps_done = base + timesteps * n_items;
    qc_regenerated += res.regenerated;
    const double seconds = seconds_since(t0) / static_cast<double>(items.size());
    for (size_t j = 0; j < items.size(); ++j) {
      const auto& it = items[j];
      std::vector<Volume> channels;  // synthetic MR: +1 is data.mr_output_max in every channel
      for (int64_t c = 0; c < res.images[j].size(0); ++c) {
        Volume v;
        v.image = denormalise(res.images[j][c], w, true, ldm.output_top);
        v.geometry = paired ? pairs[j].geometry : ldm.geometry;
        v.modality = ldm.modality;
        channels.push_back(std::move(v));
      }
      SampleProvenance pv{q.seed, it.index, it.cls, res.attempts[j], sp.sampler, sp.steps, sp.guidance};
      nlohmann::json files = write_sample_files(folder, q.layout, q.formats, channels, ldm.data.channels,
                                                paired ? it.label : torch::Tensor(), ldm.label_names, w, pv);
      nlohmann::json rec = settings;
      rec.update({{"index", it.index}, {"class", it.cls}, {"files", files}, {"synthetic", true}, {"modality", to_string(ldm.modality)},
                  {"ldm_step", ldm.step}, {"meddiff_version", version() + "+" + git_hash()}, {"seconds", seconds}});
      if (paired) {
        const auto& check = res.checks[j];
        rec["label_map"] = pairs[j].record;
        rec["qc"] = {{"passed", check.passed}, {"attempts", res.attempts[j] + 1}, {"labels", check.detail}};
        if (!check.passed) {
          ++qc_failed;
          log_warn("{}: kept after {} attempt(s) although {} (marked qc.passed = false in its sidecar and the manifest)",
                   q.layout.base_name(it.index), res.attempts[j] + 1, check.failed);
        }
      }
      folder.commit(it.index, rec);  // marks the volume finished
    }
  }
  progress.finish();
  int64_t finished = folder.rebuild(dataset_json);
  log_info("sample: {} volume(s) written to {} ({} finished in the folder)", todo.size(), q.out.string(), finished);
  if (paired)
    log_info("sample: per-pair check: {} regeneration(s), {} pair(s) kept failing it{}", qc_regenerated, qc_failed,
             qc_failed ? " (listed above; qc.passed = false in manifest.jsonl)" : "");
  if (!q.eval.empty()) evaluate(q, ldm, vq_path.string());
  return 0;
}

}  // namespace meddiff::cli
