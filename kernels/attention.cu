// Tiled attention with online softmax. A block of 128 threads serves 128 / TPR queries of one batch
// index; TPR threads (1, 1, 2, 4 for head dims 16, 32, 64, 128) share a query, each holding every
// TPR-th element of its q and output accumulator in registers, and reduce their partial dot
// products with warp shuffles. Keys and values come through shared memory kKeys at a time
// (converted to float32), loaded along whichever of the token and head axes is contiguous.
#include "kernels/attention.h"

#include "kernels/cuda_check.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>

namespace meddiff::kernels {
namespace {

constexpr int kThreads = 128;
constexpr int kKeys = 32;

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
template <class T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half from_float<__half>(float v) { return __float2half(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16(v); }

struct Offsets {
  int64_t q, k, v, out;
};

__device__ __forceinline__ Offsets batch_offsets(const AttentionArgs& a, int64_t bi) {
  Offsets o{0, 0, 0, 0};
  for (int d = a.batch_dims - 1; d >= 0; --d) {
    const int64_t i = bi % a.batch_sizes[d];
    bi /= a.batch_sizes[d];
    o.q += i * a.q_stride[d];
    o.k += i * a.k_stride[d];
    o.v += i * a.v_stride[d];
    o.out += i * a.out_stride[d];
  }
  return o;
}

// Loads rows [k0, k0 + kKeys) of a [L, D] operand into tile[kKeys][D] as float, zeros past L.
template <class T, int D>
__device__ __forceinline__ void load_tile(float* tile, const T* base, int64_t k0, int64_t len, int64_t seq_stride,
                                          int64_t dim_stride) {
  const bool token_major = seq_stride == 1 && dim_stride != 1;  // consecutive tokens are adjacent in memory
  for (int idx = threadIdx.x; idx < kKeys * D; idx += kThreads) {
    const int j = token_major ? idx % kKeys : idx / D;
    const int d = token_major ? idx / kKeys : idx % D;
    const int64_t key = k0 + j;
    tile[j * D + d] = key < len ? to_float(base[key * seq_stride + d * dim_stride]) : 0.f;
  }
}

template <class T, int D>
__global__ void __launch_bounds__(kThreads) attention_kernel(const AttentionArgs a) {
  constexpr int TPR = D <= 32 ? 1 : D / 32;  // threads per query
  constexpr int DPT = D / TPR;               // head elements per thread
  constexpr int ROWS = kThreads / TPR;
  __shared__ float ks[kKeys * D];
  __shared__ float vs[kKeys * D];
  const int64_t q_tiles = (a.lq + ROWS - 1) / ROWS;
  const int64_t bi = blockIdx.x / q_tiles, tile = blockIdx.x % q_tiles;
  const int row = threadIdx.x / TPR, part = threadIdx.x % TPR;
  const int64_t qi = tile * ROWS + row;
  const Offsets off = batch_offsets(a, bi);
  const int nb = a.batch_dims;
  const T* q = static_cast<const T*>(a.q) + off.q;
  const T* k = static_cast<const T*>(a.k) + off.k;
  const T* v = static_cast<const T*>(a.v) + off.v;
  const float log2e = 1.4426950408889634f;
  float qv[DPT], acc[DPT];
#pragma unroll
  for (int i = 0; i < DPT; ++i) {
    const int d = i * TPR + part;
    qv[i] = qi < a.lq ? to_float(q[qi * a.q_stride[nb] + d * a.q_stride[nb + 1]]) * a.scale * log2e : 0.f;
    acc[i] = 0.f;
  }
  float m = -INFINITY, l = 0.f;
  for (int64_t k0 = 0; k0 < a.lk; k0 += kKeys) {
    __syncthreads();
    load_tile<T, D>(ks, k, k0, a.lk, a.k_stride[nb], a.k_stride[nb + 1]);
    load_tile<T, D>(vs, v, k0, a.lk, a.v_stride[nb], a.v_stride[nb + 1]);
    __syncthreads();
    float s[kKeys];
    float tile_max = -INFINITY;
#pragma unroll
    for (int j = 0; j < kKeys; ++j) {
      float p = 0.f;
#pragma unroll
      for (int i = 0; i < DPT; ++i) p = fmaf(qv[i], ks[j * D + i * TPR + part], p);
#pragma unroll
      for (int w = TPR / 2; w > 0; w /= 2) p += __shfl_xor_sync(0xffffffffu, p, w);
      s[j] = k0 + j < a.lk ? p : -INFINITY;
      tile_max = fmaxf(tile_max, s[j]);
    }
    const float m_new = fmaxf(m, tile_max);  // finite: every tile holds at least one key
    const float correction = exp2f(m - m_new);
    l *= correction;
#pragma unroll
    for (int i = 0; i < DPT; ++i) acc[i] *= correction;
#pragma unroll
    for (int j = 0; j < kKeys; ++j) {
      const float p = exp2f(s[j] - m_new);
      l += p;
#pragma unroll
      for (int i = 0; i < DPT; ++i) acc[i] = fmaf(p, vs[j * D + i * TPR + part], acc[i]);
    }
    m = m_new;
  }
  if (qi >= a.lq) return;
  T* out = static_cast<T*>(a.out) + off.out + qi * a.out_stride[nb];
  const float inv = a.alpha / l;
#pragma unroll
  for (int i = 0; i < DPT; ++i) {
    T* o = out + static_cast<int64_t>(i * TPR + part) * a.out_stride[nb + 1];
    const float r = acc[i] * inv;
    *o = from_float<T>(a.beta == 0.f ? r : fmaf(a.beta, to_float(*o), r));
  }
}

template <class T, int D>
void launch(const AttentionArgs& a, cudaStream_t stream) {
  constexpr int ROWS = kThreads / (D <= 32 ? 1 : D / 32);
  int64_t batch = 1;
  for (int d = 0; d < a.batch_dims; ++d) batch *= a.batch_sizes[d];
  const int64_t blocks = batch * ((a.lq + ROWS - 1) / ROWS);
  if (blocks > 0x7fffffffLL) throw std::runtime_error("attention kernel: too many (batch x query tile) blocks");
  attention_kernel<T, D><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(a);
}

template <class T>
void dispatch_dim(const AttentionArgs& a, cudaStream_t stream) {
  switch (a.head_dim) {
    case 16: launch<T, 16>(a, stream); break;
    case 32: launch<T, 32>(a, stream); break;
    case 64: launch<T, 64>(a, stream); break;
    case 128: launch<T, 128>(a, stream); break;
    default: throw std::runtime_error("attention kernel: head dim must be 16, 32, 64 or 128");
  }
}

}  // namespace

bool attention_available() { return kernel_loads(attention_kernel<float, 64>); }

bool attention_supports_head_dim(int64_t d) { return d == 16 || d == 32 || d == 64 || d == 128; }

void launch_attention(const AttentionArgs& a, cudaStream_t stream) {
  if (a.lq == 0) return;
  if (a.lk == 0) throw std::runtime_error("attention kernel: no keys");
  if (a.batch_dims < 0 || a.batch_dims > kAttentionMaxBatchDims) throw std::runtime_error("attention kernel: at most 4 batch dimensions");
  switch (a.type) {
    case ElementType::Float32: dispatch_dim<float>(a, stream); break;
    case ElementType::Float16: dispatch_dim<__half>(a, stream); break;
    case ElementType::BFloat16: dispatch_dim<__nv_bfloat16>(a, stream); break;
  }
  check_launch("attention");
}

}  // namespace meddiff::kernels
