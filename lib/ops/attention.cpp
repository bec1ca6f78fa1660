#include "ops/attention.h"

#include "core/error.h"
#include "ops/kernel_support.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include <cmath>

#ifdef MEDDIFF_HAVE_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "kernels/attention.h"
#endif

namespace meddiff::ops {

namespace {

// [..., L, d] -> [1, batch, L, d] contiguous, the layout SDPA's fused kernels take
at::Tensor as_4d(const at::Tensor& t) {
  if (t.dim() == 4 && t.size(0) == 1) return t.contiguous();
  return t.reshape({1, -1, t.size(-2), t.size(-1)}).contiguous();
}

at::Tensor attention_libtorch_value(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  auto r = sdpa_chunked(q, k, v);
  auto shape = q.sizes().vec();
  shape.back() = v.size(-1);
  return r.reshape(shape);
}

void accumulate(at::Tensor& out, const at::Tensor& r, double alpha, double beta) {
  if (beta == 0) out.copy_(alpha == 1 ? r : r * alpha);
  else {
    if (beta != 1) out.mul_(beta);
    out.add_(r, alpha);
  }
}

void attention_libtorch(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, at::Tensor& out, double alpha, double beta) {
  accumulate(out, attention_libtorch_value(q, k, v), alpha, beta);
}

#ifdef MEDDIFF_HAVE_CUDA
void attention_cuda(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, at::Tensor& out, double alpha, double beta) {
  const auto type = q.scalar_type();
  const bool fits = (type == at::kFloat || type == at::kHalf || type == at::kBFloat16) && k.scalar_type() == type &&
                    v.scalar_type() == type && out.scalar_type() == type && q.dim() - 2 <= kernels::kAttentionMaxBatchDims &&
                    kernels::attention_supports_head_dim(q.size(-1)) && v.size(-1) == q.size(-1) && k.size(-2) > 0 &&
                    k.device() == q.device() && v.device() == q.device() && out.device() == q.device();
  if (!fits || !kernel_runs(q, "attention", [] { return kernels::attention_available(); }))
    return attention_libtorch(q, k, v, out, alpha, beta);
  c10::cuda::CUDAGuard guard(q.device());
  kernels::AttentionArgs a;
  a.q = q.data_ptr();
  a.k = k.data_ptr();
  a.v = v.data_ptr();
  a.out = out.data_ptr();
  a.type = type == at::kFloat ? kernels::ElementType::Float32 : type == at::kHalf ? kernels::ElementType::Float16 : kernels::ElementType::BFloat16;
  a.batch_dims = static_cast<int>(q.dim() - 2);
  for (int d = 0; d < q.dim(); ++d) {
    if (d < a.batch_dims) a.batch_sizes[d] = q.size(d);
    a.q_stride[d] = q.stride(d);
    a.k_stride[d] = k.stride(d);
    a.v_stride[d] = v.stride(d);
    a.out_stride[d] = out.stride(d);
  }
  a.lq = q.size(-2);
  a.lk = k.size(-2);
  a.head_dim = static_cast<int>(q.size(-1));
  a.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(q.size(-1))));
  a.alpha = static_cast<float>(alpha);
  a.beta = static_cast<float>(beta);
  kernels::launch_attention(a, at::cuda::getCurrentCUDAStream());
}
#endif

}  // namespace

TORCH_LIBRARY_FRAGMENT(meddiff, m) {
  m.def("attention_into(Tensor q, Tensor k, Tensor v, Tensor(a!) out, float alpha, float beta) -> ()");
}
TORCH_LIBRARY_IMPL(meddiff, CompositeExplicitAutograd, m) { m.impl("attention_into", &attention_libtorch); }
#ifdef MEDDIFF_HAVE_CUDA
TORCH_LIBRARY_IMPL(meddiff, CUDA, m) { m.impl("attention_into", &attention_cuda); }
#endif

void attention_into(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, torch::Tensor& out, double alpha,
                    double beta) {
  if (q.dim() < 3 || k.dim() != q.dim() || v.dim() != q.dim() || out.dim() != q.dim())
    fail("attention: q, k, v and out need the same number (>= 3) of dimensions [..., L, d]");
  for (int64_t d = 0; d + 2 < q.dim(); ++d)
    if (k.size(d) != q.size(d) || v.size(d) != q.size(d) || out.size(d) != q.size(d))
      fail("attention: batch dimensions differ (q [{}], k [{}], v [{}])", fmt::join(q.sizes(), ", "), fmt::join(k.sizes(), ", "),
           fmt::join(v.sizes(), ", "));
  if (k.size(-1) != q.size(-1) || k.size(-2) != v.size(-2) || out.size(-2) != q.size(-2) || out.size(-1) != v.size(-1))
    fail("attention: q [.., Lq, d], k [.., Lk, d], v [.., Lk, dv] and out [.., Lq, dv] needed");
  const bool recording = torch::GradMode::is_enabled() && (q.requires_grad() || k.requires_grad() || v.requires_grad());
  if (recording) return attention_libtorch(q, k, v, out, alpha, beta);
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("meddiff::attention_into", "")
                       .typed<void(const at::Tensor&, const at::Tensor&, const at::Tensor&, at::Tensor&, double, double)>();
  torch::NoGradGuard ng;
  op.call(q, k, v, out, alpha, beta);
}

torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
  auto shape = q.sizes().vec();
  shape.back() = v.size(-1);
  auto out = torch::empty(shape, q.options());
  attention_into(q, k, v, out);
  return out;
}

torch::Tensor sdpa_chunked(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, int64_t max_batch) {
  if (max_batch < 1) fail("attention: max_batch must be positive");
  auto q4 = as_4d(q), k4 = as_4d(k), v4 = as_4d(v);  // [1, n, L, d]
  const int64_t n = q4.size(1);
  if (n <= max_batch) return at::scaled_dot_product_attention(q4, k4, v4);
  // The fused CUDA kernels put this dimension into the launch grid's y or z (at most 65,535 blocks):
  // larger ones fail with "invalid configuration argument" (PyTorch issue 142228). Chunk it.
  std::vector<at::Tensor> parts;
  for (int64_t i = 0; i < n; i += max_batch) {
    const int64_t j = std::min(n, i + max_batch);
    parts.push_back(at::scaled_dot_product_attention(q4.slice(1, i, j), k4.slice(1, i, j), v4.slice(1, i, j)));
  }
  return at::cat(parts, 1);
}

torch::Tensor spatial_tokens(const torch::Tensor& z) { return z.flatten(3).transpose(2, 3); }

std::vector<int64_t> axial_order(int64_t axis) {
  std::vector<int64_t> perm{0, 1};
  for (int64_t a : {3, 4, 5})
    if (a != axis) perm.push_back(a);
  perm.push_back(axis);
  perm.push_back(2);
  return perm;
}

void axial_attention_into(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, torch::Tensor& out) {
  double beta = 0.0;  // the first axis overwrites, the others accumulate
  for (int64_t axis : {5, 4, 3}) {
    const auto perm = axial_order(axis);
    auto o = out.permute(perm);
    attention_into(q.permute(perm), k.permute(perm), v.permute(perm), o, 1.0 / 3.0, beta);
    beta = 1.0;
  }
}

torch::Tensor attention_reference(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
  auto w = torch::softmax(q.matmul(k.transpose(-2, -1)) / std::sqrt(static_cast<double>(q.size(-1))), -1);
  return w.matmul(v);
}

}  // namespace meddiff::ops
