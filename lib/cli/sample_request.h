#pragma once
// `meddiff sample`'s command line as one request: parsed and checked in one place
// (parse_sample_request: options, ranges, combinations), completed from the model's sampling
// defaults (resolve_sampler), and the settings that determine every volume of the job
// (job_settings: recorded in job.json, compared on every re-run, copied into every sidecar).
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/sample_job.h"
#include "diffusion/samplers.h"
#include "pipeline/imported_ldm.h"
#include "pipeline/loaded_models.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <optional>
#include <set>
#include <string>

namespace meddiff::cli {

struct Shard {
  int64_t k = 1, n = 1;  // shard k of n, 1-based
};

struct SampleRequest {
  std::filesystem::path out;
  SampleLayout layout;
  bool layout_given = false;  // --layout or --name on the command line (else, for --finalize, job.json's)
  bool finalize = false, dry_run = false, force = false;
  std::string ldm_path, vqgan_path;  // vqgan_path "": the VQ-GAN the LDM was trained with
  int64_t n = 1;
  Shard shard;
  bool shard_given = false;
  std::set<std::string> formats;
  uint64_t seed = 0;
  std::optional<int64_t> fixed_class;
  // Sampler settings given on the command line (unset: the model's config).
  std::optional<std::string> sampler, grid;
  std::optional<int64_t> steps, batch;
  std::optional<double> eta, guidance, dynamic_threshold, max_memory_gib;
  bool batch_networks = false, bf16 = false;
  std::string device = "auto";
  // Label-conditioned models.
  std::string labels, mask_bank, remove_label, scale_label;
  std::optional<bool> augment_labels;
  int64_t qc_retries = 3;
  std::string qc_ranges = "training";  // training (the training images' ranges) or union (with the VQ-GAN's reproduction)
  // --eval REAL [--eval-train TRAIN]
  std::string eval, eval_train;
  // Imported MONAI / MAISI models: the output grid and modality code (pipeline/imported_ldm.h), and starting
  // noise to reproduce a MONAI run (torch.save of [N, C, ...] in the network's layout).
  OutputRequest output;
  std::string initial_noise;
};

// The options, their help and every check that needs no model (usage errors name the option).
SampleRequest parse_sample_request(const Args_t& args);

// The sampler settings: the request's, else the model's defaults; steps 0 = the sampler's measured
// default. Usage errors for settings the model or device cannot take (--class out of range, bf16 on
// the CPU, label options on a model without label maps, ...).
struct ResolvedSampling {
  SamplerParams sp;
  int64_t batch = 1;
};
ResolvedSampling resolve_sampler(const SampleRequest& req, const LoadedLDM& ldm, const torch::Device& device);

// Everything that determines the volumes (and files) of the folder: checkpoint hashes, seed, class
// rule, sampler settings, layout, formats, and the label source's settings (paired models).
nlohmann::json job_settings(const SampleRequest& req, const LoadedLDM& ldm, const SamplerParams& sp, const std::string& ldm_sha,
                            const std::string& vq_sha, const nlohmann::json& label_settings);

// The class of volume i: --class, else i mod the number of classes (0 for an unconditional model).
int64_t class_of(const SampleRequest& req, const LoadedLDM& ldm, int64_t index);

}  // namespace meddiff::cli
