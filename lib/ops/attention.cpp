#include "ops/attention.h"

#include <cmath>

namespace meddiff::ops {

torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
  return at::scaled_dot_product_attention(q.contiguous(), k.contiguous(), v.contiguous());
}

torch::Tensor attention_reference(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
  auto w = torch::softmax(q.matmul(k.transpose(-2, -1)) / std::sqrt(static_cast<double>(q.size(-1))), -1);
  return w.matmul(v);
}

}  // namespace meddiff::ops
