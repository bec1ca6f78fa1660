#pragma once
// Two helpers every kernel file uses: whether this build holds code the current GPU can load for a
// kernel (machine code for its architecture or PTX it can compile), and turning a launch error into
// an exception naming the kernel.
#include <cuda_runtime_api.h>

#include <stdexcept>
#include <string>

namespace meddiff::kernels {

template <class Kernel>
bool kernel_loads(Kernel kernel) {
  cudaFuncAttributes attributes;
  cudaError_t err = cudaFuncGetAttributes(&attributes, reinterpret_cast<const void*>(kernel));
  if (err != cudaSuccess) cudaGetLastError();  // not having the kernel is not an error state
  return err == cudaSuccess;
}

inline void check_launch(const char* kernel) {
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) throw std::runtime_error(std::string(kernel) + " kernel: " + cudaGetErrorString(err));
}

// Blocks for a grid-stride loop over n elements.
inline unsigned grid_for(long long n, int threads, long long max_blocks = 65535LL * 16) {
  long long blocks = (n + threads - 1) / threads;
  if (blocks < 1) blocks = 1;
  return static_cast<unsigned>(blocks > max_blocks ? max_blocks : blocks);
}

}  // namespace meddiff::kernels
