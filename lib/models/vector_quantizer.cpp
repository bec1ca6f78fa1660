#include "models/vector_quantizer.h"

#include "ops/nearest_code.h"

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
// The draws happen on the CPU generator and move to flat's device.
torch::Tensor random_rows(const torch::Tensor& flat, int64_t count, const std::optional<at::Generator>& gen) {
  auto y = flat;
  if (y.size(0) < count) {
    int64_t reps = (count + y.size(0) - 1) / y.size(0);
    auto noise = torch::randn({reps * y.size(0), y.size(1)}, gen, torch::TensorOptions().dtype(torch::kFloat));
    y = y.repeat({reps, 1}) + noise.to(y.device()) * (0.01 / std::sqrt(double(y.size(1))));
  }
  auto perm = torch::randperm(y.size(0), gen, torch::TensorOptions().dtype(torch::kLong));
  return y.index_select(0, perm.slice(0, 0, count).to(y.device()));
}
}  // namespace

torch::Tensor VectorQuantizerImpl::nearest(const torch::Tensor& flat) {
  return ops::nearest_code(flat, embeddings, chunk_bytes).index;
}

torch::Tensor VectorQuantizerImpl::quantize_codes(const torch::Tensor& z) {
  auto flat = z.permute({0, 2, 3, 4, 1}).reshape({-1, dim});  // [N, E]
  return nearest(flat).reshape({z.size(0), z.size(2), z.size(3), z.size(4)});
}

torch::Tensor VectorQuantizerImpl::lookup(const torch::Tensor& codes) {
  return torch::embedding(embeddings, codes).permute({0, 4, 1, 2, 3});  // [B, d, h, w, E] -> [B, E, d, h, w]
}

VQOutput VectorQuantizerImpl::forward(const torch::Tensor& z_in, std::optional<at::Generator> gen) {
  ops::NoAutocast fp32;  // distances, EMA sums and the codebook stay fp32 under bf16 training
  auto z = z_in.to(torch::kFloat);
  auto flat = z.permute({0, 2, 3, 4, 1}).reshape({-1, dim});  // [N, E]
  const int64_t N = flat.size(0);
  const bool sync = is_training() && comm && comm->world_size() > 1;
  // The encoder outputs the random choices draw from: this rank's, or every rank's in rank order.
  torch::Tensor pool;
  if (is_training()) pool = sync ? comm->all_gather_rows(flat.detach()) : flat.detach();
  if (is_training() && !known_initialized_) {
    known_initialized_ = initialized.item<float>() != 0;  // one read, then never again
    if (!known_initialized_) {
      torch::NoGradGuard ng;
      auto init = random_rows(pool, n_codes, gen);
      embeddings.copy_(init);
      embed_avg.copy_(init);
      cluster_size.fill_(1.0);
      initialized.fill_(1.0);
      known_initialized_ = true;
    }
  }
  auto idx = nearest(flat.detach());                        // [N]
  auto e = torch::embedding(embeddings, idx);  // [N, E] (a copy): the codebook before this step's update
  auto counts = torch::zeros({n_codes}, flat.options()).index_add_(0, idx, torch::ones({N}, flat.options()));  // [K]
  VQOutput out;
  out.restarted = torch::zeros({}, flat.options().dtype(torch::kLong));
  if (is_training()) {
    torch::NoGradGuard ng;
    auto sums = torch::zeros({n_codes, dim}, flat.options()).index_add_(0, idx, flat.detach());  // [K, E]
    if (sync) {
      std::vector<torch::Tensor> v{counts, sums};
      comm->all_reduce_sum(v);  // in place: global counts (perplexity and usage below are global too)
    }
    cluster_size.mul_(decay).add_(counts, 1 - decay);
    embed_avg.mul_(decay).add_(sums, 1 - decay);
    auto n = cluster_size.sum();
    auto weights = (cluster_size + eps) / (n + static_cast<double>(n_codes) * eps) * n;  // Laplace-smoothed counts
    embeddings.copy_(embed_avg / weights.unsqueeze(1));
    // Dead-code restart: codes whose EMA count fell below the threshold take random encoder outputs
    // and start at the threshold count (embed_avg holds count x vector). The candidates are drawn every
    // step, so the random stream never depends on the data and nothing waits for the device.
    auto dead = cluster_size < restart_threshold;  // [K]
    auto fresh = random_rows(pool, n_codes, gen);  // [K, E]
    auto m = dead.unsqueeze(1);
    embeddings.copy_(torch::where(m, fresh, embeddings));
    embed_avg.copy_(torch::where(m, fresh * restart_threshold, embed_avg));
    cluster_size.copy_(torch::where(dead, torch::full_like(cluster_size, restart_threshold), cluster_size));
    out.restarted = dead.sum();
  }
  auto e_vol = e.reshape({z.size(0), z.size(2), z.size(3), z.size(4), dim}).permute({0, 4, 1, 2, 3});
  out.commitment = beta * torch::mse_loss(z, e_vol.detach());
  out.quantized = z + (e_vol - z).detach();  // straight-through
  out.codes = idx.reshape({z.size(0), z.size(2), z.size(3), z.size(4)});
  auto probs = counts / counts.sum().clamp_min(1);
  out.perplexity = torch::exp(-(probs * torch::log(probs + 1e-10)).sum());
  out.usage = (counts > 0).sum().to(torch::kFloat) / static_cast<double>(n_codes);
  return out;
}

}  // namespace meddiff
