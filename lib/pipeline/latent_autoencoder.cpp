#include "pipeline/latent_autoencoder.h"

#include "core/checkpoint.h"
#include "core/error.h"
#include "core/log.h"
#include "models/autoencoder_kl.h"
#include "pipeline/loaded_models.h"

namespace meddiff {
namespace {


// MONAI's and MAISI's KL autoencoders take and give images in [0, 1]: y = (x + 1) / 2 on the way in, x = 2y - 1
// on the way out. Whole-volume execution: the memory a decode needs is estimated first and a volume beyond the
// budget is refused with the figure (exact split execution covers the VQ-GAN's layers, not these yet).
class KLAutoencoder : public LatentAutoencoder {
 public:
  KLAutoencoder(AutoencoderKL m, std::string fam) : model(std::move(m)), fam(std::move(fam)) {}
  torch::Tensor encode(const torch::Tensor& x, const AutoencoderRun& run) override {
    torch::NoGradGuard ng;
    check_budget({x.size(2), x.size(3), x.size(4)}, x.size(0), run, x.device(), "encode");
    return model->encode((x + 1) * 0.5).mu;
  }
  torch::Tensor decode(const torch::Tensor& z, const AutoencoderRun& run) override {
    torch::NoGradGuard ng;
    const int64_t f = model->params.downsample();
    check_budget({z.size(2) * f, z.size(3) * f, z.size(4) * f}, z.size(0), run, z.device(), "decode");
    return model->decode(z) * 2 - 1;
  }
  std::array<int64_t, 3> downsample() const override {
    const int64_t f = model->params.downsample();
    return {f, f, f};
  }
  int64_t latent_channels() const override { return model->params.latent_channels; }
  std::string family() const override { return fam; }

 private:
  // The full-resolution stage holds about four activations of channels[0] channels at once (input, the
  // normalised copy, the convolution's output and the residual), in fp32.
  void check_budget(const std::array<int64_t, 3>& full, int64_t batch, const AutoencoderRun& run, const torch::Device& device,
                    const char* what) const {
    const int64_t budget = run.budget_bytes > 0 ? run.budget_bytes : default_memory_budget(device);
    const double need = 4.0 * 4.0 * static_cast<double>(batch * model->params.channels.at(0) * full[0] * full[1] * full[2]);
    if (need > static_cast<double>(budget))
      fail("the KL autoencoder would need about {:.1f} GiB to {} a {}x{}x{} volume at once, over the memory budget of {:.1f} GiB "
           "(--max-memory); split execution of KL autoencoders is not available yet: give a larger budget or a smaller --shape",
           need / (1 << 30), what, full[2], full[1], full[0], static_cast<double>(budget) / (1 << 30));
  }
  AutoencoderKL model;
  std::string fam;
};

}  // namespace

std::unique_ptr<LatentAutoencoder> load_latent_autoencoder(const std::filesystem::path& path, const torch::Device& device,
                                                           nlohmann::json* config) {
  Checkpoint c = load_checkpoint(path);
  if (c.kind == "vqgan") {
    if (config) *config = c.config;
    return std::make_unique<VQGANAutoencoder>(load_vqgan(c, device).model);
  }
  if (c.kind != "kl-autoencoder") fail("{}: is a '{}' checkpoint, not an autoencoder (vqgan or kl-autoencoder)", path.string(), c.kind);
  const std::string family = c.config.value("family", "monai");
  if (!c.config.contains("network")) fail("{}: has no network definition (write it with meddiff import)", path.string());
  const auto def = kl_from_monai(c.config.at("network"), nlohmann::json::object(), path.string());
  AutoencoderKL m(def.params, def.in_channels);
  c.load_module("autoencoder", *m);
  m->to(device);
  m->eval();
  if (config) *config = c.config;
  return std::make_unique<KLAutoencoder>(m, family);
}

}  // namespace meddiff
