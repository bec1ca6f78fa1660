#pragma once
// What the network predicts and how its output maps to the clean sample x0 and the noise eps.
//   eps: epsilon-prediction (Ho et al. 2020); x0: the clean sample; v: v = alpha_t eps - sigma_t x0
//   (Salimans & Ho 2022, sec. 4), with alpha_t = sqrt(alpha_bar_t), sigma_t = sqrt(1 - alpha_bar_t).
#include <torch/torch.h>

#include <string>

namespace meddiff {

enum class Prediction { Eps, X0, V };
Prediction parse_prediction(const std::string& s);  // "eps", "x0", "v"

// Forward process: x_t = alpha_t x0 + sigma_t eps (Ho et al. eq. 4). ab: alpha_bar per sample, [B].
torch::Tensor q_sample(const torch::Tensor& x0, const torch::Tensor& eps, const torch::Tensor& ab);
// The training target for (x0, eps) at alpha_bar `ab`.
torch::Tensor prediction_target(Prediction p, const torch::Tensor& x0, const torch::Tensor& eps, const torch::Tensor& ab);
// x0 and eps implied by a network output at x_t.
struct X0Eps {
  torch::Tensor x0, eps;
};
X0Eps split_prediction(Prediction p, const torch::Tensor& out, const torch::Tensor& x_t, double ab);
// From x0 alone (after clipping/thresholding): eps = (x_t - alpha x0) / sigma.
torch::Tensor eps_from_x0(const torch::Tensor& x0, const torch::Tensor& x_t, double ab);

}  // namespace meddiff
