#pragma once
// Whether a meddiff CUDA kernel can run on a device: the build may not hold code for its
// architecture (CMAKE_CUDA_ARCHITECTURES). The answer is asked of the CUDA runtime once per device and
// kernel; a kernel that cannot run is replaced by the LibTorch path with one warning, never a crash.
#include <torch/torch.h>

#include <functional>
#include <string>

namespace meddiff::ops {

// `probe` runs with `device` current and reports whether the kernel's code loads there.
bool kernel_built_for(const torch::Device& device, const std::string& kernel, const std::function<bool()>& probe);

}  // namespace meddiff::ops
