#include "ops/norm_act.h"

#include "core/error.h"
#include "ops/kernel_support.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#ifdef MEDDIFF_HAVE_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "kernels/norm_act.h"
#endif

namespace meddiff::ops {

namespace {

using OptTensor = std::optional<at::Tensor>;

at::Tensor per_channel(const at::Tensor& v, const at::Tensor& like) {  // [B, C] -> [B, C, 1, ...]
  std::vector<int64_t> shape{like.size(0), like.size(1)};
  shape.resize(static_cast<size_t>(like.dim()), 1);
  return v.reshape(shape);
}

// LibTorch's chain: every device, and autograd.
at::Tensor norm_act_libtorch(const at::Tensor& x, int64_t groups, const OptTensor& weight, const OptTensor& bias, double eps,
                             const OptTensor& scale, const OptTensor& shift, bool silu) {
  auto h = at::group_norm(x, groups, weight, bias, eps);
  if (scale) h = h * (1 + per_channel(*scale, h));
  if (shift) h = h + per_channel(*shift, h);
  return silu ? at::silu(h) : h;
}

#ifdef MEDDIFF_HAVE_CUDA
at::Tensor norm_act_cuda(const at::Tensor& x_in, int64_t groups, const OptTensor& weight, const OptTensor& bias, double eps,
                         const OptTensor& scale, const OptTensor& shift, bool silu) {
  const auto type = x_in.scalar_type();
  if (!kernel_runs(x_in, "norm_act", [] { return kernels::norm_act_available(); }) ||
      (type != at::kFloat && type != at::kHalf && type != at::kBFloat16) || x_in.dim() < 2)
    return norm_act_libtorch(x_in, groups, weight, bias, eps, scale, shift, silu);
  c10::cuda::CUDAGuard guard(x_in.device());
  auto x = x_in.contiguous();
  auto y = torch::empty_like(x);
  auto as_float = [&](const OptTensor& t) { return t ? t->to(x.device(), at::kFloat).contiguous() : at::Tensor(); };
  auto w = as_float(weight), b = as_float(bias), sc = as_float(scale), sh = as_float(shift);
  kernels::NormActArgs a;
  a.x = x.data_ptr();
  a.y = y.data_ptr();
  a.type = type == at::kFloat ? kernels::ElementType::Float32 : type == at::kHalf ? kernels::ElementType::Float16 : kernels::ElementType::BFloat16;
  a.batch = x.size(0);
  a.channels = x.size(1);
  a.spatial = x.numel() / std::max<int64_t>(1, a.batch * a.channels);
  a.groups = groups;
  a.weight = w.defined() ? w.data_ptr<float>() : nullptr;
  a.bias = b.defined() ? b.data_ptr<float>() : nullptr;
  a.scale = sc.defined() ? sc.data_ptr<float>() : nullptr;
  a.shift = sh.defined() ? sh.data_ptr<float>() : nullptr;
  a.eps = static_cast<float>(eps);
  a.silu = silu;
  auto work = torch::empty({std::max<int64_t>(1, kernels::norm_act_workspace_bytes(a) / 4)}, x.options().dtype(at::kFloat));
  kernels::launch_norm_act(a, work.data_ptr<float>(), at::cuda::getCurrentCUDAStream());
  return y;
}
#endif

}  // namespace

TORCH_LIBRARY_FRAGMENT(meddiff, m) {
  m.def("norm_act(Tensor x, int groups, Tensor? weight, Tensor? bias, float eps, Tensor? scale, Tensor? shift, bool silu) -> Tensor");
}
TORCH_LIBRARY_IMPL(meddiff, CompositeExplicitAutograd, m) { m.impl("norm_act", &norm_act_libtorch); }
#ifdef MEDDIFF_HAVE_CUDA
TORCH_LIBRARY_IMPL(meddiff, CUDA, m) { m.impl("norm_act", &norm_act_cuda); }
#endif

torch::Tensor norm_act(const torch::Tensor& x, int64_t groups, const torch::Tensor& weight, const torch::Tensor& bias, double eps,
                       const torch::Tensor& scale, const torch::Tensor& shift, bool silu) {
  if (x.dim() < 2 || groups < 1 || x.size(1) % groups != 0)
    fail("norm_act: x [B, C, ...] with C divisible by the group count needed (got [{}], {} groups)", fmt::join(x.sizes(), ", "), groups);
  for (const auto* t : {&scale, &shift})
    if (t->defined() && t->numel() != x.size(0) * x.size(1))
      fail("norm_act: FiLM scale and shift need B x C = {} values, got [{}]", x.size(0) * x.size(1), fmt::join(t->sizes(), ", "));
  auto opt = [](const torch::Tensor& t) { return t.defined() ? OptTensor(t) : std::nullopt; };
  const bool recording = torch::GradMode::is_enabled() &&
                         (x.requires_grad() || (weight.defined() && weight.requires_grad()) || (bias.defined() && bias.requires_grad()) ||
                          (scale.defined() && scale.requires_grad()) || (shift.defined() && shift.requires_grad()));
  if (recording) return norm_act_libtorch(x, groups, opt(weight), opt(bias), eps, opt(scale), opt(shift), silu);
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("meddiff::norm_act", "")
                       .typed<at::Tensor(const at::Tensor&, int64_t, const OptTensor&, const OptTensor&, double, const OptTensor&,
                                         const OptTensor&, bool)>();
  torch::NoGradGuard ng;  // nothing is recorded here: the op has no autograd formula
  return op.call(x, groups, opt(weight), opt(bias), eps, opt(scale), opt(shift), silu);
}

torch::Tensor norm_act(const torch::nn::GroupNorm& norm, const torch::Tensor& x, const torch::Tensor& scale, const torch::Tensor& shift,
                       bool silu) {
  const auto& o = norm->options;
  return norm_act(x, o.num_groups(), o.affine() ? norm->weight : torch::Tensor(), o.affine() ? norm->bias : torch::Tensor(), o.eps(),
                  scale, shift, silu);
}

}  // namespace meddiff::ops
