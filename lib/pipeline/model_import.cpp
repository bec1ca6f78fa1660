#include "pipeline/model_import.h"

#include "core/config.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/sha256.h"
#include "core/torch_file.h"
#include "models/autoencoder_kl.h"
#include "models/monai_controlnet.h"
#include "models/monai_unet.h"
#include "models/state_dict.h"

#include <regex>

namespace meddiff {
namespace fs = std::filesystem;

namespace {

// A definition with every "@name" argument replaced by the value it names, as the checkpoint records it.
nlohmann::json resolved(const nlohmann::json& def, const nlohmann::json& root) {
  nlohmann::json out = def;
  for (auto& [k, v] : out.items())
    if (v.is_string() && !v.get<std::string>().empty() && v.get<std::string>()[0] == '@' && root.contains(v.get<std::string>().substr(1)))
      v = root.at(v.get<std::string>().substr(1));
  return out;
}

nlohmann::json source_of(const fs::path& p) {
  return {{"file", p.filename().string()}, {"bytes", static_cast<int64_t>(fs::file_size(p))}, {"sha256", sha256_file(p)}};
}

// Unused weights: an attention output projection the network is built without (older MONAI created one anyway).
bool unused_projection(const std::string& key) { return key.find("attn.out_proj.") != std::string::npos; }

void warn_unused(const std::vector<std::string>& keys, const fs::path& file, std::vector<std::string>& warnings) {
  if (keys.empty()) return;
  warnings.push_back(fmt::format("{}: {} weight(s) the network does not use (as MONAI ignores them), e.g. {}", file.string(), keys.size(),
                                 keys.front()));
}

// A checkpoint of one imported network: its weights under `prefix`, its family and definition, its source file.
Checkpoint network_checkpoint(const std::string& kind, bool maisi, const nlohmann::json& def, const nlohmann::json& root,
                              const fs::path& file, const std::string& prefix, const torch::nn::Module& m) {
  Checkpoint c;
  c.kind = kind;
  c.config = {{"family", maisi ? "maisi" : "monai"}, {"network", resolved(def, root)}};
  c.extra = {{"source", source_of(file)}};
  c.put_module(prefix, m);
  return c;
}

Checkpoint autoencoder_checkpoint(const nlohmann::json& def, const nlohmann::json& root, const fs::path& file, const std::string& where,
                                  const KeyRename& rename, std::vector<std::string>& warnings) {
  auto m = kl_from_monai(def, root, where);
  AutoencoderKL ae(m.params, m.in_channels);
  const PyRef contents = read_torch_file(file);  // a raw state dict, or one under "unet_state_dict" as MAISI also saves it
  auto sd = state_dict_of(*contents, file, contents->get("unet_state_dict") ? "unet_state_dict" : "");
  KeyRename r = m.maisi ? KeyRename([&](const std::string& k) { return maisi_autoencoder_key(rename ? rename(k) : k); }) : rename;
  warn_unused(load_state_dict(*ae, sd, file.string(), r, unused_projection), file, warnings);
  return network_checkpoint("kl-autoencoder", m.maisi, def, root, file, "autoencoder", *ae);
}

// `contents`: the file as read_torch_file read it (its other entries give the recipe).
Checkpoint unet_checkpoint(const nlohmann::json& def, const nlohmann::json& root, const fs::path& file, const PyValue& contents,
                           const std::string& key, const std::string& where, const KeyRename& rename, std::vector<std::string>& warnings) {
  auto p = monai_unet_from_json(def, root, where);
  MonaiUNet net(p);
  warn_unused(load_state_dict(*net, state_dict_of(contents, file, key), file.string(), rename, unused_projection), file, warnings);
  return network_checkpoint("monai-unet", p.maisi, def, root, file, "unet", *net);
}

// MAISI's ControlNet: its file's weights, and the U-Net's (`unet`) for any it lacks, as NV-Generate-CTMR loads it.
Checkpoint controlnet_checkpoint(const nlohmann::json& def, const nlohmann::json& root, const fs::path& file, const TensorMap& unet,
                                 int64_t autoencoder_downsample, const std::string& where, std::vector<std::string>& warnings) {
  auto p = monai_controlnet_from_json(def, root, where);
  if (p.cond_downsample() != autoencoder_downsample)
    fail("{}: the conditioning embedding downsamples by {} (conditioning_embedding_num_channels), the autoencoder by {}: the "
         "embedded label map would not lie on the latent grid", where, p.cond_downsample(), autoencoder_downsample);
  MonaiControlNet net(p);
  const PyRef contents = read_torch_file(file);
  auto sd = state_dict_of(*contents, file, contents->get("controlnet_state_dict") ? "controlnet_state_dict" : "");
  int64_t from_unet = 0;
  auto fill = [&](const std::string& k, const torch::Tensor& t) {
    auto u = unet.find(k);
    if (sd.count(k) || u == unet.end() || !u->second.sizes().equals(t.sizes())) return;
    sd[k] = u->second;
    ++from_unet;
  };
  for (const auto& kv : net->named_parameters()) fill(kv.key(), kv.value());
  for (const auto& kv : net->named_buffers()) fill(kv.key(), kv.value());
  if (from_unet > 0)
    warnings.push_back(fmt::format("{}: {} weight(s) the file lacks taken from the U-Net, as NV-Generate-CTMR's copy_model_state does",
                                   file.string(), from_unet));
  warn_unused(load_state_dict(*net, sd, file.string(), {}, unused_projection), file, warnings);
  return network_checkpoint("monai-controlnet", p.unet.maisi, def, root, file, "controlnet", *net);
}

const nlohmann::json& required_def(const nlohmann::json& root, std::initializer_list<const char*> keys, const fs::path& file) {
  for (const char* k : keys)
    if (root.contains(k)) return root.at(k);
  fail("{}: has no '{}' network definition", file.string(), *keys.begin());
}

}  // namespace

ImportedModel import_maisi(const MaisiFiles& f) {
  ImportedModel out;
  const auto root = load_json_file(f.network_config.string());
  const std::string where = f.network_config.filename().string();
  if (f.steps < 1 || f.steps > 1000) fail("--steps must be within 1..1000 (got {})", f.steps);
  if (!(f.guidance >= 0)) fail("--guidance must not be negative (got {})", f.guidance);
  out.autoencoder = autoencoder_checkpoint(required_def(root, {"autoencoder_def"}, f.network_config), root, f.autoencoder,
                                           where + ": autoencoder_def", {}, out.warnings);
  const PyRef file = read_torch_file(f.unet);
  out.unet = unet_checkpoint(required_def(root, {"diffusion_unet_def"}, f.network_config), root, f.unet, *file, "unet_state_dict",
                             where + ": diffusion_unet_def", {}, out.warnings);
  if (!f.controlnet.empty()) {
    const auto ae = kl_from_monai(required_def(root, {"autoencoder_def"}, f.network_config), root, where + ": autoencoder_def");
    out.controlnet = controlnet_checkpoint(required_def(root, {"controlnet_def"}, f.network_config), root, f.controlnet,
                                           state_dict_of(*file, f.unet, "unet_state_dict"), ae.params.downsample(),
                                           where + ": controlnet_def", out.warnings);
    out.controlnet->extra["unet_source"] = out.unet.extra.at("source");  // the U-Net it was trained with
  }
  // The U-Net file's own entries: the latent scale factor and the training steps.
  auto sf = file->get("scale_factor");
  if (!sf) fail("{}: has no 'scale_factor' (a MAISI U-Net file holds one)", f.unet.string());
  double scale_factor = sf->kind == PyValue::Kind::Tensor ? sf->tensor.item<double>() : sf->kind == PyValue::Kind::Float ? sf->f
                                                                                                                        : static_cast<double>(sf->i);
  auto sched = root.value("noise_scheduler", nlohmann::json::object());
  auto train_steps = file->get("num_train_timesteps");
  nlohmann::json recipe = {
      {"scheduler", "rflow-maisi"},
      {"num_train_timesteps", sched.value("num_train_timesteps", train_steps && train_steps->kind == PyValue::Kind::Int ? train_steps->i : 1000)},
      {"use_discrete_timesteps", sched.value("use_discrete_timesteps", false)},
      {"use_timestep_transform", sched.value("use_timestep_transform", true)},
      {"base_img_size_numel", sched.value("base_img_size_numel", 32 * 32 * 32)},
      {"steps", f.steps},
      {"guidance", f.guidance},
      {"unconditional_class", 0},
      {"scale_factor", scale_factor},
      {"spacing_scale", 100.0},
      // NV-Generate-CTMR's output mapping: CT (modality codes 1-7) x * 2000 - 1000 clipped to [-1000, 1000]; MR (8 and
      // above) x * 1000, at least 0; int16.
      {"output", {{"ct", {{"scale", 2000.0}, {"offset", -1000.0}, {"min", -1000.0}, {"max", 1000.0}}},
                  {"mr", {{"scale", 1000.0}, {"offset", 0.0}, {"min", 0.0}}}}},
      {"modality_codes", {{"CT", 1}, {"T1", 9}, {"T2", 10}, {"FLAIR", 11}, {"SWI", 20}}}};
  out.unet.config["recipe"] = recipe;
  return out;
}

ImportedModel import_monai_bundle(const fs::path& dir) {
  ImportedModel out;
  const fs::path cfg = dir / "configs" / "inference.json";
  if (!fs::is_directory(dir)) fail("{}: no such folder (a MONAI bundle: configs/inference.json, models/)", dir.string());
  const auto root = load_json_file(cfg.string());
  const std::string where = "configs/inference.json";
  out.autoencoder = autoencoder_checkpoint(required_def(root, {"autoencoder_def"}, cfg), root, dir / "models" / "model_autoencoder.pt",
                                           where + ": autoencoder_def", monai_generative_key, out.warnings);
  const fs::path unet_file = dir / "models" / "model.pt";
  out.unet = unet_checkpoint(required_def(root, {"network_def", "diffusion_unet_def", "diffusion_def"}, cfg), root, unet_file,
                             *read_torch_file(unet_file), "", where + ": network_def", monai_generative_key, out.warnings);
  auto sched = root.value("noise_scheduler", nlohmann::json::object());
  const std::string target = sched.value("_target_", std::string());
  if (target.find("DDIMScheduler") == std::string::npos && target.find("DDPMScheduler") == std::string::npos)
    fail("{}: noise_scheduler '{}' is not a DDIM or DDPM scheduler", cfg.string(), target);
  int64_t steps = 50;
  std::smatch m;
  const std::string set = root.value("set_timesteps", std::string());
  if (std::regex_search(set, m, std::regex("num_inference_steps\\s*=\\s*(\\d+)"))) steps = std::stoll(m[1]);
  out.unet.config["recipe"] = {
      {"scheduler", target.find("DDIM") != std::string::npos ? "ddim" : "ddpm"},
      {"num_train_timesteps", sched.value("num_train_timesteps", 1000)},
      {"beta_start", sched.value("beta_start", 0.0015)},
      {"beta_end", sched.value("beta_end", 0.0195)},
      {"beta_schedule", sched.value("schedule", std::string("scaled_linear_beta"))},
      {"clip_sample", sched.value("clip_sample", false)},
      {"prediction", sched.value("prediction_type", std::string("epsilon"))},
      // MONAI Generative's schedulers visit every (T / steps)-th timestep from 0; MONAI's own round(linspace(T - 1, 0, steps))
      {"timesteps", target.rfind("generative.", 0) == 0 ? "leading" : "monai"},
      {"steps", steps},
      {"guidance", 0.0},
      // the bundle's sampler decodes the latent as it comes out (no division by a scale factor)
      {"scale_factor", root.contains("scale_factor") && root["scale_factor"].is_number() ? root["scale_factor"].get<double>() : 1.0}};
  return out;
}

}  // namespace meddiff
