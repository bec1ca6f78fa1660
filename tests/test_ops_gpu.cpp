// GPU tests (label gpu): every CUDA kernel against its op's LibTorch path (run on the CPU in float64
// where that is the reference) over a grid of shapes, dtypes, strides and sizes that are not
// multiples of the kernels' tiles, with per-case tolerances; each failing case prints its first
// mismatches.
#include <doctest/doctest.h>

#include "ops/attention.h"
#include "ops/kernel_support.h"
#include "ops/nearest_code.h"
#include "ops/norm_act.h"
#include "ops/sampler_update.h"

#include <limits>
#include <sstream>

#ifdef MEDDIFF_HAVE_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "kernels/attention.h"
#include "kernels/nearest_code.h"
#include "kernels/norm_act.h"
#include "kernels/sampler_update.h"
#endif

using namespace meddiff;

namespace {

bool have_cuda() {
  if (torch::cuda::is_available()) return true;
  MESSAGE("no CUDA device: skipped");
  return false;
}

// Largest |got - want| / (atol + rtol |want|) <= 1, with the first mismatches listed when not.
void check_close(const torch::Tensor& got_in, const torch::Tensor& want_in, double atol, double rtol, const std::string& what) {
  auto got = got_in.to(torch::kCPU, torch::kDouble).reshape({-1}), want = want_in.to(torch::kCPU, torch::kDouble).reshape({-1});
  REQUIRE(got.numel() == want.numel());
  auto bad = ((got - want).abs() > atol + rtol * want.abs()) | got.isnan() != want.isnan();
  const int64_t n = bad.sum().item<int64_t>();
  std::ostringstream first;
  if (n > 0) {
    auto idx = bad.nonzero().reshape({-1}).slice(0, 0, 5);
    for (int64_t i = 0; i < idx.numel(); ++i) {
      const int64_t j = idx[i].item<int64_t>();
      first << " [" << j << "] got " << got[j].item<double>() << " want " << want[j].item<double>();
    }
  }
  INFO(what << ": " << n << " of " << got.numel() << " mismatches;" << first.str());
  CHECK(n == 0);
}

}  // namespace

TEST_CASE("every kernel is built for this GPU") {
  if (!have_cuda()) return;
  ops::set_enabled_kernels("all");
  for (const auto& name : ops::kernel_names()) {
    INFO(std::string(name));
    CHECK(ops::kernel_enabled(name));
  }
#ifdef MEDDIFF_HAVE_CUDA
  CHECK(kernels::nearest_code_available());
  CHECK(kernels::norm_act_available());
  CHECK(kernels::attention_available());
  CHECK(kernels::sampler_update_available());
#else
  FAIL("this build has no CUDA kernels (MEDDIFF_CUDA=OFF or no nvcc)");
#endif
}

TEST_CASE("nearest_code kernel equals the float64 brute force") {
  if (!have_cuda()) return;
  ops::set_enabled_kernels("all");
  torch::manual_seed(1);
  for (int64_t e : {1, 3, 8, 13, 32, 64})
    for (int64_t k : {1, 5, 127, 128, 129, 1000, 16384})
      for (int64_t n : {1, 127, 129, 5000}) {
        if (n * k * e > 60'000'000) continue;  // the float64 reference holds an N x K x E tensor
        auto z = torch::randn({n, e}), codebook = torch::randn({k, e});
        auto ref = ops::nearest_code_reference(z, codebook);
        auto got = ops::nearest_code(z.cuda(), codebook.cuda());
        auto idx = got.index.cpu();
        // ties in float32 may pick another code at the same distance: compare distances, and indices where clear
        std::ostringstream what;
        what << "E " << e << " K " << k << " N " << n;
        check_close(got.distance, ref.distance, 1e-5, 1e-5, what.str() + " distance");
        const double agree = idx.eq(ref.index).to(torch::kDouble).mean().item<double>();
        INFO(what.str() << ": index agreement " << agree);
        CHECK(agree >= 0.999);
      }
}

TEST_CASE("norm_act kernel equals LibTorch's GroupNorm FiLM SiLU chain") {
  if (!have_cuda()) return;
  torch::manual_seed(2);
  struct Case {
    std::vector<int64_t> shape;
    int64_t groups;
  };
  const std::vector<Case> cases = {{{1, 4, 3, 5, 7}, 1},    {{2, 32, 7, 9, 11}, 32}, {{2, 64, 16, 16, 16}, 32},
                                   {{3, 6, 1, 1, 1}, 3},     {{1, 96, 33, 17, 5}, 24}, {{1, 64, 64, 96, 96}, 32},
                                   {{4, 20, 13, 1, 257}, 5}, {{1, 8, 1, 1, 100000}, 2}};
  for (const auto& c : cases)
    for (auto dtype : {torch::kFloat, torch::kHalf, torch::kBFloat16})
      for (int film = 0; film < 2; ++film)
        for (bool silu : {true, false}) {
          const int64_t B = c.shape[0], C = c.shape[1];
          auto x = (torch::randn(c.shape) * 2 + 0.5).cuda();
          auto w = torch::randn({C}).cuda(), b = torch::randn({C}).cuda();
          auto sc = film ? torch::randn({B, C}).cuda() : torch::Tensor(), sh = film ? torch::randn({B, C}).cuda() : torch::Tensor();
          ops::set_enabled_kernels("none");
          auto want = ops::norm_act(x.to(torch::kDouble), c.groups, w.to(torch::kDouble), b.to(torch::kDouble), 1e-5,
                                    film ? sc.to(torch::kDouble) : sc, film ? sh.to(torch::kDouble) : sh, silu);
          ops::set_enabled_kernels("all");
          auto got = ops::norm_act(x.to(dtype), c.groups, w, b, 1e-5, sc, sh, silu);
          CHECK((got.scalar_type() == dtype));
          const double tol = dtype == torch::kFloat ? 2e-4 : dtype == torch::kHalf ? 1e-2 : 6e-2;
          std::ostringstream what;
          what << "shape " << c.shape << " groups " << c.groups << " dtype " << dtype << " film " << film << " silu " << silu;
          check_close(got, want, tol, tol, what.str());
        }
}

TEST_CASE("attention kernel equals softmax(q k^T / sqrt(d)) v on full and axial strided views") {
  if (!have_cuda()) return;
  torch::manual_seed(3);
  for (int64_t dh : {16, 32, 64, 128})
    for (auto dtype : {torch::kFloat, torch::kHalf, torch::kBFloat16})
      for (auto dims : std::vector<std::vector<int64_t>>{{3, 5, 7}, {8, 8, 8}, {4, 9, 33}, {16, 16, 16}}) {
        const int64_t B = 2, heads = 2, D = dims[0], H = dims[1], W = dims[2];
        auto qkv = torch::randn({B, 3, heads, dh, D, H, W}, torch::kCUDA).to(dtype);
        auto q = qkv.select(1, 0), k = qkv.select(1, 1), v = qkv.select(1, 2);
        const double tol = dtype == torch::kFloat ? 1e-4 : dtype == torch::kHalf ? 5e-3 : 3e-2;
        std::ostringstream what;
        what << "head dim " << dh << " dtype " << dtype << " grid " << dims;
        // full attention over the flattened tokens: [B, heads, N, dh] transposed views
        auto f64 = [](const torch::Tensor& z) { return ops::spatial_tokens(z).to(torch::kDouble); };
        auto want = ops::attention_reference(f64(q), f64(k), f64(v));
        auto out = torch::empty({B, heads, dh, D, H, W}, q.options());
        auto o = ops::spatial_tokens(out);
        ops::set_enabled_kernels("all");
        ops::attention_into(ops::spatial_tokens(q), ops::spatial_tokens(k), ops::spatial_tokens(v), o);
        check_close(o, want, tol, tol, what.str() + " full");
        // axial along each axis, accumulated into one buffer with alpha 1/3 as the U-Net does
        auto acc = torch::zeros({B, heads, dh, D, H, W}, torch::kDouble);
        for (int64_t axis : {5, 4, 3}) {
          const auto perm = ops::axial_order(axis);
          auto r = ops::attention_reference(q.permute(perm).to(torch::kDouble), k.permute(perm).to(torch::kDouble),
                                            v.permute(perm).to(torch::kDouble));
          acc.permute(perm).add_(r.cpu(), 1.0 / 3.0);
        }
        ops::axial_attention_into(q, k, v, out);
        check_close(out, acc, tol, tol, what.str() + " axial");
      }
}

TEST_CASE("sampler_update kernel equals the LibTorch update") {
  if (!have_cuda()) return;
  torch::manual_seed(4);
  for (int64_t n : {1, 255, 257, 100003})
    for (auto kind : {ops::OutputKind::Eps, ops::OutputKind::X0, ops::OutputKind::V, ops::OutputKind::Flow})
      for (int mode = 0; mode < 3; ++mode) {
        const int64_t B = 3;
        auto make = [&] { return torch::randn({B, n}); };
        auto x = make(), cond = make(), uncond = make(), prev = make(), noise = make();
        auto bound = torch::rand({B}) + 1;
        ops::SamplerUpdate u;
        u.kind = kind;
        u.guidance = 3.0;
        u.a = 0.7;
        u.s = 0.71;
        u.clip = mode == 0 ? 0 : 1.0;
        u.c = {0.9, -0.4, 0.3, 0.2, 0.05};
        u.want_x0 = u.want_e = true;
        ops::OptTensor b = mode == 2 ? ops::OptTensor(bound) : std::nullopt;
        auto want = ops::sampler_update(x, cond, uncond, prev, noise, b, u);
        ops::set_enabled_kernels("all");
        auto cu = [](const torch::Tensor& t) { return t.cuda(); };
        auto got = ops::sampler_update(cu(x), cu(cond), cu(uncond), cu(prev), cu(noise), b ? ops::OptTensor(cu(*b)) : std::nullopt, u);
        std::ostringstream what;
        what << "n " << n << " kind " << static_cast<int>(kind) << " mode " << mode;
        check_close(got.out, want.out, 1e-5, 1e-5, what.str() + " out");
        check_close(got.x0, want.x0, 1e-5, 1e-5, what.str() + " x0");
        check_close(got.e, want.e, 1e-5, 1e-5, what.str() + " e");
      }
}

TEST_CASE("sampler_update and nearest_code kernels propagate NaN and skip 0-coefficient terms as the LibTorch path does") {
  if (!have_cuda()) return;
  ops::set_enabled_kernels("all");
  const float nan = std::nanf(""), inf = std::numeric_limits<float>::infinity();
  // x0 NaN in element 0 (a diverged network), inf in the noise of element 1 with a 0 noise coefficient
  auto x = torch::tensor({{0.5f, 0.1f, -0.3f, 0.2f}}), cond = torch::tensor({{nan, 0.2f, 5.0f, -0.1f}});
  auto uncond = torch::tensor({{0.1f, 0.1f, 0.1f, nan}}), noise = torch::tensor({{0.3f, inf, 0.1f, 0.2f}});
  for (auto kind : {ops::OutputKind::Eps, ops::OutputKind::X0, ops::OutputKind::V, ops::OutputKind::Flow})
    for (int mode = 0; mode < 3; ++mode)
      for (double cn : {0.0, 0.5}) {
        // guidance 2, alpha 0.8, sigma 0.6; c0 = 0 and cp = 0: those terms are left out
        ops::SamplerUpdate u{kind, 2.0, 0.8, 0.6, mode == 0 ? 0.0 : 1.0, {0.7, 0.0, 0.3, 0.0, cn}, true, true};
        auto bound = torch::tensor({1.5f});
        ops::OptTensor b = mode == 2 ? ops::OptTensor(bound) : std::nullopt;
        auto want = ops::sampler_update(x, cond, uncond, std::nullopt, noise, b, u);
        auto got = ops::sampler_update(x.cuda(), cond.cuda(), uncond.cuda(), std::nullopt, noise.cuda(),
                                       b ? ops::OptTensor(b->cuda()) : std::nullopt, u);
        std::ostringstream what;
        what << "NaN/inf kind " << static_cast<int>(kind) << " mode " << mode << " cn " << cn;
        check_close(got.out, want.out, 1e-6, 1e-6, what.str() + " out");
        check_close(got.x0, want.x0, 1e-6, 1e-6, what.str() + " x0");
        check_close(got.e, want.e, 1e-6, 1e-6, what.str() + " e");
      }
  auto codebook = torch::randn({300, 8});
  auto z = torch::randn({200, 8});
  z[17][3] = nan;
  auto want = ops::nearest_code(z, codebook), got = ops::nearest_code(z.cuda(), codebook.cuda());
  CHECK(std::isnan(got.distance[17].item<float>()));
  check_close(got.distance, want.distance, 1e-5, 1e-5, "nearest_code with a NaN row");
  auto bad = codebook.clone();
  bad[250][0] = nan;
  auto want_b = ops::nearest_code(z, bad), got_b = ops::nearest_code(z.cuda(), bad.cuda());
  CHECK(got_b.distance.isnan().all().item<bool>());
  CHECK(torch::equal(got_b.index.cpu(), want_b.index));
}

TEST_CASE("SDPA (LibTorch CUDA path) on 65,536 merged sequences: 8 heads x a 64 x 64 cross-section x the guidance pair") {
  if (!have_cuda()) return;
  ops::set_enabled_kernels("none");  // the default GPU path of attention
  torch::manual_seed(21);
  const int64_t B = 2, heads = 8, dh = 32, D = 16, H = 64, W = 64;
  for (auto dtype : {torch::kFloat, torch::kHalf, torch::kBFloat16}) {
    auto qkv = torch::randn({B, 3, heads, dh, D, H, W}, torch::kCUDA).to(dtype);
    auto q = qkv.select(1, 0), k = qkv.select(1, 1), v = qkv.select(1, 2);
    auto out = torch::empty({B, heads, dh, D, H, W}, q.options());
    const auto perm = ops::axial_order(3);  // along D: batch dims B x heads x H x W = 65,536
    auto o = out.permute(perm);
    ops::attention_into(q.permute(perm), k.permute(perm), v.permute(perm), o);  // threw "invalid configuration argument" unchunked
    torch::cuda::synchronize();
    auto sel = [&](const torch::Tensor& t) { return t.permute(perm).slice(2, 60, 64).to(torch::kCPU, torch::kDouble); };
    auto want = ops::attention_reference(sel(q), sel(k), sel(v));
    const double tol = dtype == torch::kFloat ? 1e-4 : dtype == torch::kHalf ? 5e-3 : 3e-2;
    std::ostringstream what;
    what << "dtype " << dtype;
    check_close(o.slice(2, 60, 64), want, tol, tol, what.str());
  }
}

TEST_CASE("kernels on non-contiguous and channels-last inputs and on a non-default stream equal the LibTorch path") {
  if (!have_cuda()) return;
#ifdef MEDDIFF_HAVE_CUDA
  torch::manual_seed(22);
  auto stream = c10::cuda::getStreamFromPool(false, 0);
  c10::cuda::CUDAStreamGuard on_stream(stream);
  // norm_act: a channels-last tensor and a strided slice
  auto base = torch::randn({2, 16, 9, 10, 11}, torch::kCUDA);
  auto w = torch::randn({16}, torch::kCUDA), b = torch::randn({16}, torch::kCUDA), sc = torch::randn({2, 16}, torch::kCUDA);
  for (int variant = 0; variant < 2; ++variant) {
    auto x = variant == 0 ? base.contiguous(at::MemoryFormat::ChannelsLast3d) : base.slice(4, 0, 11, 2);
    ops::set_enabled_kernels("none");
    auto want = ops::norm_act(x.contiguous(), 4, w, b, 1e-5, sc, {}, true);
    ops::set_enabled_kernels("all");
    auto got = ops::norm_act(x, 4, w, b, 1e-5, sc, {}, true);
    check_close(got, want, 2e-4, 2e-4, variant == 0 ? "norm_act channels-last on a side stream" : "norm_act strided on a side stream");
  }
  // sampler_update on transposed (non-contiguous) tensors
  auto x = torch::randn({4, 3, 50}, torch::kCUDA).transpose(1, 2), cond = torch::randn({4, 3, 50}, torch::kCUDA).transpose(1, 2);
  ops::SamplerUpdate u{ops::OutputKind::Eps, 1.0, 0.9, 0.43, 1.0, {0.9, 0.1, 0.2, 0, 0}};
  ops::set_enabled_kernels("none");
  auto want = ops::sampler_update(x, cond, std::nullopt, std::nullopt, std::nullopt, std::nullopt, u);
  ops::set_enabled_kernels("all");
  auto got = ops::sampler_update(x, cond, std::nullopt, std::nullopt, std::nullopt, std::nullopt, u);
  check_close(got.out, want.out, 1e-6, 1e-6, "sampler_update transposed on a side stream");
  // attention kernel on the side stream
  auto qkv = torch::randn({1, 3, 2, 32, 6, 7, 8}, torch::kCUDA);
  auto q = qkv.select(1, 0), k = qkv.select(1, 1), v = qkv.select(1, 2);
  auto out = torch::empty({1, 2, 32, 6, 7, 8}, torch::kCUDA);
  ops::axial_attention_into(q, k, v, out);
  ops::set_enabled_kernels("none");
  auto ref = torch::empty_like(out);
  ops::axial_attention_into(q, k, v, ref);
  stream.synchronize();
  check_close(out, ref, 1e-4, 1e-4, "axial attention on a side stream");
  ops::set_enabled_kernels("default");
#endif
}
