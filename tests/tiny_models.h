#pragma once
// The tiny models the end-to-end tests train once per test binary: CT phantoms 16^3 in `dir`/data,
// a VQ-GAN (2 steps) in `dir`/vqgan and an LDM (3 steps) in `dir`/ldm, with extra --set arguments.
#include "cli/commands.h"
#include "test_support.h"

#include <doctest/doctest.h>

namespace meddiff::test {

inline void train_tiny_models(const std::filesystem::path& d, int64_t cases, const std::vector<std::string>& extra) {
  REQUIRE(cli::run_phantoms({"--modality", "ct", "--count", std::to_string(cases), "--shape", "16,16,16", "--spacing",
                             "1.5,1.5,2", "--out", (d / "data").string()}) == 0);
  auto common = tiny_model_args(d / "data/manifest.json");
  common.insert(common.end(), {"--set", "vqgan_train.steps=2", "--set", "ldm_train.steps=3"});
  common.insert(common.end(), extra.begin(), extra.end());
  auto vq = common;
  vq.insert(vq.end(), {"--out", (d / "vqgan").string()});
  REQUIRE(cli::run_train_vqgan(vq) == 0);
  auto ldm = common;
  ldm.insert(ldm.end(), {"--vqgan", (d / "vqgan/last.pt").string(), "--out", (d / "ldm").string()});
  REQUIRE(cli::run_train_ldm(ldm) == 0);
}

}  // namespace meddiff::test
