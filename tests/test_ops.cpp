// The ops layer's LibTorch ops (their CPU reference paths) against independent arithmetic: scalar
// loops in double precision written from the formulas, not from the ops' tensor code.
#include <doctest/doctest.h>

#include "ops/attention.h"
#include "ops/kernel_support.h"
#include "ops/nearest_code.h"
#include "ops/norm_act.h"
#include "ops/sampler_update.h"

#include <ATen/core/dispatch/Dispatcher.h>

#include <cmath>
#include <limits>
#include <thread>

using namespace meddiff;

namespace {
double val(const torch::Tensor& t, int64_t i) { return t.reshape({-1})[i].item<double>(); }
}  // namespace

TEST_CASE("the four ops are registered with the dispatcher and the kernel switch parses MEDDIFF_KERNELS syntax") {
  for (const char* op : {"meddiff::nearest_code", "meddiff::norm_act", "meddiff::attention_into", "meddiff::sampler_update"}) {
    INFO(std::string(op));
    CHECK(c10::Dispatcher::singleton().findSchema({op, ""}).has_value());
  }
  ops::set_enabled_kernels("attention,norm_act");
  CHECK(ops::kernel_enabled("attention"));
  CHECK(!ops::kernel_enabled("sampler_update"));
  ops::set_enabled_kernels("none");
  CHECK(!ops::kernel_enabled("norm_act"));
  ops::set_enabled_kernels("all");
  CHECK(ops::kernel_enabled("nearest_code"));
  ops::set_enabled_kernels("default");
  CHECK(ops::kernel_enabled("sampler_update"));
  CHECK(!ops::kernel_enabled("attention"));
  CHECK_THROWS_WITH_AS(ops::set_enabled_kernels("norm_act,flash"), doctest::Contains("unknown kernel 'flash'"), std::exception);
  CHECK(!ops::kernel_runs(torch::zeros({1}), "norm_act", [] { return true; }));  // CPU tensors never take a kernel
}

TEST_CASE("sampler_update: guidance, every output kind, clipping, the per-sample bound and the five terms") {
  torch::manual_seed(3);
  const int64_t B = 2, n = 5;
  auto x = torch::randn({B, n}, torch::kDouble), cond = torch::randn({B, n}, torch::kDouble) * 2,
       uncond = torch::randn({B, n}, torch::kDouble), prev = torch::randn({B, n}, torch::kDouble),
       noise = torch::randn({B, n}, torch::kDouble);
  auto bound = torch::tensor({1.5, 3.0}, torch::kDouble);
  const double w = 2.5, a = 0.8, s = 0.6, clip = 1.2;
  const ops::UpdateCoefficients c{0.3, -0.7, 0.45, 0.2, 0.1};
  for (auto kind : {ops::OutputKind::Eps, ops::OutputKind::X0, ops::OutputKind::V, ops::OutputKind::Flow})
    for (int mode = 0; mode < 3; ++mode) {  // 0: no clipping, 1: static clip, 2: per-sample bound
      ops::SamplerUpdate u;
      u.kind = kind;
      u.guidance = w;
      u.a = a;
      u.s = s;
      u.clip = mode == 0 ? 0 : clip;
      u.c = c;
      u.want_x0 = u.want_e = true;
      auto r = ops::sampler_update(x, cond, uncond, prev, noise, mode == 2 ? ops::OptTensor(bound) : std::nullopt, u);
      for (int64_t i = 0; i < B * n; ++i) {
        const double xi = val(x, i), o = val(uncond, i) + w * (val(cond, i) - val(uncond, i));
        double x0 = kind == ops::OutputKind::Eps ? (xi - s * o) / a
                    : kind == ops::OutputKind::X0 ? o
                    : kind == ops::OutputKind::V  ? a * xi - s * o
                                                  : xi - s * o;
        if (mode == 1) x0 = std::min(clip, std::max(-clip, x0));
        if (mode == 2) {
          const double b = val(bound, i / n);
          x0 = std::min(b, std::max(-b, x0)) / b * clip;
        }
        const double e = kind == ops::OutputKind::Flow ? (mode == 0 ? o : (xi - x0) / s) : (xi - a * x0) / s;
        const double out = c.cx * xi + c.c0 * x0 + c.ce * e + c.cp * val(prev, i) + c.cn * val(noise, i);
        INFO("kind " << static_cast<int>(kind) << " mode " << mode << " element " << i);
        CHECK(val(r.x0, i) == doctest::Approx(x0).epsilon(1e-12));
        CHECK(val(r.e, i) == doctest::Approx(e).epsilon(1e-12));
        CHECK(val(r.out, i) == doctest::Approx(out).epsilon(1e-12));
      }
    }
  // without uncond the conditional output is used alone; x0 and e are not returned unless asked
  ops::SamplerUpdate plain;
  plain.kind = ops::OutputKind::X0;
  plain.c.c0 = 1;
  auto r = ops::sampler_update(x, cond, std::nullopt, std::nullopt, std::nullopt, std::nullopt, plain);
  CHECK(torch::equal(r.out, cond));
  CHECK(!r.x0.defined());
  CHECK_THROWS_WITH_AS(ops::sampler_update(x, cond.slice(1, 0, 2), std::nullopt, std::nullopt, std::nullopt, std::nullopt, plain),
                       doctest::Contains("differs from x"), std::exception);
  // combine: the terms alone
  auto k = ops::combine({2, 0, 0, 0, -1}, x, std::nullopt, std::nullopt, std::nullopt, noise);
  CHECK(val(k, 3) == doctest::Approx(2 * val(x, 3) - val(noise, 3)));
}

TEST_CASE("norm_act equals GroupNorm, FiLM and SiLU computed per group by hand") {
  torch::manual_seed(5);
  const int64_t B = 2, C = 6, S = 7;
  auto x = torch::randn({B, C, S}) * 3 + 1;
  auto weight = torch::randn({C}), bias = torch::randn({C}), scale = torch::randn({B, C}) * 0.5, shift = torch::randn({B, C});
  for (int64_t groups : {1, 2, 3, 6})
    for (bool film : {false, true})
      for (bool silu : {false, true}) {
        auto y = ops::norm_act(x, groups, weight, bias, 1e-5, film ? scale : torch::Tensor(), film ? shift : torch::Tensor(), silu);
        const int64_t cg = C / groups;
        for (int64_t b = 0; b < B; ++b)
          for (int64_t g = 0; g < groups; ++g) {
            double sum = 0, sq = 0;
            for (int64_t c = g * cg; c < (g + 1) * cg; ++c)
              for (int64_t i = 0; i < S; ++i) sum += x[b][c][i].item<double>();
            const double mean = sum / static_cast<double>(cg * S);
            for (int64_t c = g * cg; c < (g + 1) * cg; ++c)
              for (int64_t i = 0; i < S; ++i) sq += std::pow(x[b][c][i].item<double>() - mean, 2);
            const double rstd = 1 / std::sqrt(sq / static_cast<double>(cg * S) + 1e-5);
            for (int64_t c = g * cg; c < (g + 1) * cg; ++c)
              for (int64_t i = 0; i < S; i += 3) {
                double v = (x[b][c][i].item<double>() - mean) * rstd * weight[c].item<double>() + bias[c].item<double>();
                if (film) v = v * (1 + scale[b][c].item<double>()) + shift[b][c].item<double>();
                if (silu) v = v / (1 + std::exp(-v));
                INFO("groups " << groups << " film " << film << " silu " << silu << " at " << b << "," << c << "," << i);
                CHECK(y[b][c][i].item<double>() == doctest::Approx(v).epsilon(1e-4));
              }
          }
      }
  // the module overload takes the module's groups, weights and eps; with autograd the same values and a gradient
  auto gn = torch::nn::GroupNorm(torch::nn::GroupNormOptions(3, C).eps(1e-6));
  auto xg = x.clone().requires_grad_(true);
  auto yg = ops::norm_act(gn, xg, scale, shift);
  CHECK(torch::allclose(yg, ops::norm_act(x, 3, gn->weight, gn->bias, 1e-6, scale, shift, true), 1e-5, 1e-6));
  yg.sum().backward();
  CHECK(xg.grad().defined());
  CHECK_THROWS_WITH_AS(ops::norm_act(x, 4, weight, bias, 1e-5, {}, {}, true), doctest::Contains("divisible"), std::exception);
}

TEST_CASE("attention_into reads strided views and accumulates: softmax(q k^T / sqrt(d)) v by hand") {
  torch::manual_seed(7);
  // a [B, heads, dh, D, H, W] layout as the U-Net's attention blocks hold it, attended along W
  const int64_t B = 1, heads = 2, dh = 4, D = 2, H = 3, W = 5;
  auto q = torch::randn({B, heads, dh, D, H, W}), k = torch::randn({B, heads, dh, D, H, W}), v = torch::randn({B, heads, dh, D, H, W});
  const std::vector<int64_t> perm{0, 1, 3, 4, 5, 2};  // [B, heads, D, H, W(L), dh]
  auto out = torch::full({B, heads, dh, D, H, W}, 2.0f);
  auto o = out.permute(perm);
  ops::attention_into(q.permute(perm), k.permute(perm), v.permute(perm), o, 0.5, 1.0);  // out = 2 + 0.5 attention
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t d = 0; d < D; ++d)
      for (int64_t y = 0; y < H; ++y)
        for (int64_t i = 0; i < W; i += 2) {
          std::vector<double> p(static_cast<size_t>(W));
          double mx = -1e30, z = 0;
          for (int64_t j = 0; j < W; ++j) {
            double s = 0;
            for (int64_t c = 0; c < dh; ++c) s += q[0][h][c][d][y][i].item<double>() * k[0][h][c][d][y][j].item<double>();
            p[static_cast<size_t>(j)] = s / std::sqrt(static_cast<double>(dh));
            mx = std::max(mx, p[static_cast<size_t>(j)]);
          }
          for (auto& e : p) z += (e = std::exp(e - mx));
          for (int64_t c = 0; c < dh; ++c) {
            double r = 0;
            for (int64_t j = 0; j < W; ++j) r += p[static_cast<size_t>(j)] / z * v[0][h][c][d][y][j].item<double>();
            CHECK(out[0][h][c][d][y][i].item<double>() == doctest::Approx(2 + 0.5 * r).epsilon(1e-5));
          }
        }
  // beta = 0 overwrites (even NaN), and equal keys give the mean of the values
  auto q2 = torch::randn({3, 6, 8}), k2 = torch::ones({3, 6, 8}), v2 = torch::randn({3, 6, 8});
  auto o2 = torch::full({3, 6, 8}, std::nanf(""));
  ops::attention_into(q2, k2, v2, o2);
  CHECK(torch::allclose(o2, v2.mean(1, true).expand({3, 6, 8}), 1e-5, 1e-6));
  CHECK(torch::allclose(ops::attention(q2, q2, v2), ops::attention_reference(q2, q2, v2), 1e-5, 1e-6));
  CHECK_THROWS_WITH_AS(ops::attention(q2, k2.slice(2, 0, 4), v2), doctest::Contains("attention"), std::exception);
}

TEST_CASE("attention: SDPA's merged batch is split into calls within the CUDA grid limit, with the one-call result") {
  torch::manual_seed(11);
  // chunked at a small limit, and uneven last chunk: the same values as one call
  auto q = torch::randn({2, 3, 5, 7, 4}), k = torch::randn({2, 3, 5, 7, 4}), v = torch::randn({2, 3, 5, 7, 6});
  auto whole = ops::sdpa_chunked(q, k, v, 1 << 30), chunked = ops::sdpa_chunked(q, k, v, 4);
  CHECK(whole.sizes() == std::vector<int64_t>{1, 30, 7, 6});
  CHECK(torch::allclose(whole, chunked, 1e-6, 1e-7));
  CHECK(torch::allclose(whole.reshape({2, 3, 5, 7, 6}), ops::attention_reference(q, k, v), 1e-5, 1e-6));
  // the shape of issue 142228: 8 heads x a 64 x 64 cross-section x the guidance pair = 65,536 sequences
  auto qa = torch::randn({2, 8, 64, 64, 3, 4}), ka = torch::randn({2, 8, 64, 64, 3, 4}), va = torch::randn({2, 8, 64, 64, 3, 4});
  CHECK(torch::allclose(ops::attention(qa, ka, va), ops::attention_reference(qa, ka, va), 1e-5, 1e-6));
  // with autograd (the training path) the chunks keep the graph
  auto qg = q.clone().requires_grad_(true);
  ops::sdpa_chunked(qg, k, v, 4).sum().backward();
  auto qr = q.clone().requires_grad_(true);
  ops::attention_reference(qr, k, v).sum().backward();
  CHECK(torch::allclose(qg.grad(), qr.grad(), 1e-5, 1e-6));
  CHECK_THROWS_WITH_AS(ops::sdpa_chunked(q, k, v, 0), doctest::Contains("max_batch"), std::exception);
}

TEST_CASE("norm_act: a bias that alone requires grad gets its gradient (autograd is recording)") {
  torch::manual_seed(12);
  auto x = torch::randn({2, 4, 5}), w = torch::randn({4}), b = torch::randn({4}).requires_grad_(true);
  auto y = ops::norm_act(x, 2, w, b, 1e-5, {}, {}, false);
  REQUIRE(y.requires_grad());
  y.pow(2).sum().backward();
  REQUIRE(b.grad().defined());
  // d/db sum(y^2) = 2 sum over (batch, spatial) of y, per channel
  CHECK(torch::allclose(b.grad(), 2 * y.detach().sum(std::vector<int64_t>{0, 2}), 1e-5, 1e-5));
}

TEST_CASE("LibTorchOnly: no kernel runs inside the scope, nested scopes restore, other threads are not affected") {
  CHECK_FALSE(ops::libtorch_only());
  {
    ops::LibTorchOnly a;
    CHECK(ops::libtorch_only());
    {
      ops::LibTorchOnly b;
      CHECK(ops::libtorch_only());
    }
    CHECK(ops::libtorch_only());
    bool other = true;
    std::thread t([&] { other = ops::libtorch_only(); });
    t.join();
    CHECK_FALSE(other);
  }
  CHECK_FALSE(ops::libtorch_only());
}

TEST_CASE("CPU paths propagate NaN: a NaN prediction stays NaN through clipping, a 0-coefficient inf term is left out") {
  // the reference behaviour the CUDA kernels are held to (test_ops_gpu)
  auto x = torch::tensor({{0.5f, 0.1f}}), cond = torch::tensor({{std::nanf(""), 0.2f}});
  auto noise = torch::tensor({{std::numeric_limits<float>::infinity(), 1.0f}});
  // x0 prediction, alpha 0.8, sigma 0.6, clip 1; the noise term's coefficient is 0
  ops::SamplerUpdate u{ops::OutputKind::X0, 1.0, 0.8, 0.6, 1.0, {0.5, 0.5, 0.0, 0.0, 0.0}, true, false};
  auto r = ops::sampler_update(x, cond, std::nullopt, std::nullopt, noise, std::nullopt, u);
  CHECK(std::isnan(val(r.x0, 0)));
  CHECK(std::isnan(val(r.out, 0)));
  CHECK(val(r.out, 1) == doctest::Approx(0.5 * 0.1 + 0.5 * 0.2));  // finite: 0 * inf was not added
  auto bound = torch::tensor({std::nanf("")});
  CHECK(std::isnan(val(ops::sampler_update(x, torch::tensor({{0.3f, 0.2f}}), std::nullopt, std::nullopt, std::nullopt, bound, u).x0, 0)));
}

TEST_CASE("nearest_code on the CPU: a NaN row gives a NaN distance, a NaN code is reported as LibTorch's min does") {
  auto codebook = torch::tensor({{0.f, 0.f}, {1.f, 1.f}, {3.f, 3.f}});
  auto z = torch::tensor({{0.9f, 1.2f}, {std::nanf(""), 0.f}, {2.9f, 3.f}});
  auto r = ops::nearest_code(z, codebook);
  CHECK(r.index[0].item<int64_t>() == 1);
  CHECK(r.distance[0].item<double>() == doctest::Approx(0.01 + 0.04).epsilon(1e-4));
  CHECK(std::isnan(r.distance[1].item<double>()));
  CHECK(r.index[2].item<int64_t>() == 2);
  auto bad = codebook.clone();
  bad[1][0] = std::nanf("");
  auto rb = ops::nearest_code(z, bad);
  CHECK(std::isnan(rb.distance[0].item<double>()));  // a NaN code makes every row's minimum NaN
  CHECK(rb.index[0].item<int64_t>() == 1);
}
