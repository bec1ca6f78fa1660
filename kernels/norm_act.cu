// GroupNorm + FiLM + SiLU: (1) per (sample, group) and slice of the group, a block's Welford
// statistics (count, mean, M2) into the work space; (2) per (sample, channel) row and slice of it,
// the slices' statistics merged (Chan et al.) into mean and rstd, folded with the affine and FiLM
// parameters into y = act(x * A + B), and applied.
#include "kernels/norm_act.h"

#include "kernels/cuda_check.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace meddiff::kernels {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxSlices = 64;

__device__ __forceinline__ float load(const float* p, int64_t i) { return p[i]; }
__device__ __forceinline__ float load(const __half* p, int64_t i) { return __half2float(p[i]); }
__device__ __forceinline__ float load(const __nv_bfloat16* p, int64_t i) { return __bfloat162float(p[i]); }
__device__ __forceinline__ void store(float* p, int64_t i, float v) { p[i] = v; }
__device__ __forceinline__ void store(__half* p, int64_t i, float v) { p[i] = __float2half(v); }
__device__ __forceinline__ void store(__nv_bfloat16* p, int64_t i, float v) { p[i] = __float2bfloat16(v); }

struct Stats {
  float n, mean, m2;
};

__device__ __forceinline__ Stats merge(Stats a, Stats b) {
  const float n = a.n + b.n;
  if (n == 0.f) return a;
  const float delta = b.mean - a.mean, fb = b.n / n;
  return {n, a.mean + delta * fb, a.m2 + b.m2 + delta * delta * a.n * fb};
}

int64_t slices_for(int64_t group_elements) {
  int64_t p = (group_elements + kThreads * 16 - 1) / (kThreads * 16);
  return p < 1 ? 1 : (p > kMaxSlices ? kMaxSlices : p);
}

template <class T>
__global__ void __launch_bounds__(kThreads) group_stats_kernel(const T* __restrict__ x, int64_t channels, int64_t spatial,
                                                               int64_t groups, int64_t slices, float* __restrict__ partial) {
  const int64_t bg = blockIdx.x, slice = blockIdx.y;  // bg = b * groups + g
  const int64_t b = bg / groups, g = bg % groups, cg = channels / groups;
  const int64_t count = cg * spatial, per = (count + slices - 1) / slices;
  const int64_t lo = slice * per, hi = lo + per < count ? lo + per : count;
  const T* base = x + (b * channels + g * cg) * spatial;
  Stats s{0.f, 0.f, 0.f};
  for (int64_t i = lo + threadIdx.x; i < hi; i += kThreads) {
    const float v = load(base, i);
    s.n += 1.f;
    const float d = v - s.mean;
    s.mean += d / s.n;
    s.m2 += d * (v - s.mean);
  }
  __shared__ Stats shared[kThreads];
  shared[threadIdx.x] = s;
  __syncthreads();
  for (int stride = kThreads / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) shared[threadIdx.x] = merge(shared[threadIdx.x], shared[threadIdx.x + stride]);
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    float* out = partial + (bg * slices + slice) * 3;
    out[0] = shared[0].n;
    out[1] = shared[0].mean;
    out[2] = shared[0].m2;
  }
}

template <class T>
__global__ void __launch_bounds__(kThreads) norm_apply_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t channels,
                                                              int64_t spatial, int64_t groups, int64_t slices,
                                                              const float* __restrict__ partial, const float* __restrict__ weight,
                                                              const float* __restrict__ bias, const float* __restrict__ scale,
                                                              const float* __restrict__ shift, float eps, bool silu) {
  const int64_t row = blockIdx.x;  // b * channels + c
  const int64_t b = row / channels, c = row % channels, g = c / (channels / groups);
  __shared__ float coef[2];
  if (threadIdx.x == 0) {
    Stats s{0.f, 0.f, 0.f};
    const float* p = partial + (b * groups + g) * slices * 3;
    for (int64_t i = 0; i < slices; ++i) s = merge(s, Stats{p[3 * i], p[3 * i + 1], p[3 * i + 2]});
    const float rstd = rsqrtf(fmaxf(s.m2 / fmaxf(s.n, 1.f), 0.f) + eps);
    const float w = weight ? weight[c] : 1.f, bb = bias ? bias[c] : 0.f;
    const float film = scale ? 1.f + scale[row] : 1.f, sh = shift ? shift[row] : 0.f;
    coef[0] = rstd * w * film;
    coef[1] = (bb - s.mean * rstd * w) * film + sh;
  }
  __syncthreads();
  const float a = coef[0], bc = coef[1];
  const T* xr = x + row * spatial;
  T* yr = y + row * spatial;
  for (int64_t i = static_cast<int64_t>(blockIdx.y) * kThreads + threadIdx.x; i < spatial; i += static_cast<int64_t>(gridDim.y) * kThreads) {
    float v = fmaf(load(xr, i), a, bc);
    if (silu) v = v / (1.f + __expf(-v));
    store(yr, i, v);
  }
}

template <class T>
void run(const NormActArgs& a, float* workspace, cudaStream_t stream) {
  const int64_t slices = slices_for(a.channels / a.groups * a.spatial);
  group_stats_kernel<T><<<dim3(static_cast<unsigned>(a.batch * a.groups), static_cast<unsigned>(slices)), kThreads, 0, stream>>>(
      static_cast<const T*>(a.x), a.channels, a.spatial, a.groups, slices, workspace);
  check_launch("norm_act statistics");
  long long chunks = (a.spatial + kThreads * 8 - 1) / (kThreads * 8);
  if (chunks > 65535) chunks = 65535;
  norm_apply_kernel<T><<<dim3(static_cast<unsigned>(a.batch * a.channels), static_cast<unsigned>(chunks < 1 ? 1 : chunks)), kThreads, 0,
                         stream>>>(static_cast<const T*>(a.x), static_cast<T*>(a.y), a.channels, a.spatial, a.groups, slices,
                                   workspace, a.weight, a.bias, a.scale, a.shift, a.eps, a.silu);
  check_launch("norm_act");
}

}  // namespace

bool norm_act_available() { return kernel_loads(norm_apply_kernel<float>) && kernel_loads(group_stats_kernel<float>); }

int64_t norm_act_workspace_bytes(const NormActArgs& a) {
  return a.batch * a.groups * slices_for(a.channels / a.groups * a.spatial) * 3 * static_cast<int64_t>(sizeof(float));
}

void launch_norm_act(const NormActArgs& a, float* workspace, cudaStream_t stream) {
  if (a.batch * a.channels * a.spatial == 0) return;
  if (a.groups < 1 || a.channels % a.groups != 0) throw std::runtime_error("norm_act kernel: groups must divide channels");
  switch (a.type) {
    case ElementType::Float32: run<float>(a, workspace, stream); break;
    case ElementType::Float16: run<__half>(a, workspace, stream); break;
    case ElementType::BFloat16: run<__nv_bfloat16>(a, workspace, stream); break;
  }
}

}  // namespace meddiff::kernels
