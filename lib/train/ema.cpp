#include "train/ema.h"

namespace meddiff {

void ema_update(torch::nn::Module& target, const torch::nn::Module& source, double decay) {
  torch::NoGradGuard ng;
  auto tp = target.parameters(), sp = source.parameters();
  for (size_t i = 0; i < tp.size(); ++i) tp[i].mul_(decay).add_(sp[i].detach(), 1 - decay);
  auto tb = target.buffers(), sb = source.buffers();
  for (size_t i = 0; i < tb.size(); ++i) tb[i].copy_(sb[i]);
}

}  // namespace meddiff
