#include "cli/sample_request.h"

#include "core/error.h"
#include "core/log.h"
#include "core/output_policy.h"
#include "core/sha256.h"

#include <regex>

namespace meddiff::cli {
namespace fs = std::filesystem;

namespace {

constexpr int64_t kMaxVolumes = 1000000;  // per output folder (file names and manifests stay manageable)

Shard parse_shard(const std::string& s) {
  static const std::regex re(R"((\d{1,9})/(\d{1,9}))");
  std::smatch m;
  if (!std::regex_match(s, m, re)) usage_fail("--shard takes K/N, e.g. 2/8 (got '{}')", s);
  Shard sh{std::stoll(m[1].str()), std::stoll(m[2].str())};
  if (sh.n < 1 || sh.k < 1 || sh.k > sh.n) usage_fail("--shard K/N needs 1 <= K <= N (got '{}')", s);
  return sh;
}

std::set<std::string> parse_formats(const std::string& s) {
  std::set<std::string> out;
  for (const auto& f : split_commas(s)) {
    if (f != "nifti" && f != "dicom" && f != "png") usage_fail("--format: unknown format '{}' (nifti, dicom, png)", f);
    out.insert(f);
  }
  if (out.empty()) usage_fail("--format needs at least one of nifti, dicom, png");
  return out;
}

// A case name: letters, digits, '-' and '_' (no path separators, no dots), 1-64 characters.
std::string parse_name(const std::string& s) {
  static const std::regex re(R"([A-Za-z0-9][A-Za-z0-9_-]{0,63})");
  if (!std::regex_match(s, re))
    usage_fail("--name must be a plain name of letters, digits, '-' and '_' (1-64 characters), got '{}'", s);
  return s;
}

template <typename T>
std::optional<T> given(const cxxopts::ParseResult& r, const char* name) {
  return r.count(name) ? std::optional<T>(r[name].as<T>()) : std::nullopt;
}

}  // namespace

SampleRequest parse_sample_request(const Args_t& args) {
  Args a("sample",
         "Generate synthetic volumes with a trained latent diffusion model (resumable, shardable batch job). Writes "
         "NIfTI / DICOM / PNG, one sidecar JSON per volume, job.json (the job's settings) and OUT/manifest.jsonl.");
  a.add()("ldm", "LDM checkpoint (stage 2 last.pt, or the ldm.pt `meddiff import` wrote)", cxxopts::value<std::string>())
      ("vqgan", "Autoencoder checkpoint: the VQ-GAN (default: the one the LDM was trained with) or, for an imported model, "
                "the KL autoencoder (default: autoencoder.pt beside --ldm)", cxxopts::value<std::string>())
      ("shape", "Imported models: output size x,y,z in voxels (multiples of the networks' downsampling)", cxxopts::value<std::string>())
      ("spacing", "Imported models: voxel spacing x,y,z in mm (MAISI's U-Net takes it as an input)", cxxopts::value<std::string>())
      ("modality-class", "Imported MAISI models: the modality code (1 CT, 9 T1, 10 T2, 11 FLAIR, 20 SWI, ...)", cxxopts::value<int64_t>())
      ("initial-noise", "Imported models: a tensor file (torch.save) of starting noise [N, C, x, y, z] in the network's layout; "
                        "volumes 0..N-1 start from it instead of the seeded noise (to reproduce a MONAI run)", cxxopts::value<std::string>())
      ("n", "Number of volumes (global count, across shards; at most 1000000)", cxxopts::value<int64_t>()->default_value("1"))
      ("class", "Class of every volume (default: volume i gets class i mod the number of classes)", cxxopts::value<int64_t>())
      ("guidance", "Classifier-free guidance weight (1 = none; default from the config)", cxxopts::value<double>())
      ("sampler", "ddpm, ddim or dpmpp2m (diffusion models); euler or heun (rectified-flow models); default from the config", cxxopts::value<std::string>())
      ("steps", "Sampler steps (default from the config)", cxxopts::value<int64_t>())
      ("eta", "DDIM eta (default from the config)", cxxopts::value<double>())
      ("dynamic-threshold", "Dynamic thresholding percentile, e.g. 0.995 (0 = off)", cxxopts::value<double>())
      ("grid", "Timesteps of ddpm/ddim/dpmpp2m: uniform (in t), logsnr or karras (default from the config)", cxxopts::value<std::string>())
      ("seed", "Seed: volume i depends only on (seed, i)", cxxopts::value<uint64_t>()->default_value("0"))
      ("batch", "Volumes per batch (default from the config)", cxxopts::value<int64_t>())
      ("precision", "fp32, or bf16 (CUDA only: the networks under bf16 autocast; the sampler update stays fp32)",
       cxxopts::value<std::string>()->default_value("fp32"))
      ("batch-networks", "Run the batch's volumes and the guidance pair in one network forward (faster on a GPU; the "
                         "same volumes up to float rounding, not bit-identical to the default one-volume forwards)")
      ("shard", "Do shard K of N: volumes i with i mod N = K-1", cxxopts::value<std::string>()->default_value("1/1"))
      ("format", "Comma-separated: nifti, dicom, png", cxxopts::value<std::string>()->default_value("nifti"))
      ("layout", "flat (synth_NNNNNN.*) or nnunet (imagesTr/<name>_NNNN_0000.nii.gz + dataset.json); --finalize reads "
                 "it from the folder's job.json", cxxopts::value<std::string>()->default_value("flat"))
      ("name", "Case name prefix for the nnunet layout (letters, digits, '-', '_')", cxxopts::value<std::string>()->default_value("meddiff"))
      ("device", "auto, cpu, cuda, cuda:N", cxxopts::value<std::string>()->default_value("auto"))
      ("max-memory", "Memory budget of the decoder in GiB (default: the config's sample.max_memory_gib, else automatic); "
                     "volumes larger than it decode in slabs, with the same result", cxxopts::value<double>())
      ("labels", "Label-conditioned models and imported MAISI models with a ControlNet: the label maps to generate images for "
                 "(one label file, a folder of them, or a CSV/JSON manifest with a label column -- an image column is not needed -- "
                 "and optionally a class column; relative paths are read from the manifest's folder); volume i takes map i mod "
                 "their count", cxxopts::value<std::string>())
      ("mask-bank", "Label-conditioned models: the bank of training label maps (default: mask_bank.pt beside --ldm)",
       cxxopts::value<std::string>())
      ("augment-labels", "on or off: random flips, rotations, scalings and elastic deformation of each label map "
                         "(default: on for the mask bank, off for --labels)", cxxopts::value<std::string>())
      ("remove-label", "Comma-separated labels to remove from every map (e.g. 4: no lesion)", cxxopts::value<std::string>()->default_value(""))
      ("scale-label", "LABEL=FACTOR[,...]: scale a label's region about its centre (e.g. 4=1.5)", cxxopts::value<std::string>()->default_value(""))
      ("qc-retries", "Label-conditioned models: regenerate a pair whose per-label intensities fall outside the training "
                     "ranges up to this many times (next seeds), then keep it marked as failed", cxxopts::value<int64_t>()->default_value("3"))
      ("qc-ranges", "Label-conditioned models: what the per-pair check accepts: training (the per-label intensity ranges of the "
                    "training images; default) or union (also what the VQ-GAN reproduces of them: risky, it passes pairs whose "
                    "labels look as the autoencoder renders them, e.g. washed-out small dark structures, which teach a segmenter "
                    "a wrong appearance)", cxxopts::value<std::string>()->default_value("training"))
      ("eval", "After sampling, run `meddiff eval` on the folder against these held-out real volumes (a folder or manifest); "
               "results in OUT/eval/", cxxopts::value<std::string>())
      ("eval-train", "With --eval: the training volumes for the memorisation audit (default: the LDM's data.manifest)",
       cxxopts::value<std::string>())
      ("force", "When --out was sampled with other settings: discard its volumes and start again; for an imported MAISI "
                "model, also sample a --shape / --spacing outside the ranges MAISI documents as reliable")
      ("dry-run", "Print what would be done (counts, measured time and memory per volume) and write nothing")
      ("finalize", "Only rebuild OUT/manifest.jsonl (and dataset.json) from the finished volumes' sidecars, and remove the "
                   "files of unfinished volumes a killed job left (the layout and name come from the folder's job.json)")
      ("out", "Output folder", cxxopts::value<std::string>());
  auto r = a.parse(args);
  SampleRequest q;
  q.out = required(r, "out");
  if (q.out.filename().empty() && q.out.has_parent_path()) q.out = q.out.parent_path();
  q.layout.kind = r["layout"].as<std::string>();
  if (q.layout.kind != "flat" && q.layout.kind != "nnunet") usage_fail("--layout must be flat or nnunet (got '{}')", q.layout.kind);
  q.layout.name = parse_name(r["name"].as<std::string>());
  q.layout_given = r.count("layout") > 0 || r.count("name") > 0;
  q.finalize = r.count("finalize") > 0;
  q.dry_run = r.count("dry-run") > 0;
  q.force = r.count("force") > 0;
  if (q.finalize) return q;  // nothing else is read
  q.ldm_path = required(r, "ldm");
  q.vqgan_path = given<std::string>(r, "vqgan").value_or("");
  q.n = r["n"].as<int64_t>();
  if (q.n < 1 || q.n > kMaxVolumes) usage_fail("-n must be within 1..{} (got {}); split larger jobs over several folders", kMaxVolumes, q.n);
  q.shard = parse_shard(r["shard"].as<std::string>());
  q.shard_given = r.count("shard") > 0;
  q.eval = given<std::string>(r, "eval").value_or("");
  q.eval_train = given<std::string>(r, "eval-train").value_or("");
  if (!q.eval_train.empty() && q.eval.empty()) usage_fail("--eval-train needs --eval REAL");
  q.formats = parse_formats(r["format"].as<std::string>());
  if (q.layout.kind == "nnunet" && !q.formats.count("nifti")) usage_fail("--layout nnunet needs --format nifti");
  q.seed = r["seed"].as<uint64_t>();
  q.fixed_class = given<int64_t>(r, "class");
  q.sampler = given<std::string>(r, "sampler");
  q.grid = given<std::string>(r, "grid");
  q.steps = given<int64_t>(r, "steps");
  q.batch = given<int64_t>(r, "batch");
  if (q.batch && *q.batch < 1) usage_fail("--batch must be at least 1");
  q.eta = given<double>(r, "eta");
  q.guidance = given<double>(r, "guidance");
  q.dynamic_threshold = given<double>(r, "dynamic-threshold");
  q.max_memory_gib = given<double>(r, "max-memory");
  if (q.max_memory_gib && !(*q.max_memory_gib >= 0))
    usage_fail("--max-memory must be a positive number of GiB (got {})", *q.max_memory_gib);
  q.batch_networks = r.count("batch-networks") > 0;
  const std::string precision = r["precision"].as<std::string>();
  if (precision != "fp32" && precision != "bf16") usage_fail("--precision must be fp32 or bf16 (got '{}')", precision);
  q.bf16 = precision == "bf16";
  q.device = r["device"].as<std::string>();
  q.labels = given<std::string>(r, "labels").value_or("");
  q.mask_bank = given<std::string>(r, "mask-bank").value_or("");
  if (auto v = given<std::string>(r, "augment-labels")) {
    if (*v != "on" && *v != "off") usage_fail("--augment-labels must be on or off (got '{}')", *v);
    q.augment_labels = *v == "on";
  }
  q.remove_label = r["remove-label"].as<std::string>();
  q.scale_label = r["scale-label"].as<std::string>();
  q.qc_retries = r["qc-retries"].as<int64_t>();
  if (q.qc_retries < 0 || q.qc_retries > 100) usage_fail("--qc-retries must be within 0..100 (got {})", q.qc_retries);
  q.qc_ranges = r["qc-ranges"].as<std::string>();
  if (r.count("shape")) q.output.shape = parse_int3(r["shape"].as<std::string>(), "--shape");
  if (r.count("spacing")) q.output.spacing = parse_double3(r["spacing"].as<std::string>(), "--spacing");
  q.output.modality_class = given<int64_t>(r, "modality-class");
  q.output.force = q.force;
  q.initial_noise = given<std::string>(r, "initial-noise").value_or("");
  if (q.qc_ranges != "training" && q.qc_ranges != "union") usage_fail("--qc-ranges must be training or union (got '{}')", q.qc_ranges);
  for (const auto& in : {q.ldm_path, q.vqgan_path, q.labels, q.mask_bank, q.initial_noise})
    if (!in.empty() && is_within(in, q.out)) fail("{}: holds the input {}; give another folder for the samples", q.out.string(), in);
  return q;
}

ResolvedSampling resolve_sampler(const SampleRequest& q, const LoadedLDM& ldm, const torch::Device& device) {
  const auto& d = ldm.sample;
  ResolvedSampling out;
  auto& sp = out.sp;
  sp.sampler = q.sampler.value_or(d.sampler);
  sp.steps = q.steps.value_or(d.steps);
  // steps 0 (the config default): the sampler's measured default; an unknown sampler keeps 0 so that
  // validate names the sampler, not the steps
  const bool known = sp.sampler == "ddpm" || sp.sampler == "ddim" || sp.sampler == "dpmpp2m" || sp.sampler == "euler" || sp.sampler == "heun";
  if (sp.steps == 0 && !q.steps && known) sp.steps = default_steps(sp.sampler, ldm.sampler_T());
  sp.eta = q.eta.value_or(d.eta);
  sp.guidance = q.guidance.value_or(d.guidance);
  sp.clip_x0 = d.clip_x0;
  sp.dynamic_threshold = q.dynamic_threshold.value_or(d.dynamic_threshold);
  sp.grid = q.grid.value_or(ldm.rflow ? "uniform" : d.grid);
  if (ldm.maisi && sp.sampler != "euler") usage_fail("--sampler {}: an imported MAISI model samples with MAISI's Euler steps (euler)", sp.sampler);
  sp.batch_networks = q.batch_networks;
  if (q.bf16 && !device.is_cuda())
    usage_fail("--precision bf16 is for CUDA devices (on this CPU, bf16 convolutions were measured slower than fp32)");
  sp.bf16 = q.bf16;
  try {
    sp.validate(ldm.sampler_T());
  } catch (const Error& e) {
    usage_fail("{}", e.what());
  }
  out.batch = q.batch.value_or(d.batch);
  if (out.batch < 1) usage_fail("--batch must be at least 1");
  if (q.fixed_class) {
    if (ldm.num_classes == 0) usage_fail("--class: this model is unconditional");
    if (*q.fixed_class < 0 || *q.fixed_class >= ldm.num_classes)
      usage_fail("--class must be within 0..{} for this model (got {})", ldm.num_classes - 1, *q.fixed_class);
  }
  if (ldm.num_labels == 0) {
    if (!q.labels.empty()) usage_fail("--labels: this model is not conditioned on label maps (train it with data.labels = condition)");
    if (!q.mask_bank.empty()) usage_fail("--mask-bank: this model is not conditioned on label maps (train it with data.labels = condition)");
    if (q.augment_labels) usage_fail("--augment-labels: this model is not conditioned on label maps (train it with data.labels = condition)");
    if (!q.remove_label.empty() || !q.scale_label.empty())
      usage_fail("--remove-label / --scale-label: this model is not conditioned on label maps");
  } else if (q.qc_ranges == "union") {
    log_warn("--qc-ranges union: the pair check also accepts the intensities the VQ-GAN reproduces, so pairs whose labels look "
             "as the autoencoder renders them (not as the training images) pass; measure them with meddiff eval --downstream seg");
  }
  return out;
}

int64_t class_of(const SampleRequest& q, const LoadedLDM& ldm, int64_t index) {
  if (q.fixed_class) return *q.fixed_class;
  if (ldm.fixed_class) return *ldm.fixed_class;
  return ldm.num_classes > 0 ? index % ldm.num_classes : 0;
}

nlohmann::json job_settings(const SampleRequest& q, const LoadedLDM& ldm, const SamplerParams& sp, const std::string& ldm_sha,
                            const std::string& vq_sha, const nlohmann::json& label_settings) {
  nlohmann::json formats = nlohmann::json::array();
  for (const auto& f : q.formats) formats.push_back(f);
  const int64_t k = std::max<int64_t>(1, ldm.num_classes);
  nlohmann::json s = {{"ldm_sha256", ldm_sha},
                      {"vqgan_sha256", vq_sha},
                      {"seed", q.seed},
                      {"class_rule", q.fixed_class     ? fmt::format("fixed {}", *q.fixed_class)
                                     : ldm.fixed_class ? fmt::format("fixed {}", *ldm.fixed_class)
                                                       : fmt::format("index mod {}", k)},
                      {"sampler", sp.sampler},
                      {"steps", sp.steps},
                      {"eta", sp.eta},
                      {"guidance", sp.guidance},
                      {"clip_x0", sp.clip_x0},
                      {"dynamic_threshold", sp.dynamic_threshold},
                      {"precision", sp.bf16 ? "bf16" : "fp32"},
                      {"layout", q.layout.kind},
                      {"formats", formats},
                      {"name", q.layout.kind == "nnunet" ? q.layout.name : ""}};
  if (sp.grid != "uniform") s["grid"] = sp.grid;              // absent for uniform: folders sampled before the key keep matching
  if (sp.batch_networks) s["batch_networks"] = true;          // volumes then depend on the batch they were made in
  if (!ldm.family.empty()) {                                   // imported models: the grid chosen for the job
    s["shape"] = {ldm.data.shape[2], ldm.data.shape[1], ldm.data.shape[0]};
    s["spacing"] = ldm.geometry.spacing;
    if (ldm.fixed_class) s["modality_class"] = *ldm.fixed_class;
    if (ldm.recipe.contains("controlnet")) s["controlnet_sha256"] = ldm.recipe["controlnet"].value("sha256", std::string());
  }
  if (!q.initial_noise.empty()) s["initial_noise_sha256"] = sha256_file(q.initial_noise);
  if (ldm.num_labels > 0) {
    s["labels"] = label_settings;
    if (!q.fixed_class) s["class_rule"] = fmt::format("the label map's class, else index mod {}", k);
    s["qc_retries"] = q.qc_retries;
    s["qc_ranges"] = q.qc_ranges;
  }
  return s;
}

}  // namespace meddiff::cli
