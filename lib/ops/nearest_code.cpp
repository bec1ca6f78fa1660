#include "ops/nearest_code.h"

#include "core/error.h"

#include <ATen/autocast_mode.h>

namespace meddiff::ops {

NoAutocast::NoAutocast() {
  prev_cuda_ = at::autocast::is_autocast_enabled(at::kCUDA);
  prev_cpu_ = at::autocast::is_autocast_enabled(at::kCPU);
  at::autocast::set_autocast_enabled(at::kCUDA, false);
  at::autocast::set_autocast_enabled(at::kCPU, false);
}

NoAutocast::~NoAutocast() {
  at::autocast::set_autocast_enabled(at::kCUDA, prev_cuda_);
  at::autocast::set_autocast_enabled(at::kCPU, prev_cpu_);
}

NearestCodes nearest_code(const torch::Tensor& z_in, const torch::Tensor& codebook_in, int64_t max_chunk_bytes) {
  if (z_in.dim() != 2 || codebook_in.dim() != 2 || z_in.size(1) != codebook_in.size(1))
    fail("nearest_code: z [N, E] and codebook [K, E] needed, got [{}] and [{}]", fmt::join(z_in.sizes(), ", "),
         fmt::join(codebook_in.sizes(), ", "));
  NoAutocast fp32;
  torch::NoGradGuard ng;
  auto z = z_in.to(torch::kFloat).contiguous();
  auto e = codebook_in.to(z.device(), torch::kFloat).contiguous();
  const int64_t N = z.size(0), K = e.size(0);
  auto e_sq = e.pow(2).sum(1);  // [K]
  // Rows per chunk: the [rows, K] distances (and argmin's work space) stay within the budget.
  const int64_t rows = std::max<int64_t>(1, max_chunk_bytes / (2 * 4 * std::max<int64_t>(1, K)));
  NearestCodes out;
  out.index = torch::empty({N}, z.options().dtype(torch::kLong));
  out.distance = torch::empty({N}, z.options());
  for (int64_t r0 = 0; r0 < N; r0 += rows) {
    auto zc = z.slice(0, r0, std::min(N, r0 + rows));  // [n, E]
    // ||z - e||^2 = ||z||^2 - 2 z.e + ||e||^2; ||z||^2 does not change the argmin and is added after.
    auto d = torch::addmm(e_sq.unsqueeze(0), zc, e.t(), /*beta=*/1, /*alpha=*/-2);  // [n, K]
    auto [dmin, imin] = d.min(1);
    out.index.slice(0, r0, r0 + zc.size(0)).copy_(imin);
    out.distance.slice(0, r0, r0 + zc.size(0)).copy_((dmin + zc.pow(2).sum(1)).clamp_min(0));
  }
  return out;
}

NearestCodes nearest_code_reference(const torch::Tensor& z, const torch::Tensor& codebook) {
  auto zd = z.to(torch::kDouble), ed = codebook.to(z.device(), torch::kDouble);
  auto d = (zd.unsqueeze(1) - ed.unsqueeze(0)).pow(2).sum(2);  // [N, K]
  auto [dmin, imin] = d.min(1);
  return {imin, dmin.to(torch::kFloat)};
}

}  // namespace meddiff::ops
