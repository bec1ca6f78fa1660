#pragma once
// Fused GroupNorm + affine + FiLM + SiLU forward (kernels/norm_act.cu) over x [B, C, S] (contiguous,
// S = D*H*W): y = act(((x - mean_bg) * rstd_bg * weight_c + bias_c) * (1 + scale_bc) + shift_bc),
// with mean and variance per sample and group in float32 (Welford, split over blocks and merged),
// then one pass that reads x once and writes y once. weight/bias/scale/shift are float32 and may be
// null (weight 1, bias 0, no FiLM). x and y are float32, float16 or bfloat16.
#include <cuda_runtime_api.h>

#include <cstdint>

namespace meddiff::kernels {

enum class ElementType { Float32, Float16, BFloat16 };

struct NormActArgs {
  const void* x = nullptr;
  void* y = nullptr;
  ElementType type = ElementType::Float32;
  int64_t batch = 0, channels = 0, spatial = 0;
  int64_t groups = 1;
  const float *weight = nullptr, *bias = nullptr;  // [C]
  const float *scale = nullptr, *shift = nullptr;  // [B, C]
  float eps = 1e-5f;
  bool silu = true;
};

bool norm_act_available();
// Bytes of float32 work space the launch needs (partial statistics).
int64_t norm_act_workspace_bytes(const NormActArgs& args);
void launch_norm_act(const NormActArgs& args, float* workspace, cudaStream_t stream);

}  // namespace meddiff::kernels
