#pragma once
// The kernel benchmark of meddiff-gpu-check: each CUDA kernel against LibTorch's path on the same GPU
// (MEDDIFF_KERNELS none vs all, same inputs), with achieved GB/s or TFLOP/s against the card's
// measured peaks (a device-to-device copy; large bf16 and fp32 matrix products), and the U-Net
// forward and a DDIM sampling run of the brats-flair-64 size with no kernels, the default set and
// all kernels. Kernels slower than LibTorch are listed (they belong off by default).
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <string>

namespace meddiff {

// Returns the JSON record; `text` receives the table.
nlohmann::json kernel_benchmark(const torch::Device& device, const std::string& configs_dir, std::string& text);

}  // namespace meddiff
