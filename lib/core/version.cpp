#include "core/version.h"

#include "meddiff_version.h"

#include <fmt/format.h>
#include <torch/torch.h>
#include <torch/version.h>

namespace meddiff {

std::string version() { return MEDDIFF_VERSION; }
std::string git_hash() { return MEDDIFF_GIT_HASH; }
std::string torch_version() { return TORCH_VERSION; }

bool cuda_compiled() {
#ifdef MEDDIFF_HAVE_CUDA
  return true;
#else
  return false;
#endif
}

bool cuda_available() { return torch::cuda::is_available(); }

nlohmann::json build_info() {
  return {{"meddiff", version()},
          {"git", git_hash()},
          {"libtorch", torch_version()},
          {"cuda_compiled", cuda_compiled()},
          {"cuda_available", cuda_available()},
          {"cuda_devices", cuda_available() ? static_cast<int>(torch::cuda::device_count()) : 0}};
}

std::string version_text() {
  bool avail = cuda_available();
  return fmt::format(
      "meddiff {} (git {})\nLibTorch {}\nCUDA kernels compiled: {}\nCUDA device available: {}{}\n", version(),
      git_hash(), torch_version(), cuda_compiled() ? "yes" : "no", avail ? "yes" : "no",
      avail ? fmt::format(" ({} device(s))", torch::cuda::device_count()) : "");
}

}  // namespace meddiff
