#include "pipeline/latent_autoencoder.h"

#include "core/checkpoint.h"
#include "core/error.h"
#include "models/autoencoder_kl.h"
#include "pipeline/kl_decode.h"
#include "pipeline/loaded_models.h"

namespace meddiff {
torch::Tensor KLAutoencoder::encode(const torch::Tensor& x, const AutoencoderRun& run) {
  torch::NoGradGuard ng;
  const double need = whole_decode_bytes(model, {x.size(2), x.size(3), x.size(4)}, x.size(0));
  const int64_t budget = run.budget(x.device());
  if (need > static_cast<double>(budget))
    fail("the KL autoencoder would need about {:.1f} GiB to encode a {}x{}x{} volume at once, over the memory budget of {:.1f} GiB "
         "(--max-memory); encoding in pieces is not available for KL autoencoders", need / (1 << 30), x.size(4), x.size(3), x.size(2),
         static_cast<double>(budget) / (1 << 30));
  return model->encode((x + 1) * 0.5).mu;
}

torch::Tensor KLAutoencoder::decode(const torch::Tensor& z, const AutoencoderRun& run) {
  return decode_within(model, z, run.budget(z.device()), run.force_split) * 2 - 1;
}

std::array<int64_t, 3> KLAutoencoder::downsample() const {
  const int64_t f = model->params.downsample();
  return {f, f, f};
}

std::shared_ptr<LatentAutoencoder> load_latent_autoencoder(const std::filesystem::path& path, const torch::Device& device) {
  Checkpoint c = load_checkpoint(path);
  if (c.kind != "vqgan" && c.kind != "kl-autoencoder")
    fail("{}: is a '{}' checkpoint, not an autoencoder (vqgan or kl-autoencoder)", path.string(), c.kind);
  if (!c.config.contains("network")) return load_autoencoder(c, device).ae;  // trained by meddiff
  const std::string family = c.config.value("family", "monai");
  const auto def = kl_from_monai(c.config.at("network"), nlohmann::json::object(), path.string());
  AutoencoderKL m(def.params, def.in_channels);
  c.load_module("autoencoder", *m);
  m->to(device);
  m->eval();
  return std::make_unique<KLAutoencoder>(m, family);
}

}  // namespace meddiff
