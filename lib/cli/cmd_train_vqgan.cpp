// meddiff train-vqgan: stage 1, the 3-D VQ-GAN or KL autoencoder (autoencoder.kind).
#include "cli/args.h"
#include "cli/data_parallel.h"
#include "cli/commands.h"
#include "cli/run_options.h"
#include "cli/training_data.h"
#include "core/log.h"
#include "io/png.h"
#include "models/vqgan.h"
#include "train/memory_probe.h"
#include "train/vqgan_trainer.h"

#include <iostream>

namespace meddiff::cli {

int run_train_vqgan(const Args_t& args) {
  Args a("train-vqgan",
         "Train the 3-D VQ-GAN (or, with autoencoder.kind = kl, a KL autoencoder) of stage 1, from scratch or from --init. The folder --out receives last.pt, step-NNNNNNN.pt, config.json, "
         "metrics.jsonl and previews/.");
  add_run_options(a, "runs/vqgan");
  add_dist_options(a);
  a.add()("init", "Start from these weights and fine-tune: a train-vqgan checkpoint (VQ-GAN or KL autoencoder) or an autoencoder "
                  "from meddiff import (MAISI-v2, a MONAI bundle); the run takes its architecture", cxxopts::value<std::string>());
  auto r = a.parse(args);
  const RunStart start = run_start(r);
  auto resolved = resolve_run_config(r);
  if (!resolved) return 0;  // --print-config
  RunConfig cfg = *resolved;
  if (r.count("dry-run")) {
    CaseCount cc = count_cases(cfg.data);
    cfg.data.channels = resolved_channels(cfg.data, cc.channel_names);
    auto model = make_stage1_model(cfg, cfg.data.image_channels());
    auto parts = model->module().named_children();
    int64_t enc = 0, dec = 0;
    for (const auto& p : parts["encoder"]->parameters()) enc += p.numel();
    for (const auto& p : parts["decoder"]->parameters()) dec += p.numel();
    auto lat = cfg.latent_shape(cfg.data.shape, "data.shape");
    std::cout << config_to_json(cfg).dump(2) << "\n";
    std::cout << fmt::format(
        "dry run: config valid\n  input {}x{}x{} voxels (x,y,z) x {} channel(s) -> latent [{}, {}, {}, {}] ([C, D, H, W])\n  parameters: encoder {}, decoder {}, "
        "{}\n  effective batch {} (micro-batch {} x {} accumulated), activation checkpointing {}\n",
        cfg.data.shape[2], cfg.data.shape[1], cfg.data.shape[0], cfg.data.image_channels(), lat[0], lat[1], lat[2], lat[3], enc, dec,
        model->has_codebook() ? fmt::format("codebook {} x {}", cfg.vqgan.n_codes, cfg.vqgan.embedding_dim)
                              : fmt::format("Gaussian posterior (KL weight {})", cfg.vqgan_train.kl_weight),
        cfg.vqgan_train.batch_size * cfg.vqgan_train.grad_accum,
        cfg.vqgan_train.batch_size, cfg.vqgan_train.grad_accum, cfg.vqgan_train.checkpointing ? "on" : "off");
    std::cout << std::flush;
    std::cout << fmt::format("  training memory, measured ({} cases):\n", cc.cases);
    for (const auto& p : probe_vqgan_memory(cfg, cc.cases, ProbeOptions{r.count("measure-full") > 0})) std::cout << format_probe(p, cfg.vqgan_train.batch_size) << "\n";
    return 0;
  }
  TrainingSet data = load_training_set(cfg.data);
  cfg.data.channels = resolved_channels(cfg.data, data.channel_names);  // recorded: the model has one image channel per name
  std::optional<Stage1Init> init;
  if (r.count("init")) init = read_stage1_init(r["init"].as<std::string>(), cfg, cfg.data.image_channels());
  DataParallel dp = join_data_parallel(r, cfg.vqgan_train.device);
  TrainHooks hooks;
  hooks.write_png = [](const std::filesystem::path& p, const torch::Tensor& img) { io::write_png(img, p); };
  auto result = train_vqgan(cfg, data.train, data.val, r["out"].as<std::string>(), start, hooks, dp.comm(),
                            dp.device, init ? &*init : nullptr);
  log_info("train-vqgan: {} steps, {:.3f} s/step, peak memory {:.0f} MiB; checkpoint {}/last.pt", result.final_step,
           result.seconds_per_step, result.peak_rss_mib, r["out"].as<std::string>());
  return 0;
}

}  // namespace meddiff::cli
