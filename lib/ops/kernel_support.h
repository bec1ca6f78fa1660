#pragma once
// When a meddiff CUDA kernel runs. Two questions, both answered once:
//  - built: the build may not hold code for the GPU's architecture (CMAKE_CUDA_ARCHITECTURES); the
//    CUDA runtime is asked once per device and kernel, and a kernel that cannot load is replaced by
//    the LibTorch path with one warning, never a crash.
//  - enabled: MEDDIFF_KERNELS selects the kernels: "default" (unset), "all", "none", or a comma list
//    of names (nearest_code, norm_act, attention, sampler_update). The default set holds the kernels
//    that have been measured faster than LibTorch on a GPU; attention is opt-in (see README).
#include <torch/torch.h>

#include <functional>
#include <string>
#include <vector>

namespace meddiff::ops {

// Every kernel's name, and the ones on by default.
const std::vector<std::string>& kernel_names();
bool kernel_enabled(const std::string& kernel);
// Overrides MEDDIFF_KERNELS for the rest of the process (benchmarks and tests): same syntax.
void set_enabled_kernels(const std::string& spec);

// `probe` runs with `device` current and reports whether the kernel's code loads there.
bool kernel_built_for(const torch::Device& device, const std::string& kernel, const std::function<bool()>& probe);
// Whether the kernel runs for a tensor: on a CUDA device, enabled, built for that device and not inside
// a LibTorchOnly scope (always false in a build without CUDA kernels).
bool kernel_runs(const torch::Tensor& t, const std::string& kernel, const std::function<bool()>& probe);

// While alive, this thread's ops take their LibTorch path even without autograd recording. Activation
// checkpointing (models/recompute.h) runs a block's first forward in this scope, so that the forward
// and its recomputation in backward (with autograd, hence LibTorch) are the same implementation, in the
// same dtypes, and the gradients are those of the activations the loss saw.
class LibTorchOnly {
 public:
  LibTorchOnly();
  ~LibTorchOnly();
  LibTorchOnly(const LibTorchOnly&) = delete;
  LibTorchOnly& operator=(const LibTorchOnly&) = delete;

 private:
  bool prev_;
};
bool libtorch_only();

}  // namespace meddiff::ops
