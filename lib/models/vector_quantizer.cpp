#include "models/vector_quantizer.h"

namespace meddiff {

VectorQuantizerImpl::VectorQuantizerImpl(const VQGANParams& p)
    : n_codes(p.n_codes), dim(p.embedding_dim), decay(p.ema_decay), eps(p.ema_eps),
      restart_threshold(p.restart_threshold), beta(p.commitment_weight) {
  embeddings = register_buffer("embeddings", torch::randn({n_codes, dim}));
  cluster_size = register_buffer("cluster_size", torch::zeros({n_codes}));
  embed_avg = register_buffer("embed_avg", embeddings.clone());
  initialized = register_buffer("initialized", torch::zeros({1}));
}

namespace {
// `count` rows drawn from `flat` [N, E]: tiled (with a little noise) when N < count, as the reference.
torch::Tensor random_rows(const torch::Tensor& flat, int64_t count, const std::optional<at::Generator>& gen) {
  auto y = flat;
  if (y.size(0) < count) {
    int64_t reps = (count + y.size(0) - 1) / y.size(0);
    std::optional<at::Generator> g = gen;
    y = y.repeat({reps, 1}) + torch::randn({reps * y.size(0), y.size(1)}, g, y.options()) * (0.01 / std::sqrt(double(y.size(1))));
  }
  auto perm = torch::randperm(y.size(0), gen, torch::TensorOptions().dtype(torch::kLong).device(y.device()));
  return y.index_select(0, perm.slice(0, 0, count));
}
}  // namespace

torch::Tensor VectorQuantizerImpl::nearest(const torch::Tensor& flat) {
  // ||z - e||^2 = ||z||^2 - 2 z.e + ||e||^2
  auto d = flat.pow(2).sum(1, true) - 2 * flat.matmul(embeddings.t()) + embeddings.pow(2).sum(1).unsqueeze(0);  // [N, K]
  return d.argmin(1);
}

torch::Tensor VectorQuantizerImpl::lookup(const torch::Tensor& codes) {
  return torch::embedding(embeddings, codes).permute({0, 4, 1, 2, 3});  // [B, d, h, w, E] -> [B, E, d, h, w]
}

VQOutput VectorQuantizerImpl::forward(const torch::Tensor& z_in, std::optional<at::Generator> gen) {
  auto z = z_in.to(torch::kFloat);
  auto flat = z.permute({0, 2, 3, 4, 1}).reshape({-1, dim});  // [N, E]
  if (is_training() && initialized.item<float>() == 0) {
    torch::NoGradGuard ng;
    auto init = random_rows(flat.detach(), n_codes, gen);
    embeddings.copy_(init);
    embed_avg.copy_(init);
    cluster_size.fill_(1.0);
    initialized.fill_(1.0);
  }
  auto idx = nearest(flat.detach());                       // [N]
  auto onehot = torch::one_hot(idx, n_codes).to(flat.dtype());  // [N, K]
  VQOutput out;
  if (is_training()) {
    torch::NoGradGuard ng;
    auto n_total = onehot.sum(0);                          // [K]
    auto embed_sum = onehot.t().matmul(flat.detach());     // [K, E]
    cluster_size.mul_(decay).add_(n_total, 1 - decay);
    embed_avg.mul_(decay).add_(embed_sum, 1 - decay);
    auto n = cluster_size.sum();
    auto weights = (cluster_size + eps) / (n + n_codes * eps) * n;  // Laplace-smoothed counts
    embeddings.copy_(embed_avg / weights.unsqueeze(1));
    // Dead-code restart: codes whose EMA count fell below the threshold take random encoder outputs.
    auto dead = cluster_size < restart_threshold;  // [K]
    out.restarted = dead.sum().item<int64_t>();
    if (out.restarted > 0) {
      auto fresh = random_rows(flat.detach(), n_codes, gen);  // [K, E]
      auto m = dead.unsqueeze(1);
      embeddings.copy_(torch::where(m, fresh, embeddings));
      embed_avg.copy_(torch::where(m, fresh, embed_avg));
      cluster_size.copy_(torch::where(dead, torch::ones_like(cluster_size), cluster_size));
    }
  }
  auto e = torch::embedding(embeddings, idx);  // [N, E] (codebook after this step's update)
  auto e_vol = e.reshape({z.size(0), z.size(2), z.size(3), z.size(4), dim}).permute({0, 4, 1, 2, 3});
  out.commitment = beta * torch::mse_loss(z, e_vol.detach());
  out.quantized = z + (e_vol - z).detach();  // straight-through
  out.codes = idx.reshape({z.size(0), z.size(2), z.size(3), z.size(4)});
  auto probs = onehot.mean(0);
  out.perplexity = torch::exp(-(probs * torch::log(probs + 1e-10)).sum()).item<double>();
  out.usage = (probs > 0).sum().item<double>() / static_cast<double>(n_codes);
  return out;
}

}  // namespace meddiff
