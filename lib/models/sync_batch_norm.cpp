#include "models/sync_batch_norm.h"

namespace meddiff {
namespace {

struct AllReduceSum : torch::autograd::Function<AllReduceSum> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x, Collectives* comm) {
    ctx->saved_data["comm"] = reinterpret_cast<int64_t>(comm);
    std::vector<torch::Tensor> v{x.detach().clone()};
    comm->all_reduce_sum(v);
    return v[0];
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list g) {
    auto* comm = reinterpret_cast<Collectives*>(ctx->saved_data["comm"].toInt());
    std::vector<torch::Tensor> v{g[0].contiguous().clone()};
    comm->all_reduce_sum(v);
    return {v[0], torch::Tensor()};
  }
};

}  // namespace

torch::Tensor all_reduce_sum_autograd(const torch::Tensor& x, Collectives& comm) { return AllReduceSum::apply(x, &comm); }

SyncBatchNormImpl::SyncBatchNormImpl(int64_t channels, double e, double m) : eps(e), momentum(m) {
  weight = register_parameter("weight", torch::ones({channels}));
  bias = register_parameter("bias", torch::zeros({channels}));
  running_mean = register_buffer("running_mean", torch::zeros({channels}));
  running_var = register_buffer("running_var", torch::ones({channels}));
  num_batches_tracked = register_buffer("num_batches_tracked", torch::zeros({}, torch::kLong));
}

torch::Tensor SyncBatchNormImpl::forward(const torch::Tensor& x) {
  if (is_training()) {
    torch::NoGradGuard ng;
    num_batches_tracked.add_(1);
  }
  if (!comm || !is_training() || comm->world_size() == 1)
    return torch::batch_norm(x, weight, bias, running_mean, running_var, is_training(), momentum, eps,
                             at::globalContext().userEnabledCuDNN());
  const int64_t C = x.size(1);
  std::vector<int64_t> dims{0};
  for (int64_t d = 2; d < x.dim(); ++d) dims.push_back(d);
  auto xf = x.to(torch::kFloat);
  const double n = static_cast<double>(x.numel() / C) * comm->world_size();  // values per channel, all ranks
  auto stats = all_reduce_sum_autograd(torch::cat({xf.sum(dims), (xf * xf).sum(dims)}), *comm);  // [2C]
  auto mean = stats.slice(0, 0, C) / n;
  auto var = (stats.slice(0, C, 2 * C) / n - mean * mean).clamp_min(0);
  {
    torch::NoGradGuard ng;
    running_mean.mul_(1 - momentum).add_(mean.detach(), momentum);
    running_var.mul_(1 - momentum).add_(var.detach() * (n / std::max(1.0, n - 1)), momentum);
  }
  std::vector<int64_t> shape(static_cast<size_t>(x.dim()), 1);
  shape[1] = C;
  auto y = (xf - mean.view(shape)) * torch::rsqrt(var.view(shape) + eps) * weight.view(shape) + bias.view(shape);
  return y.to(x.scalar_type());
}

}  // namespace meddiff
