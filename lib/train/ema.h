#pragma once
// Exponential moving average of a module's parameters (buffers copied), for sampling weights.
#include <torch/torch.h>

namespace meddiff {

// target = decay * target + (1 - decay) * source for parameters; buffers copied. decay 0 copies.
void ema_update(torch::nn::Module& target, const torch::nn::Module& source, double decay);

}  // namespace meddiff
