#include "ops/sampler_update.h"

#include "core/error.h"
#include "ops/kernel_support.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#ifdef MEDDIFF_HAVE_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "kernels/sampler_update.h"
#endif

namespace meddiff::ops {

namespace {

using Result = std::tuple<at::Tensor, at::Tensor, at::Tensor>;
// c = [guidance, a, s, clip, cx, c0, ce, cp, cn]
constexpr size_t kParams = 9;

at::Tensor per_sample(const at::Tensor& b, const at::Tensor& like) {
  std::vector<int64_t> shape(static_cast<size_t>(like.dim()), 1);
  shape[0] = like.size(0);
  return b.to(like.dtype()).view(shape);
}

Result sampler_update_libtorch(const at::Tensor& x, const at::Tensor& cond, const OptTensor& uncond, const OptTensor& prev,
                               const OptTensor& noise, const OptTensor& bound, int64_t kind, c10::ArrayRef<double> c, bool want_x0,
                               bool want_e) {
  const double w = c[0], a = c[1], s = c[2], clip = c[3];
  auto o = uncond ? *uncond + w * (cond - *uncond) : cond;
  at::Tensor x0;
  switch (static_cast<OutputKind>(kind)) {
    case OutputKind::Eps: x0 = (x - s * o) / a; break;
    case OutputKind::X0: x0 = o; break;
    case OutputKind::V: x0 = a * x - s * o; break;
    default: x0 = x - s * o; break;
  }
  const bool clipped = bound.has_value() || clip > 0;
  if (bound) {
    auto b = per_sample(*bound, x0);
    x0 = x0.clamp(-b, b) / b * clip;
  } else if (clip > 0) {
    x0 = x0.clamp(-clip, clip);
  }
  at::Tensor e;
  if (static_cast<OutputKind>(kind) == OutputKind::Flow) e = clipped && s > 0 ? (x - x0) / s : o;
  else e = (x - a * x0) / s;
  auto out = combine({c[4], c[5], c[6], c[7], c[8]}, x, x0, e, prev, noise);
  auto none = at::empty({0}, x.options());
  return {out, want_x0 ? x0 : none, want_e ? e : none};
}

#ifdef MEDDIFF_HAVE_CUDA
Result sampler_update_cuda(const at::Tensor& x, const at::Tensor& cond, const OptTensor& uncond, const OptTensor& prev,
                           const OptTensor& noise, const OptTensor& bound, int64_t kind, c10::ArrayRef<double> c, bool want_x0,
                           bool want_e) {
  auto is_float = [&](const OptTensor& t) { return !t || (t->scalar_type() == at::kFloat && t->device() == x.device()); };
  if (x.scalar_type() != at::kFloat || !is_float(cond) || !is_float(uncond) || !is_float(prev) || !is_float(noise) || !is_float(bound) ||
      !kernel_runs(x, "sampler_update", [] { return kernels::sampler_update_available(); }))
    return sampler_update_libtorch(x, cond, uncond, prev, noise, bound, kind, c, want_x0, want_e);
  c10::cuda::CUDAGuard guard(x.device());
  auto xc = x.contiguous(), cc = cond.contiguous();
  auto contig = [](const OptTensor& t) { return t ? t->contiguous() : at::Tensor(); };
  auto uc = contig(uncond), pc = contig(prev), nc = contig(noise), bc = contig(bound);
  auto out = at::empty_like(xc);
  auto x0 = want_x0 ? at::empty_like(xc) : at::empty({0}, xc.options());
  auto e = want_e ? at::empty_like(xc) : at::empty({0}, xc.options());
  auto ptr = [](const at::Tensor& t) { return t.defined() ? t.data_ptr<float>() : nullptr; };
  kernels::SamplerUpdateArgs a;
  a.x = xc.data_ptr<float>();
  a.cond = cc.data_ptr<float>();
  a.uncond = ptr(uc);
  a.prev = ptr(pc);
  a.noise = ptr(nc);
  a.bound = ptr(bc);
  a.out = out.data_ptr<float>();
  a.x0_out = want_x0 ? x0.data_ptr<float>() : nullptr;
  a.e_out = want_e ? e.data_ptr<float>() : nullptr;
  a.n = xc.numel();
  a.per_sample = std::max<int64_t>(1, xc.numel() / std::max<int64_t>(1, xc.size(0)));
  a.kind = static_cast<int>(kind);
  a.guidance = static_cast<float>(c[0]);
  a.a = static_cast<float>(c[1]);
  a.s = static_cast<float>(c[2]);
  a.clip = static_cast<float>(c[3]);
  a.cx = static_cast<float>(c[4]);
  a.c0 = static_cast<float>(c[5]);
  a.ce = static_cast<float>(c[6]);
  a.cp = static_cast<float>(c[7]);
  a.cn = static_cast<float>(c[8]);
  kernels::launch_sampler_update(a, at::cuda::getCurrentCUDAStream());
  return {out, x0, e};
}
#endif

}  // namespace

TORCH_LIBRARY_FRAGMENT(meddiff, m) {
  m.def("sampler_update(Tensor x, Tensor cond, Tensor? uncond, Tensor? prev, Tensor? noise, Tensor? bound, int kind, float[] c, "
        "bool want_x0, bool want_e) -> (Tensor, Tensor, Tensor)");
}
TORCH_LIBRARY_IMPL(meddiff, CompositeExplicitAutograd, m) { m.impl("sampler_update", &sampler_update_libtorch); }
#ifdef MEDDIFF_HAVE_CUDA
TORCH_LIBRARY_IMPL(meddiff, CUDA, m) { m.impl("sampler_update", &sampler_update_cuda); }
#endif

torch::Tensor combine(const UpdateCoefficients& c, const OptTensor& x, const OptTensor& x0, const OptTensor& e, const OptTensor& prev,
                      const OptTensor& noise) {
  torch::Tensor out;
  auto add = [&](const OptTensor& t, double k) {
    if (!t || k == 0) return;
    out = out.defined() ? out + k * *t : k * *t;
  };
  add(x, c.cx);
  add(x0, c.c0);
  add(e, c.ce);
  add(prev, c.cp);
  add(noise, c.cn);
  if (!out.defined()) {
    const auto* any = x ? &*x : x0 ? &*x0 : e ? &*e : nullptr;
    if (!any) fail("sampler update: no terms");
    out = torch::zeros_like(*any);
  }
  return out;
}

UpdateResult sampler_update(const torch::Tensor& x, const torch::Tensor& cond, const OptTensor& uncond, const OptTensor& prev,
                            const OptTensor& noise, const OptTensor& bound, const SamplerUpdate& u) {
  auto same = [&](const OptTensor& t, const char* what) {
    if (t && t->sizes() != x.sizes())
      fail("sampler update: {} [{}] differs from x [{}]", what, fmt::join(t->sizes(), ", "), fmt::join(x.sizes(), ", "));
  };
  same(cond, "the network output");
  same(uncond, "the unconditional output");
  same(prev, "the previous term");
  same(noise, "the noise");
  if (bound && (bound->dim() != 1 || bound->size(0) != x.size(0))) fail("sampler update: the per-sample bound needs [{}] values", x.size(0));
  if (u.kind != OutputKind::Flow && (u.a <= 0 || u.s <= 0)) fail("sampler update: alpha and sigma must be positive (got {}, {})", u.a, u.s);
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("meddiff::sampler_update", "")
                       .typed<Result(const at::Tensor&, const at::Tensor&, const OptTensor&, const OptTensor&, const OptTensor&,
                                     const OptTensor&, int64_t, c10::ArrayRef<double>, bool, bool)>();
  const std::array<double, kParams> c{u.guidance, u.a, u.s, u.clip, u.c.cx, u.c.c0, u.c.ce, u.c.cp, u.c.cn};
  torch::NoGradGuard ng;
  auto [out, x0, e] = op.call(x, cond, uncond, prev, noise, bound, static_cast<int64_t>(u.kind), c, u.want_x0, u.want_e);
  return {out, u.want_x0 ? x0 : torch::Tensor(), u.want_e ? e : torch::Tensor()};
}

}  // namespace meddiff::ops
