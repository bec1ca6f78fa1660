#include <doctest/doctest.h>

#include "ops/sampler_step.h"

using namespace meddiff;

TEST_CASE("sampler_step matches a*x + b*y + c*z computed elementwise") {
  auto x = torch::tensor({1.0f, -2.0f, 3.5f}), y = torch::tensor({0.5f, 4.0f, -1.0f}), z = torch::tensor({2.0f, 0.0f, 1.0f});
  auto out = ops::sampler_step(x, 0.5, y, -2.0, z, 3.0);
  // 0.5*1 - 2*0.5 + 3*2 = 5.5; 0.5*-2 - 2*4 + 0 = -9; 0.5*3.5 - 2*-1 + 3*1 = 6.75
  CHECK(out[0].item<float>() == doctest::Approx(5.5));
  CHECK(out[1].item<float>() == doctest::Approx(-9.0));
  CHECK(out[2].item<float>() == doctest::Approx(6.75));
  auto no_z = ops::sampler_step(x, 1.0, y, 1.0);
  CHECK(no_z[1].item<float>() == doctest::Approx(2.0));
  CHECK_THROWS_WITH_AS(ops::sampler_step(x, 1.0, torch::zeros({2}), 1.0), doctest::Contains("shapes differ"), std::exception);
}
