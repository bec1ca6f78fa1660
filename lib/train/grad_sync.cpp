#include "train/grad_sync.h"

#include "core/log.h"

namespace meddiff {

void average_gradients(Collectives& c, const std::vector<torch::Tensor>& params, int64_t bucket_bytes) {
  if (c.world_size() == 1 || params.empty()) return;
  // The ranks first agree on which parameters have a gradient: one that was used on any rank is
  // contributed by every rank (zeros where it was unused), so all ranks fill the same buckets in the
  // same order; one unused everywhere stays without a gradient, as in one process with the global batch.
  std::vector<float> has(params.size());
  for (size_t i = 0; i < params.size(); ++i) has[i] = params[i].grad().defined() ? 1.0f : 0.0f;
  auto flags = torch::tensor(has).to(params.front().device());
  c.all_reduce_max(flags);
  auto any = flags.to(torch::kCPU);
  const float* used = any.data_ptr<float>();
  std::vector<torch::Tensor> bucket;
  int64_t bytes = 0;
  const double inv = 1.0 / static_cast<double>(c.world_size());
  auto flush = [&] {
    if (bucket.empty()) return;
    c.all_reduce_sum(bucket);
    for (auto& g : bucket) g.mul_(inv);
    bucket.clear();
    bytes = 0;
  };
  for (size_t i = 0; i < params.size(); ++i) {
    if (used[i] == 0) continue;
    auto p = params[i];
    if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
    auto g = p.grad();
    bucket.push_back(g);
    bytes += g.numel() * static_cast<int64_t>(g.element_size());
    if (bytes >= bucket_bytes) flush();
  }
  flush();
}

std::vector<torch::Tensor> state_tensors(const torch::nn::Module& m) {
  std::vector<torch::Tensor> v = m.parameters();
  for (const auto& b : m.buffers()) v.push_back(b);
  return v;
}

void broadcast_state(Collectives& c, torch::nn::Module& m) {
  if (c.world_size() == 1) return;
  auto v = state_tensors(m);
  c.broadcast(v, 0);
}

double replica_spread(Collectives& c, const std::vector<torch::Tensor>& tensors) {
  if (tensors.empty()) return 0;
  std::vector<torch::Tensor> sums;
  for (const auto& t : tensors) {
    auto d = t.detach().to(torch::kFloat64);
    sums.push_back(d.sum());
    sums.push_back((d * d).sum());
  }
  auto v = torch::stack(sums);
  auto hi = v.clone(), lo = -v;
  c.all_reduce_max(hi);
  c.all_reduce_max(lo);
  return (hi + lo).abs().max().item<double>();  // max - min per checksum
}

nlohmann::json replica_check(Collectives& c, int64_t step, const std::vector<torch::Tensor>& state,
                             const std::vector<torch::Tensor>& codebook) {
  const double spread = replica_spread(c, state);
  nlohmann::json rec = {{"step", step}, {"replica_spread", spread}, {"world_size", c.world_size()}};
  if (!codebook.empty()) rec["codebook_spread"] = replica_spread(c, codebook);
  if (spread > 0)
    log_warn("step {}: the {} ranks' weights differ (checksum spread {:.3g}); rank 0's are saved", step, c.world_size(), spread);
  return rec;
}

}  // namespace meddiff
