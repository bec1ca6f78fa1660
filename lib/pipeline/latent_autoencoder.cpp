#include "pipeline/latent_autoencoder.h"

#include "core/checkpoint.h"
#include "core/error.h"
#include "models/autoencoder_kl.h"
#include "pipeline/kl_out_of_core.h"
#include "pipeline/loaded_models.h"

namespace meddiff {
torch::Tensor KLAutoencoder::encode(const torch::Tensor& x, const AutoencoderRun& run) {
  return encode_within(model, (x + 1) * 0.5, run.budget(x.device()), run.force_split).mu;
}

torch::Tensor KLAutoencoder::decode(const torch::Tensor& z, const AutoencoderRun& run, const torch::Tensor&) {
  return decode_within(model, z, run.budget(z.device()), run.force_split) * 2 - 1;
}

std::array<int64_t, 3> KLAutoencoder::downsample() const {
  const int64_t f = model->params.downsample();
  return {f, f, f};
}

std::shared_ptr<KLAutoencoder> load_imported_kl(const Checkpoint& c, const std::string& where, const torch::Device& device) {
  const std::string family = c.config.value("family", "monai");
  const auto def = kl_from_monai(c.config.at("network"), nlohmann::json::object(), where);
  AutoencoderKL m(def.params, def.in_channels);
  c.load_module("autoencoder", *m);
  m->to(device);
  m->eval();
  return std::make_shared<KLAutoencoder>(m, family);
}

std::shared_ptr<LatentAutoencoder> load_latent_autoencoder(const std::filesystem::path& path, const torch::Device& device) {
  Checkpoint c = load_checkpoint(path);
  if (c.kind != "vqgan" && c.kind != "kl-autoencoder")
    fail("{}: is a '{}' checkpoint, not an autoencoder (vqgan or kl-autoencoder)", path.string(), c.kind);
  if (!c.config.contains("network")) return load_autoencoder(c, device).ae;  // trained by meddiff
  return load_imported_kl(c, path.string(), device);
}

}  // namespace meddiff
