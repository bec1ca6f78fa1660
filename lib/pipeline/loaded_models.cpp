#include "pipeline/loaded_models.h"

#include "core/checkpoint.h"
#include "core/error.h"
#include "pipeline/imported_ldm.h"

namespace meddiff {
namespace {
template <typename T>
T section(const nlohmann::json& config, const char* key) {
  return config_from_json<T>(config.contains(key) ? config.at(key) : nlohmann::json::object(), key);
}
}  // namespace

LoadedAutoencoder load_autoencoder(const std::filesystem::path& path, const torch::Device& device, std::optional<Modality> imported_as) {
  Checkpoint c = load_checkpoint(path);
  if (c.kind != "vqgan" && c.kind != "kl-autoencoder")
    fail("{}: is a '{}' checkpoint, not a VQ-GAN or KL autoencoder (train-vqgan's last.pt)", path.string(), c.kind);
  if (!c.config.contains("network")) return load_autoencoder(c, device);
  if (!imported_as || *imported_as == Modality::Unknown)
    fail("{}: is an autoencoder brought in by meddiff import, without a training run's settings: give --modality ct or mr "
         "(reconstruct, eval), or fine-tune it on your data first (train-vqgan --init)", path.string());
  LoadedAutoencoder out;
  out.config = c.config;
  out.step = c.step;
  auto kl = load_imported_kl(c, path.string(), device);
  out.imported = kl->family();
  out.autoencoder.kind = "kl";
  out.autoencoder.kl = kl->model->params;
  out.data.modality = *imported_as == Modality::CT ? "ct" : "mr";
  out.data.ct_window = {-1000, 1000};   // MAISI's CT range, [0, 1] to the network
  out.data.mr_percentiles = {0, 99.5};  // MAISI's and the BraTS bundle's MR scaling
  out.data.spacing = {0, 0, 0};         // any: the networks are convolutional
  const int64_t in = kl->model->channels;
  for (int64_t i = 0; in > 1 && i < in; ++i) out.data.channels.push_back(fmt::format("channel_{}", i));
  out.ae = kl;
  return out;
}

LoadedAutoencoder load_autoencoder(const Checkpoint& c, const torch::Device& device) {
  LoadedAutoencoder out;
  out.config = c.config;
  out.data = section<DataParams>(c.config, "data");
  out.autoencoder = section<AutoencoderParams>(c.config, "autoencoder");
  out.vqgan = section<VQGANParams>(c.config, "vqgan");
  out.sample = section<SampleDefaults>(c.config, "sample");
  out.step = c.step;
  if ((c.kind == "kl-autoencoder") != out.autoencoder.is_kl())
    fail("a '{}' checkpoint whose config says autoencoder.kind = {}", c.kind, out.autoencoder.kind);
  if (out.autoencoder.is_kl()) {
    AutoencoderKL m(out.autoencoder.kl, out.data.image_channels());
    c.load_module("autoencoder", *m);
    m->to(device);
    m->eval();
    out.ae = std::make_shared<KLAutoencoder>(m, "kl");
    return out;
  }
  out.model = VQGAN(out.vqgan, out.data.image_channels());
  c.load_module("model", *out.model);
  out.model->to(device);
  out.model->eval();
  out.ae = std::make_shared<VQGANAutoencoder>(out.model);
  return out;
}

LoadedLDM load_ldm(const std::filesystem::path& path, const torch::Device& device) {
  Checkpoint c = load_checkpoint(path);
  if (c.kind == "monai-unet") return load_imported_ldm(c, path, device);
  if (c.kind != "ldm") fail("{}: is a '{}' checkpoint, not a latent diffusion model", path.string(), c.kind);
  LoadedLDM l;
  l.config = c.config;
  l.data = section<DataParams>(c.config, "data");
  l.ldm = section<LDMParams>(c.config, "ldm");
  l.sample = section<SampleDefaults>(c.config, "sample");
  const auto& x = c.extra;
  l.num_classes = x.at("num_classes").get<int64_t>();
  l.latent_shape = x.at("latent_shape").get<std::array<int64_t, 4>>();
  l.norm = LatentNorm::from_json(x.at("latent_norm"));
  l.geometry = geometry_from_json(x.at("geometry"));
  l.modality = parse_modality(x.at("modality").get<std::string>());
  l.vqgan_sha256 = x.value("vqgan_sha256", "");
  l.vqgan_path = x.value("vqgan_path", "");
  if (x.contains("labels")) {  // conditioned on label maps
    const auto& lj = x.at("labels");
    l.label_names = lj.at("names").get<std::vector<std::string>>();
    l.num_labels = static_cast<int64_t>(l.label_names.size());
    l.union_ranges = LabelIntensityRanges::from_json(lj.at("ranges"));
    // the training images' own ranges (older checkpoints recorded only the union)
    l.label_ranges = lj.contains("training_ranges") ? LabelIntensityRanges::from_json(lj.at("training_ranges")) : l.union_ranges;
    l.mask_bank = path.parent_path() / lj.value("mask_bank", "mask_bank.pt");
    l.augment_copies = lj.value("augment_copies", int64_t{0});
    l.label_condition = LabelCondition(l.ldm.label_condition, l.num_labels, l.data.shape, {l.latent_shape[1], l.latent_shape[2], l.latent_shape[3]});
  }
  UNet3d model(l.ldm.unet, l.latent_shape[0], l.num_classes, l.label_condition.channels());
  c.load_module("ema", *model);
  model->to(device);
  model->eval();
  l.net = std::make_shared<UNet3dDenoiser>(model);
  l.schedule = make_schedule(l.ldm.schedule, l.ldm.timesteps, l.ldm.cosine_s);
  l.prediction = parse_prediction(l.ldm.prediction);
  l.rflow = l.ldm.rflow();
  l.rflow_shift = resolved_rflow_shift(l.ldm, l.latent_shape);
  l.step = c.step;
  return l;
}

}  // namespace meddiff
