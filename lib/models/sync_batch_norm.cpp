#include "models/sync_batch_norm.h"

namespace meddiff {
namespace {

// Rows of every rank, in rank order; backward: the sum over the ranks of the gradient of the gathered
// tensor, this rank's rows of it (every rank's loss depends on every rank's rows).
struct AllGatherRows : torch::autograd::Function<AllGatherRows> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x, Collectives* comm) {
    ctx->saved_data["comm"] = reinterpret_cast<int64_t>(comm);
    ctx->saved_data["rows"] = x.size(0);
    return comm->all_gather_rows(x.detach().contiguous());
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list g) {
    auto* comm = reinterpret_cast<Collectives*>(ctx->saved_data["comm"].toInt());
    const int64_t rows = ctx->saved_data["rows"].toInt();
    std::vector<torch::Tensor> v{g[0].contiguous().clone()};
    comm->all_reduce_sum(v);
    return {v[0].slice(0, comm->rank() * rows, (comm->rank() + 1) * rows), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor all_gather_rows_autograd(const torch::Tensor& x, Collectives& comm) { return AllGatherRows::apply(x, &comm); }

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
  // This rank's count, mean and sum of squared deviations per channel, in float64 and two passes (no
  // E[x^2] - E[x]^2 cancellation when |mean| >> std), then Chan et al.'s pairwise merge over the ranks,
  // whose batches may differ in size.
  // Ref: Chan, Golub & LeVeque 1979, "Updating formulae and a pairwise algorithm for computing sample
  // variances": n = sum n_r, mean = sum n_r m_r / n, M2 = sum (M2_r + n_r (m_r - mean)^2).
  auto xd = x.to(torch::kDouble);
  const double n_local = static_cast<double>(x.numel() / std::max<int64_t>(1, C));
  auto mean_r = n_local > 0 ? xd.mean(dims) : torch::zeros({C}, xd.options());
  std::vector<int64_t> shape(static_cast<size_t>(x.dim()), 1);
  shape[1] = C;
  auto m2_r = n_local > 0 ? (xd - mean_r.view(shape)).pow(2).sum(dims) : torch::zeros({C}, xd.options());
  auto row = torch::cat({torch::full({1}, n_local, xd.options()), mean_r, m2_r}).unsqueeze(0);  // [1, 1 + 2C]
  auto all = all_gather_rows_autograd(row, *comm);                                                 // [world, 1 + 2C]
  auto counts = all.slice(1, 0, 1).detach();                                                       // [world, 1]
  auto n = counts.sum();  // a tensor: no device synchronisation
  auto means = all.slice(1, 1, 1 + C), m2s = all.slice(1, 1 + C, 1 + 2 * C);
  auto mean = (counts * means).sum(0) / n;                                      // [C]
  auto m2 = (m2s + counts * (means - mean.unsqueeze(0)).pow(2)).sum(0);         // [C]
  auto var = m2 / n;                                                            // biased, for normalising
  {
    torch::NoGradGuard ng;
    running_mean.mul_(1 - momentum).add_(mean.detach().to(running_mean.dtype()), momentum);
    running_var.mul_(1 - momentum).add_((var.detach() * n / (n - 1).clamp_min(1)).to(running_var.dtype()), momentum);
  }
  // x - mean in float32 is exact for values near the mean; only mean's rounding to float32 remains
  auto xf = x.to(torch::kFloat);
  auto mean_f = mean.to(torch::kFloat), rstd = torch::rsqrt(var + eps).to(torch::kFloat);
  auto y = (xf - mean_f.view(shape)) * rstd.view(shape) * weight.view(shape) + bias.view(shape);
  return y.to(x.scalar_type());
}

}  // namespace meddiff
