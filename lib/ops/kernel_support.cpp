#include "ops/kernel_support.h"

#include "core/error.h"
#include "core/log.h"

#include <algorithm>
#include <cstdlib>
#include <map>
#include <mutex>
#include <set>
#include <sstream>

#ifdef MEDDIFF_HAVE_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime_api.h>
#endif

namespace meddiff::ops {

namespace {
const std::vector<std::string> kDefault = {"nearest_code", "norm_act", "sampler_update"};

std::set<std::string> parse_kernels(const std::string& spec) {
  if (spec.empty() || spec == "default") return {kDefault.begin(), kDefault.end()};
  if (spec == "all") return {kernel_names().begin(), kernel_names().end()};
  if (spec == "none") return {};
  std::set<std::string> out;
  std::stringstream ss(spec);
  for (std::string name; std::getline(ss, name, ',');) {
    if (std::find(kernel_names().begin(), kernel_names().end(), name) == kernel_names().end())
      fail("MEDDIFF_KERNELS: unknown kernel '{}' (known: {}; or default, all, none)", name, fmt::join(kernel_names(), ", "));
    out.insert(name);
  }
  return out;
}

std::mutex& enabled_mutex() {
  static std::mutex mu;
  return mu;
}

std::set<std::string>& enabled() {
  static std::set<std::string> set = [] {
    const char* env = std::getenv("MEDDIFF_KERNELS");
    return parse_kernels(env ? env : "");
  }();
  return set;
}
}  // namespace

const std::vector<std::string>& kernel_names() {
  static const std::vector<std::string> names = {"nearest_code", "norm_act", "attention", "sampler_update"};
  return names;
}

bool kernel_enabled(const std::string& kernel) {
  std::lock_guard<std::mutex> lock(enabled_mutex());
  return enabled().count(kernel) > 0;
}

void set_enabled_kernels(const std::string& spec) {
  auto parsed = parse_kernels(spec);
  std::lock_guard<std::mutex> lock(enabled_mutex());
  enabled() = parsed;
}

bool kernel_built_for(const torch::Device& device, const std::string& kernel, const std::function<bool()>& probe) {
  static std::mutex mu;
  static std::map<std::pair<int, std::string>, bool> known;
  std::lock_guard<std::mutex> lock(mu);
  auto key = std::make_pair(static_cast<int>(device.index()), kernel);
  auto it = known.find(key);
  if (it != known.end()) return it->second;
  bool ok = false;
#ifdef MEDDIFF_HAVE_CUDA
  c10::cuda::CUDAGuard guard(device);
  ok = probe();
  if (!ok) {
    int dev = 0, major = 0, minor = 0;
    cudaGetDevice(&dev);
    cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
    cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev);
    log_warn("meddiff's CUDA kernel '{}' was not built for this GPU (compute capability {}.{}); LibTorch's operations run "
             "instead (rebuild with -DMEDDIFF_CUDA_ARCHITECTURES={}{} for the fused kernel)",
             kernel, major, minor, major, minor);
  }
#else
  (void)probe;
#endif
  known[key] = ok;
  return ok;
}

namespace {
thread_local bool t_libtorch_only = false;
}

LibTorchOnly::LibTorchOnly() : prev_(t_libtorch_only) { t_libtorch_only = true; }
LibTorchOnly::~LibTorchOnly() { t_libtorch_only = prev_; }
bool libtorch_only() { return t_libtorch_only; }

bool kernel_runs(const torch::Tensor& t, const std::string& kernel, const std::function<bool()>& probe) {
#ifdef MEDDIFF_HAVE_CUDA
  return t.is_cuda() && !t_libtorch_only && kernel_enabled(kernel) && kernel_built_for(t.device(), kernel, probe);
#else
  (void)t, (void)kernel, (void)probe;
  return false;
#endif
}

}  // namespace meddiff::ops
