#pragma once
// One optimisation step of stage 1 (the models, optimisers and the losses of a step), shared by the
// trainer and by `--dry-run`, which runs real steps to measure memory. The autoencoder is the config's
// (train/stage1_model.h: the VQ-GAN or the KL autoencoder); the losses are the same for both: weighted L1,
// the model's regulariser (commitment or KL), perceptual and the two PatchGANs with feature matching.
//   - gradient accumulation: `grad_accum` micro-batches per step, each loss scaled by 1/grad_accum;
//   - activation checkpointing of the encoder/decoder residual blocks (vqgan_train.checkpointing);
//   - random choices of micro-batch m of step s from (seed, s * grad_accum + m), drawn on the CPU: the
//     quantiser's from that alone, a sample's slice from it and the sample's index in the global batch;
//   - data-parallel (set_collectives): rank 0's weights at the start, quantiser statistics and
//     discriminator BatchNorm over the global batch, gradients and the logged scalars averaged over the
//     ranks after the last micro-batch, so every rank takes the same step (and skips the same steps);
//   - the scalars of a step are read from the device once, together (the NaN guard needs them).
#include "core/collectives.h"
#include "data/batches.h"
#include "models/patch_discriminator.h"
#include "train/stage1_model.h"
#include "train/perceptual.h"
#include "train/train_config.h"

#include <functional>
#include <memory>

namespace meddiff {

// The L1 reconstruction term: the mean |rec - x| over the voxels, and with `balance` > 0 and label maps
// `seg` [B, D, H, W] that share of it replaced by the mean over the labels present of each label's mean
// |rec - x| (a 30-voxel structure then weighs as much as the background).
torch::Tensor reconstruction_l1(const torch::Tensor& rec, const torch::Tensor& x, const torch::Tensor& seg, double balance,
                                int64_t num_labels = 0);

// The learning rate of step `step` (0-based): t.lr, and over the last round(lr_decay x steps) steps
// lr x (1 + cos(pi x (step - start) / (steps - start))) / 2.
double stage1_lr(const VQGANTrainParams& t, int64_t step);

struct VQGANStepStats {
  double loss = 0, l1 = 0, regulariser = 0, perplexity = 0, usage = 0, restarted = 0;
  double adv = 0, feature_matching = 0, perceptual = 0, d_loss = 0;
  bool gan = false, finite = true;
};

class VQGANStepper {
 public:
  VQGANStepper(const RunConfig& cfg, const torch::Device& device);
  // Step `step` (0-based) on the micro-batches next_batch(0..grad_accum-1); the optimisers step unless
  // a loss is not finite.
  VQGANStepStats step(int64_t step, const std::function<Batch(int64_t micro)>& next_batch);
  // Joins a data-parallel job: takes rank 0's parameters and buffers (call after a resume's load).
  void set_collectives(Collectives* comm);
  // Parameters and buffers of the autoencoder and the discriminators, and the codebook alone (VQ-GAN).
  std::vector<torch::Tensor> state() const;
  std::vector<torch::Tensor> codebook() const;

  const RunConfig& cfg;
  torch::Device device;
  Collectives* comm = nullptr;
  bool bf16 = false;
  int64_t num_labels = 0;  // 1 + the largest label of the training label maps (label_balance); 0: read from each batch
  std::unique_ptr<Stage1Model> model;
  PatchDiscriminator disc2d{nullptr}, disc3d{nullptr};
  std::vector<torch::Tensor> gen_params, disc_params;
  std::unique_ptr<torch::optim::Optimizer> opt_g, opt_d;
  std::unique_ptr<PerceptualLoss> perceptual;
};

}  // namespace meddiff
