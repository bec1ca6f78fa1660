#include "pipeline/imported_ldm.h"

#include "core/error.h"
#include "core/log.h"
#include "core/sha256.h"

#include <limits>
#include <set>

namespace meddiff {
namespace fs = std::filesystem;

namespace {

Prediction monai_prediction(const std::string& p, const fs::path& path) {
  if (p == "epsilon") return Prediction::Eps;
  if (p == "v_prediction") return Prediction::V;
  if (p == "sample") return Prediction::X0;
  fail("{}: prediction type '{}' is not epsilon, v_prediction or sample", path.string(), p);
}

bool is_ct_code(int64_t code) { return code < 8; }  // NV-Generate-CTMR: codes 8 and above are MR

}  // namespace

LoadedLDM load_imported_ldm(const Checkpoint& c, const fs::path& path, const torch::Device& device) {
  if (!c.config.contains("network") || !c.config.contains("recipe"))
    fail("{}: has no network definition or sampling recipe (write it with meddiff import)", path.string());
  LoadedLDM l;
  l.config = c.config;
  l.family = c.config.value("family", "monai");
  l.recipe = c.config.at("recipe");
  const auto& r = l.recipe;
  const auto p = monai_unet_from_json(c.config.at("network"), nlohmann::json::object(), path.string());
  if (p.top_region_input || p.bottom_region_input)
    fail("{}: the U-Net takes body-region inputs (MAISI's first, DDPM generation); meddiff samples models without them, "
         "such as MAISI-v2's rectified-flow U-Nets", path.string());
  MonaiUNet net(p);
  c.load_module("unet", *net);
  net->to(device);
  net->eval();
  l.net = std::make_shared<MonaiDenoiser>(net, r.value("unconditional_class", int64_t{0}));
  l.num_classes = p.num_class_embeds;
  l.network_xyz = true;
  l.latent_shape = {p.in_channels, 0, 0, 0};  // the grid comes with the job (configure_output)
  l.step = c.step;
  // The latent is divided by the scale factor before decoding; the samplers do not clip it (unless the recipe says)
  const double sf = r.value("scale_factor", 1.0);
  if (!(sf > 0)) fail("{}: scale_factor must be positive (got {})", path.string(), sf);
  l.norm.kind = "scale_factor";
  l.norm.offset.assign(static_cast<size_t>(p.in_channels), 0.0);
  l.norm.scale.assign(static_cast<size_t>(p.in_channels), 1.0 / sf);
  l.norm.bound = 1.0;
  l.sample.batch = 1;
  l.sample.eta = 0;
  l.sample.dynamic_threshold = 0;
  l.sample.steps = r.value("steps", int64_t{30});
  l.sample.clip_x0 = false;
  const std::string sched = r.value("scheduler", std::string());
  if (sched == "rflow-maisi") {
    MaisiRFlowParams m;
    m.train_steps = r.value("num_train_timesteps", int64_t{1000});
    m.discrete = r.value("use_discrete_timesteps", false);
    m.timestep_transform = r.value("use_timestep_transform", true);
    m.base_voxels = r.value("base_img_size_numel", int64_t{32 * 32 * 32});
    l.maisi = m;
    l.rflow = true;
    l.sample.sampler = "euler";
    // MAISI's guidance 0 is no guidance: meddiff's weight 1
    const double g = r.value("guidance", 0.0);
    l.sample.guidance = g > 0 ? g : 1.0;
  } else if (sched == "ddim" || sched == "ddpm") {
    l.schedule = make_monai_schedule(r.value("beta_schedule", std::string("scaled_linear_beta")), r.value("num_train_timesteps", int64_t{1000}),
                                     r.value("beta_start", 0.0015), r.value("beta_end", 0.0195));
    l.prediction = monai_prediction(r.value("prediction", std::string("epsilon")), path);
    l.sample.sampler = sched;
    l.sample.grid = r.value("timesteps", std::string("monai"));
    l.sample.clip_x0 = r.value("clip_sample", false);  // MONAI clips the predicted sample to [-1, 1]
    const double g = r.value("guidance", 0.0);
    l.sample.guidance = g > 0 ? g : 1.0;
  } else {
    fail("{}: sampling recipe '{}' is not one meddiff runs (rflow-maisi, ddim, ddpm)", path.string(), sched);
  }
  // The autoencoder written beside it by meddiff import
  l.vqgan_path = (path.parent_path() / "autoencoder.pt").string();
  l.vqgan_sha256 = c.extra.value("autoencoder_sha256", std::string());
  l.imported_source_sha256 = c.extra.value("source", nlohmann::json::object()).value("sha256", std::string());
  return l;
}

void attach_controlnet(LoadedLDM& l, const fs::path& ldm_path, const torch::Device& device) {
  auto den = std::dynamic_pointer_cast<MonaiDenoiser>(l.net);
  if (l.family.empty() || !den) fail("{}: a ControlNet joins imported MAISI models only", ldm_path.string());
  const fs::path file = ldm_path.parent_path() / "controlnet.pt";
  if (!fs::exists(file))
    fail("--labels: {} has no ControlNet beside it ({}); import MAISI's with meddiff import maisi ... --controlnet "
         "controlnet_3d_rflow-ct.pt", ldm_path.string(), file.string());
  Checkpoint c = load_checkpoint_of_kind(file, "monai-controlnet", "a ControlNet written by meddiff import");
  const auto p = monai_controlnet_from_json(c.config.at("network"), nlohmann::json::object(), file.string());
  if (p.unet.in_channels != den->net->params.in_channels)
    fail("{}: takes latents of {} channels, the U-Net {}", file.string(), p.unet.in_channels, den->net->params.in_channels);
  const auto unet_source = c.extra.value("unet_source", nlohmann::json::object()).value("sha256", std::string());
  if (!l.imported_source_sha256.empty() && unet_source != l.imported_source_sha256)
    log_warn("{}: was imported with another U-Net file than {} (a fine-tuned U-Net keeps its ControlNet; otherwise check the pair)",
             file.string(), ldm_path.string());
  MonaiControlNet net(p);
  c.load_module("controlnet", *net);
  net->to(device);
  net->eval();
  l.net = std::make_shared<MonaiControlNetDenoiser>(den->net, den->null, net);
  l.num_labels = int64_t{1} << p.cond_in_channels;
  l.label_names = label_names_or_default({}, l.num_labels);
  l.label_embedding = [net](const torch::Tensor& label_dhw) mutable {
    torch::NoGradGuard ng;
    return net->embed_label(label_dhw.permute({2, 1, 0}).contiguous()).squeeze(0).to(torch::kCPU);  // the network's (x, y, z)
  };
  l.background_to_minimum = true;
  l.recipe["controlnet"] = {{"file", file.filename().string()}, {"sha256", sha256_file(file)}};
}

torch::Tensor maisi_spacing_value(const nlohmann::json& recipe, const torch::Tensor& spacing_mm) {
  return (spacing_mm.to(torch::kDouble) * recipe.value("spacing_scale", 100.0)).to(torch::kHalf).to(torch::kFloat);
}

std::string maisi_range_problem(int64_t code, const std::array<int64_t, 3>& n, const std::array<double, 3>& s) {
  auto fmt_shape = [&] { return fmt::format("{}x{}x{}", n[0], n[1], n[2]); };
  if (is_ct_code(code)) {
    static const std::set<int64_t> xy{256, 384, 512}, z{128, 256, 384, 512, 640, 768};
    if (n[0] != n[1] || !xy.count(n[0]) || !z.count(n[2]))
      return fmt::format("--shape {}: MAISI documents CT outputs of x = y in 256, 384, 512 and z in 128, 256, ..., 768 voxels", fmt_shape());
    if (s[0] != s[1] || s[0] < 0.5 || s[0] > 3.0 || s[2] < 0.5 || s[2] > 5.0)
      return fmt::format("--spacing {},{},{}: MAISI documents CT spacings of x = y in [0.5, 3] mm and z in [0.5, 5] mm", s[0], s[1], s[2]);
    if (static_cast<double>(n[0]) * s[0] < 256)
      return fmt::format("--shape {} at --spacing {},{},{}: a field of view of {:.0f} mm in x and y; MAISI recommends at least 256 mm "
                         "(384 mm for the abdomen)", fmt_shape(), s[0], s[1], s[2], static_cast<double>(n[0]) * s[0]);
    return "";
  }
  const bool ok = (n[2] == 128 && n[0] == n[1] && (n[0] == 128 || n[0] == 256 || n[0] == 384 || n[0] == 512)) ||
                  (n[2] == 256 && ((n[0] == 128 && n[1] == 256) || (n[0] == 256 && n[1] == 128) || (n[0] == 256 && n[1] == 256)));
  if (!ok)
    return fmt::format("--shape {}: MAISI documents MR outputs of z 128 with x = y in 128, 256, 384, 512, or z 256 with x,y "
                       "128,256 / 256,128 / 256,256", fmt_shape());
  for (double v : s)
    if (v < 0.4 || v > 5.0) return fmt::format("--spacing {},{},{}: MAISI documents MR spacings within [0.4, 5] mm", s[0], s[1], s[2]);
  return "";
}

void configure_output(LoadedLDM& ldm, const OutputRequest& q, int64_t autoencoder_downsample) {
  if (ldm.family.empty()) {
    if (q.shape || q.spacing || q.modality_class)
      fail("--shape, --spacing and --modality-class are for imported MONAI / MAISI models; a model meddiff trained samples the "
           "grid it was trained on");
    return;
  }
  auto* den = dynamic_cast<MonaiDenoiser*>(ldm.net.get());
  if (!den) fail("an imported model without its MONAI U-Net");
  const auto& p = den->net->params;
  if (!q.shape) fail("--shape: give the output size in voxels x,y,z (an imported model has no fixed grid)");
  if (!q.spacing) fail("--spacing: give the voxel spacing in mm x,y,z (an imported model has no fixed grid)");
  const auto n = *q.shape;
  const auto s = *q.spacing;
  const int64_t f = autoencoder_downsample * p.downsample();
  for (size_t a = 0; a < 3; ++a) {
    if (n[a] < f || n[a] % f != 0)
      fail("--shape {},{},{}: every size must be a multiple of {} (the autoencoder's downsampling {} x the U-Net's {})", n[0], n[1], n[2], f,
           autoencoder_downsample, p.downsample());
    if (!(s[a] > 0 && s[a] < 100)) fail("--spacing {},{},{}: spacings must be within (0, 100) mm", s[0], s[1], s[2]);
  }
  int64_t code = -1;
  if (p.num_class_embeds > 0) {
    if (!q.modality_class)
      fail("--modality-class: this model is conditioned on a modality code (MAISI: 1 CT, 9 T1, 10 T2, 11 FLAIR, 20 SWI; "
           "the recipe's codes: {})", ldm.recipe.value("modality_codes", nlohmann::json::object()).dump());
    code = *q.modality_class;
    if (code < 0 || code >= p.num_class_embeds) fail("--modality-class must be within 0..{} (got {})", p.num_class_embeds - 1, code);
    ldm.fixed_class = code;
  } else if (q.modality_class) {
    fail("--modality-class: this model takes no modality code");
  }
  if (ldm.family == "maisi") {
    const std::string problem = maisi_range_problem(std::max<int64_t>(code, 0), n, s);
    if (!problem.empty()) {
      if (!q.force) fail("{}; outside that the model is not known to be reliable (--force samples it anyway)", problem);
      log_warn("{} (sampling anyway: --force)", problem);
    }
  }
  if (p.spacing_input) den->set_spacing(maisi_spacing_value(ldm.recipe, torch::tensor({s[0], s[1], s[2]}, torch::kDouble)).view({1, 3}));
  ldm.latent_shape = {p.in_channels, n[0] / autoencoder_downsample, n[1] / autoencoder_downsample, n[2] / autoencoder_downsample};
  ldm.geometry = Geometry{};
  ldm.geometry.spacing = s;
  ldm.geometry.direction = {-1, 0, 0, 0, -1, 0, 0, 0, 1};  // RAS axes (MAISI's affine diag(spacing)) in LPS
  ldm.data.shape = {n[2], n[1], n[0]};
  ldm.data.spacing = s;
  // The output mapping of the recipe (NV-Generate-CTMR: CT x * 2000 - 1000 within [-1000, 1000], MR x * 1000 >= 0): the
  // autoencoder's [0, 1] is meddiff's [-1, 1], so the CT window is [-1000, 1000] HU and +1 is 1000 in MR
  const auto out = ldm.recipe.value("output", nlohmann::json::object());
  const bool ct = ldm.family == "maisi" && is_ct_code(std::max<int64_t>(code, 0));
  ldm.modality = ct ? Modality::CT : Modality::MR;
  ldm.data.modality = ct ? "ct" : "mr";
  if (ct && out.contains("ct")) {
    const auto& m = out.at("ct");
    ldm.data.ct_window = {m.value("offset", -1000.0), m.value("offset", -1000.0) + m.value("scale", 2000.0)};
  }
  if (!ct && out.contains("mr")) ldm.data.mr_output_max = out.at("mr").value("scale", 1000.0);
  // MAISI writes MR as x * 1000 kept >= 0 only: values above the scale stay (CT is clipped to its window)
  ldm.output_top = ct ? 1.0 : std::numeric_limits<double>::infinity();
}

}  // namespace meddiff
