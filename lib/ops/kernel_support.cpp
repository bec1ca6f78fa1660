#include "ops/kernel_support.h"

#include "core/log.h"

#include <map>
#include <mutex>

#ifdef MEDDIFF_HAVE_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime_api.h>
#endif

namespace meddiff::ops {

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
             "instead (rebuild with -DCMAKE_CUDA_ARCHITECTURES={}{} for the fused kernel)",
             kernel, major, minor, major, minor);
  }
#else
  (void)probe;
#endif
  known[key] = ok;
  return ok;
}

}  // namespace meddiff::ops
