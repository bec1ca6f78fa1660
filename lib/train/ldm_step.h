#pragma once
// One optimisation step of stage 2 (the U-Net, its EMA copy, AdamW with warm-up, the diffusion loss),
// shared by the trainer and by `--dry-run`, which runs real steps to measure memory. Gradient
// accumulation over `grad_accum` micro-batches, activation checkpointing of the U-Net blocks
// (ldm_train.checkpointing); the random draws of a sample (timestep, noise, class and label dropout)
// come from (seed, s * grad_accum + m, the sample's index in the global batch) on the CPU and move to
// the device, so data-parallel ranks draw what one process with the global batch would. With
// set_collectives, gradients and the loss are averaged over the ranks after the last micro-batch and
// the EMA copy follows identical weights on every rank.
#include "core/collectives.h"
#include "data/batches.h"
#include "diffusion/objective.h"
#include "diffusion/schedule.h"
#include "models/unet3d.h"
#include "train/train_config.h"

#include <functional>

namespace meddiff {

struct LDMStepStats {
  double loss = 0, lr = 0;
  bool finite = true;
};

class LDMStepper {
 public:
  // cond_channels > 0: the U-Net takes the batches' label condition (Batch::cond), dropped to zeros with
  // probability ldm.unet.label_dropout.
  LDMStepper(const RunConfig& cfg, int64_t channels, int64_t num_classes, const torch::Device& device,
             int64_t cond_channels = 0);
  LDMStepStats step(int64_t step, const std::function<Batch(int64_t micro)>& next_batch);
  // Joins a data-parallel job: takes rank 0's weights and EMA weights (call after a resume's load).
  void set_collectives(Collectives* comm);
  std::vector<torch::Tensor> state() const;  // parameters and buffers of the model and the EMA copy

  const RunConfig& cfg;
  torch::Device device;
  Collectives* comm = nullptr;
  bool bf16 = false;
  int64_t num_classes, cond_channels;
  UNet3d model{nullptr}, ema{nullptr};
  std::unique_ptr<torch::optim::AdamW> opt;
  NoiseSchedule schedule;
  Prediction prediction;
  torch::Tensor alphas_cumprod;  // float on the device
};

}  // namespace meddiff
