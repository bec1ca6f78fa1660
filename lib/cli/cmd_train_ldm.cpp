// meddiff train-ldm: stage 2, the class-conditional latent diffusion model.
#include "cli/args.h"
#include "cli/data_parallel.h"
#include "cli/commands.h"
#include "cli/run_options.h"
#include "cli/training_data.h"
#include "core/log.h"
#include "core/sha256.h"
#include "io/png.h"
#include "models/unet3d.h"
#include "models/vqgan.h"
#include "train/imported_ldm_trainer.h"
#include "train/ldm_trainer.h"
#include "train/memory_probe.h"

#include <iostream>

namespace meddiff::cli {

namespace {

// train-ldm --init: the imported U-Net fine-tuned on the config's cases, prepared as its autoencoder expects.
int fine_tune_imported(const cxxopts::ParseResult& r, RunConfig cfg, RunStart start) {
  if (r.count("vqgan")) usage_fail("--init fine-tunes with the autoencoder imported beside the U-Net (DIR/autoencoder.pt); leave out --vqgan");
  const std::filesystem::path init = r["init"].as<std::string>(), out = r["out"].as<std::string>();
  const std::filesystem::path ae_path = (start == RunStart::Resume ? out : init.parent_path()) / "autoencoder.pt";
  if (!std::filesystem::exists(ae_path)) fail("{}: not found (meddiff import writes it beside ldm.pt)", ae_path.string());
  const Modality m = cfg.data.modality_enum();
  if (m != Modality::CT && m != Modality::MR) fail("config: 'data.modality' must be ct or mr to fine-tune an imported model (got '{}')", cfg.data.modality);
  LoadedAutoencoder vq = load_autoencoder(ae_path, torch::kCPU, m);
  if (!vq.network_xyz()) fail("{}: is not an autoencoder brought in by meddiff import; --init takes an imported model's ldm.pt", ae_path.string());
  // the cases prepared as MAISI and MONAI prepare theirs (the imported autoencoder's intensity rule)
  cfg.data.ct_window = vq.data.ct_window;
  cfg.data.mr_percentiles = vq.data.mr_percentiles;
  use_model_channels(cfg.data, vq.data.channels, ae_path.string());
  cfg.validate();
  TrainingSet data = load_training_set(cfg.data);
  std::vector<TrainingVolume> all = data.train;
  all.insert(all.end(), data.val.begin(), data.val.end());
  ImportedFineTune ft;
  ft.init = init;
  if (r.count("modality-class")) ft.modality_class = r["modality-class"].as<int64_t>();
  DataParallel dp = join_data_parallel(r, cfg.ldm_train.device);
  auto result = fine_tune_imported_ldm(cfg, ft, vq, all, out, start, dp.comm(), dp.device);
  log_info("train-ldm: {} steps, {:.3f} s/step, final loss {:.4f}, peak memory {:.0f} MiB; checkpoint {}/last.pt (sample --ldm runs it)",
           result.final_step, result.seconds_per_step, result.final_loss, result.peak_rss_mib, out.string());
  return 0;
}

}  // namespace

int run_train_ldm(const Args_t& args) {
  Args a("train-ldm",
         "Train the latent 3-D diffusion model (stage 2) on latents of a trained VQ-GAN or KL autoencoder. The folder --out receives "
         "last.pt, step-NNNNNNN.pt, latents.pt, config.json, metrics.jsonl and previews/.");
  add_run_options(a, "runs/ldm");
  add_dist_options(a);
  a.add()("vqgan", "stage 1's checkpoint: a VQ-GAN or KL autoencoder (train-vqgan's last.pt; optional with --dry-run)",
          cxxopts::value<std::string>());
  a.add()("init",
          "fine-tune a U-Net brought in by meddiff import (DIR/ldm.pt, with DIR/autoencoder.pt beside it) on these cases instead of "
          "training meddiff's own U-Net; --out then holds a model `sample --ldm` runs as the imported one",
          cxxopts::value<std::string>())(
      "modality-class", "with --init of a MAISI U-Net: the modality code of the cases (CT 1, the default for CT; T1 9, T2 10, FLAIR 11, ...)",
      cxxopts::value<int64_t>());
  auto r = a.parse(args);
  const RunStart start = run_start(r);
  auto resolved = resolve_run_config(r);
  if (!resolved) return 0;  // --print-config
  RunConfig cfg = *resolved;
  if (r.count("dry-run")) {
    // The autoencoder is checked when given; otherwise the config's autoencoder and vqgan sections describe it.
    if (r.count("vqgan")) {
      auto vq = load_autoencoder(r["vqgan"].as<std::string>());
      cfg.vqgan = vq.vqgan;
      cfg.autoencoder = vq.autoencoder;
      use_model_channels(cfg.data, vq.data.channels, r["vqgan"].as<std::string>());
    }
    auto lat = cfg.latent_shape(cfg.data.shape, "data.shape");
    CaseCount cc = count_cases(cfg.data);
    UNet3d unet(cfg.ldm.unet, lat[0], cc.classes);
    int64_t n = 0;
    for (const auto& p : unet->parameters()) n += p.numel();
    std::cout << config_to_json(cfg).dump(2) << "\n";
    std::cout << fmt::format("dry run: config valid\n  latent [{}, {}, {}, {}] ([C, D, H, W]), {} timesteps, {} schedule, {} prediction\n"
                             "  U-Net parameters: {} ({} classes)\n  effective batch {} (micro-batch {} x {} accumulated), "
                             "activation checkpointing {}\n  training memory, measured ({} cases):\n",
                             lat[0], lat[1], lat[2], lat[3], cfg.ldm.timesteps, cfg.ldm.schedule, cfg.ldm.prediction, n, cc.classes,
                             cfg.ldm_train.batch_size * cfg.ldm_train.grad_accum, cfg.ldm_train.batch_size, cfg.ldm_train.grad_accum,
                             cfg.ldm_train.checkpointing ? "on" : "off", cc.cases)
              << std::flush;
    std::cout << format_probe(probe_ldm_memory(cfg, cc.cases, cc.classes, ProbeOptions{r.count("measure-full") > 0}), cfg.ldm_train.batch_size) << "\n";
    return 0;
  }
  if (r.count("init")) return fine_tune_imported(r, cfg, start);
  std::string vq_path = required(r, "vqgan");
  LoadedAutoencoder vq = load_autoencoder(vq_path);
  // The data must be prepared as the autoencoder saw it.
  if (config_to_json(vq.vqgan) != config_to_json(cfg.vqgan) || config_to_json(vq.autoencoder) != config_to_json(cfg.autoencoder))
    log_info("using the {} architecture stored in {}", vq.kind(), vq_path);
  cfg.vqgan = vq.vqgan;
  cfg.autoencoder = vq.autoencoder;
  use_model_channels(cfg.data, vq.data.channels, vq_path);
  cfg.validate();
  TrainingSet data = load_training_set(cfg.data);
  if (resolved_channels(cfg.data, data.channel_names).size() != vq.data.channels.size())
    fail("{}: the cases have {} channel(s) ({}) but the {} {} takes {}", cfg.data.manifest, data.channel_names.size(),
         fmt::join(data.channel_names, ", "), vq.kind(), vq_path, vq.data.image_channels());
  std::vector<TrainingVolume> all = data.train;
  all.insert(all.end(), data.val.begin(), data.val.end());  // the diffusion model uses every case
  if (cfg.data.label_conditioned() && cfg.data.label_names.empty() && !data.label_names.empty()) {
    // the dataset's own label names (dataset.json), one per label value the maps hold
    int64_t values = static_cast<int64_t>(data.label_names.size());
    for (const auto& v : all)
      if (v.label.defined()) values = std::max(values, v.label.max().item<int64_t>() + 1);
    cfg.data.label_names = data.label_names;
    for (auto l = static_cast<int64_t>(cfg.data.label_names.size()); l < values; ++l) cfg.data.label_names.push_back(fmt::format("label_{}", l));
    log_info("{}: label names from the dataset: {}", cfg.data.manifest, fmt::join(cfg.data.label_names, ", "));
  }
  DataParallel dp = join_data_parallel(r, cfg.ldm_train.device);
  TrainHooks hooks;
  hooks.write_png = [](const std::filesystem::path& p, const torch::Tensor& img) { io::write_png(img, p); };
  auto result = train_ldm(cfg, vq, vq_path, sha256_file(vq_path), all, data.num_classes, r["out"].as<std::string>(),
                          start, hooks, dp.comm(), dp.device);
  log_info("train-ldm: {} steps, {:.3f} s/step, final loss {:.4f}, peak memory {:.0f} MiB; checkpoint {}/last.pt",
           result.final_step, result.seconds_per_step, result.final_loss, result.peak_rss_mib, r["out"].as<std::string>());
  return 0;
}

}  // namespace meddiff::cli
