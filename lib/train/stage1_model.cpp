#include "train/stage1_model.h"

#include "core/log.h"
#include "models/autoencoder_kl.h"
#include "models/recompute.h"
#include "models/vqgan.h"

namespace meddiff {
namespace {

class VQGANStage1 : public Stage1Model {
 public:
  VQGANStage1(const RunConfig& cfg, int64_t channels) : model(cfg.vqgan, channels) {
    set_checkpointing(*model, cfg.vqgan_train.checkpointing);
  }
  Stage1Forward forward(const torch::Tensor& x, at::Generator gen, const torch::Tensor& seg) override {
    auto out = model->forward(x, gen, seg);  // a decoder that is not label-conditioned ignores seg
    return {out.reconstruction, out.vq.commitment, out.vq.perplexity, out.vq.usage, out.vq.restarted.to(torch::kFloat)};
  }
  torch::Tensor reconstruct(const torch::Tensor& x, const torch::Tensor& seg) override {
    return model->forward(x, std::nullopt, seg).reconstruction;
  }
  int64_t decoder_labels() const override { return model->params.decoder_labels; }
  torch::nn::Module& module() override { return *model; }
  void set_collectives(Collectives* c) override { model->quantizer->comm = c; }
  std::vector<torch::Tensor> codebook() const override {
    return {model->quantizer->embeddings, model->quantizer->cluster_size, model->quantizer->embed_avg};
  }
  std::string checkpoint_kind() const override { return "vqgan"; }
  std::string module_key() const override { return "model"; }
  std::string regulariser_name() const override { return "commitment"; }
  bool has_codebook() const override { return true; }
  std::shared_ptr<LatentAutoencoder> inference() override { return std::make_shared<VQGANAutoencoder>(model); }

 private:
  VQGAN model;
};

class KLStage1 : public Stage1Model {
 public:
  KLStage1(const RunConfig& cfg, int64_t channels) : model(cfg.autoencoder.kl, channels), kl_weight(cfg.vqgan_train.kl_weight) {
    if (cfg.vqgan_train.checkpointing)
      log_warn("vqgan_train.checkpointing applies to the VQ-GAN's residual blocks; the KL autoencoder trains without it");
  }
  Stage1Forward forward(const torch::Tensor& x, at::Generator gen, const torch::Tensor&) override {
    auto post = model->encode((x + 1) * 0.5);
    auto eps = torch::randn(post.mu.sizes(), gen, torch::TensorOptions().dtype(torch::kFloat)).to(post.mu.device(), post.mu.scalar_type());
    auto rec = model->decode(post.mu + post.sigma * eps) * 2 - 1;
    auto mu = post.mu.to(torch::kFloat), var = post.sigma.to(torch::kFloat).pow(2);
    // KL(N(mu, sigma^2) || N(0, 1)) = 0.5 (mu^2 + sigma^2 - log sigma^2 - 1), summed over the latent
    auto kl = (0.5 * (mu.pow(2) + var - var.clamp_min(1e-30).log() - 1)).flatten(1).sum(1).mean();
    auto zero = torch::zeros({}, kl.options());
    return {rec, kl * kl_weight, zero, zero, zero};
  }
  torch::Tensor reconstruct(const torch::Tensor& x, const torch::Tensor&) override { return model->decode(model->encode((x + 1) * 0.5).mu) * 2 - 1; }
  torch::nn::Module& module() override { return *model; }
  std::string checkpoint_kind() const override { return "kl-autoencoder"; }
  std::string module_key() const override { return "autoencoder"; }
  std::string regulariser_name() const override { return "kl"; }
  std::shared_ptr<LatentAutoencoder> inference() override { return std::make_shared<KLAutoencoder>(model, "kl"); }

 private:
  AutoencoderKL model;
  double kl_weight;
};

}  // namespace

std::unique_ptr<Stage1Model> make_stage1_model(const RunConfig& cfg, int64_t image_channels) {
  if (cfg.autoencoder.is_kl()) return std::make_unique<KLStage1>(cfg, image_channels);
  return std::make_unique<VQGANStage1>(cfg, image_channels);
}

}  // namespace meddiff
