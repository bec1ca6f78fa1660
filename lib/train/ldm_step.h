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
#include "data/label_maps.h"
#include "diffusion/objective.h"
#include "diffusion/schedule.h"
#include "models/unet3d.h"
#include "train/train_config.h"

#include <functional>

namespace meddiff {

// The random draws of one training sample, from (seed, draw = step * grad_accum + micro, its index in
// the global batch) on a CPU generator: the diffusion time (an integer timestep, or for rectified flow a
// uniform time in [0, 1) before the shift), the noise, and which conditions are dropped for
// classifier-free guidance. The two drops come from ONE uniform u: the class is dropped when
// u < class_dropout, the label map when u < label_dropout. So "no class and no label map" -- the
// unconditional branch that guided sampling contrasts with -- is trained with probability
// min(class_dropout, label_dropout), and each condition alone is dropped with the rest of its rate
// (|class_dropout - label_dropout| for the larger one, never for the smaller).
struct SampleDraws {
  torch::Tensor t;      // [1]: long timestep, or double time in [0, 1) (rectified flow)
  torch::Tensor noise;  // `shape`, float
  bool drop_class = false, drop_labels = false;
};
SampleDraws draw_sample(uint64_t seed, int64_t draw, int64_t index, at::IntArrayRef shape, bool rflow, int64_t timesteps,
                        double class_dropout, double label_dropout);

// The diffusion loss of a micro-batch: the mean squared (loss "l2") or absolute ("l1") error of the
// network's output. With label fractions [B, L, d, h, w] (the label condition before dropout) and
// balance b > 0: (1 - b) x that mean + b x the mean over the labels present of each label's mean error,
// a latent voxel counting for a label with the fraction of it the label covers. Samples without a label
// map (all-zero fractions) count in the plain term only; a batch without any takes the plain mean.
torch::Tensor diffusion_loss(const torch::Tensor& out, const torch::Tensor& target, const std::string& kind,
                             const torch::Tensor& fractions = {}, double balance = 0.0);

// Stage 2's learning rate at step `step` (0-based): ldm_train.lr, rising linearly over the first ldm_train.warmup steps.
double ldm_lr(const LDMTrainParams& t, int64_t step);

struct LDMStepStats {
  double loss = 0, lr = 0;
  bool finite = true;
};

class LDMStepper {
 public:
  // labels.channels() > 0: the U-Net takes the condition `labels` builds from the batches' label maps
  // (Batch::seg, on the image grid), dropped to zeros as draw_sample says.
  LDMStepper(const RunConfig& cfg, int64_t channels, int64_t num_classes, const torch::Device& device,
             const LabelCondition& labels = {});
  LDMStepStats step(int64_t step, const std::function<Batch(int64_t micro)>& next_batch);
  // Joins a data-parallel job: takes rank 0's weights and EMA weights (call after a resume's load).
  void set_collectives(Collectives* comm);
  std::vector<torch::Tensor> state() const;  // parameters and buffers of the model and the EMA copy

  const RunConfig& cfg;
  torch::Device device;
  Collectives* comm = nullptr;
  bool bf16 = false;
  int64_t num_classes;
  LabelCondition labels;  // the label condition (channels() 0: none)
  UNet3d model{nullptr}, ema{nullptr};
  std::unique_ptr<torch::optim::AdamW> opt;
  NoiseSchedule schedule;
  Prediction prediction;
  torch::Tensor alphas_cumprod;  // float on the device
};

}  // namespace meddiff
