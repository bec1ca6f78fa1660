#pragma once
// Measurements for `meddiff bench`: wall time (median of repeats after a warm-up, with the device
// synchronised), peak memory (process resident memory on the CPU, the CUDA caching allocator on a
// GPU; each stage starts a new peak) and the floating-point operations of one call, from LibTorch's
// profiler: convolutions (forward and backward) counted here from their recorded shapes and arguments,
// matrix products and element-wise ops as LibTorch counts them. Fused attention kernels are not
// counted, so GFLOP/s is a lower bound where attention matters.
#include <torch/torch.h>

#include <functional>

namespace meddiff {

struct Measured {
  double median_s = 0, min_s = 0;
  int64_t repeats = 0;
  double peak_mib = 0;  // CPU: peak resident memory of the process during the stage; CUDA: allocator peak
  double gflop = 0;     // counted by the profiler in one call (0 when not counted)
  double gflops_per_s() const { return median_s > 0 ? gflop / median_s : 0; }
};

// Runs `fn` once to warm up (and to count FLOPs when `count_flops`), then `repeats` timed times.
Measured measure(const std::function<void()>& fn, const torch::Device& device, int64_t repeats, bool count_flops = false);
// One cold run, timed (for work too long to repeat, e.g. a clinical-size decode).
Measured measure_once(const std::function<void()>& fn, const torch::Device& device);

// Floating-point operations of one call of `fn`, as counted by the profiler (GFLOP).
double counted_gflop(const std::function<void()>& fn);

}  // namespace meddiff
