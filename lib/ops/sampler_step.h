#pragma once
// The sampler update op: a*x + b*y + c*z (z optional). Every DDPM, DDIM and DPM-Solver++ step ends
// in this form. CPU: reference LibTorch arithmetic; CUDA float32 contiguous tensors: one fused
// kernel from kernels/ (when compiled in), else the same LibTorch arithmetic on the device.
#include <torch/torch.h>

#include <optional>

namespace meddiff::ops {

torch::Tensor sampler_step(const torch::Tensor& x, double a, const torch::Tensor& y, double b,
                           const std::optional<torch::Tensor>& z = std::nullopt, double c = 0.0);
// The reference path (always LibTorch arithmetic), for tests and benchmarks.
torch::Tensor sampler_step_reference(const torch::Tensor& x, double a, const torch::Tensor& y, double b,
                                     const std::optional<torch::Tensor>& z = std::nullopt, double c = 0.0);
// True when the fused CUDA kernel would run for these tensors.
bool sampler_step_uses_kernel(const torch::Tensor& x);

}  // namespace meddiff::ops
