#pragma once
// Flash-attention-style forward (kernels/attention.cu): out = beta * out + alpha * softmax(q k^T *
// scale) v for every index of up to four batch dimensions, with q [.., Lq, d], k and v [.., Lk, d]
// and out [.., Lq, d] read and written through arbitrary element strides: the models' permuted views
// (full 3-D attention over flattened tokens, axial attention along one spatial axis) are used as
// they are, with no copies, and the three axial results accumulate into one buffer (beta = 1).
// Tiles of keys and values pass through shared memory; the softmax is computed online (running max
// and sum) in float32, so no Lq x Lk matrix exists. Head dims 16, 32, 64 and 128; float32, float16,
// bfloat16. beta = 0 overwrites out without reading it.
#include "kernels/norm_act.h"  // ElementType

#include <cuda_runtime_api.h>

#include <cstdint>

namespace meddiff::kernels {

constexpr int kAttentionMaxBatchDims = 4;

struct AttentionArgs {
  const void *q = nullptr, *k = nullptr, *v = nullptr;
  void* out = nullptr;
  ElementType type = ElementType::Float32;
  int batch_dims = 0;
  int64_t batch_sizes[kAttentionMaxBatchDims] = {1, 1, 1, 1};
  // strides in elements: [0..batch_dims) batch dimensions, then the sequence, then the head dimension
  int64_t q_stride[kAttentionMaxBatchDims + 2] = {}, k_stride[kAttentionMaxBatchDims + 2] = {},
          v_stride[kAttentionMaxBatchDims + 2] = {}, out_stride[kAttentionMaxBatchDims + 2] = {};
  int64_t lq = 0, lk = 0;
  int head_dim = 0;
  float scale = 1.f, alpha = 1.f, beta = 0.f;
};

bool attention_available();
bool attention_supports_head_dim(int64_t d);
void launch_attention(const AttentionArgs& args, cudaStream_t stream);

}  // namespace meddiff::kernels
