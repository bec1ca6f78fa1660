// GPU tests (label gpu): the fused CUDA kernels against the CPU reference.
#include <doctest/doctest.h>

#include "ops/sampler_step.h"

using namespace meddiff;

TEST_CASE("sampler_step CUDA kernel equals the CPU reference") {
  if (!torch::cuda::is_available()) {
    MESSAGE("no CUDA device: skipped");
    return;
  }
  CHECK(ops::sampler_step_uses_kernel(torch::zeros({1}, torch::kCUDA)));
  for (int64_t n : {1, 255, 256, 257, 1 << 20, 3 * 64 * 64 * 64 + 7}) {
    auto x = torch::randn({n}), y = torch::randn({n}), z = torch::randn({n});
    auto ref = ops::sampler_step_reference(x, 0.7, y, -0.3, z, 0.11);
    auto got = ops::sampler_step(x.cuda(), 0.7, y.cuda(), -0.3, z.cuda(), 0.11).cpu();
    auto err = (got - ref).abs().max().item<float>();
    INFO("n = " << n << ", max abs error " << err);
    CHECK(err <= 1e-6f * (1 + ref.abs().max().item<float>()));
    auto got2 = ops::sampler_step(x.cuda(), 0.7, y.cuda(), -0.3).cpu();
    CHECK((got2 - ops::sampler_step_reference(x, 0.7, y, -0.3)).abs().max().item<float>() <= 1e-5f);
  }
}
