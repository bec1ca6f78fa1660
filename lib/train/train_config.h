#pragma once
// The config file of a training run: one JSON with a section per concern. Unknown keys, wrong types
// and impossible settings fail before any work starts, naming the key.
#include "data/preprocess.h"
#include "models/autoencoder_params.h"
#include "models/vqgan_params.h"
#include "pipeline/model_config.h"

namespace meddiff {

struct VQGANTrainParams {
  int64_t steps = 2000;                  // optimisation steps
  int64_t batch_size = 2;                // volumes per micro-batch (what must fit in memory)
  int64_t grad_accum = 1;                // micro-batches per optimisation step (effective batch: batch_size x grad_accum)
  bool checkpointing = false;            // recompute residual-block activations in backward (less memory, ~30 % more time)
  std::string optimizer = "adam";        // adam or adamw
  double lr = 3e-4;
  double lr_decay = 0.0;                 // share of the steps at the end over which lr falls to 0 (half cosine); 0: constant
  std::array<double, 2> betas{0.5, 0.9};
  double weight_decay = 0.0;
  double grad_clip = 1.0;                // max global norm; 0 = off
  double l1_weight = 4.0;                // reconstruction
  double label_balance = 0.0;            // share of the L1 term balanced over the label maps' labels (0: plain L1)
  double kl_weight = 1e-6;               // autoencoder.kind = kl: weight of the posterior's KL divergence
  std::array<int64_t, 3> patch{0, 0, 0};  // train on random patches [D, H, W] of the volumes (typed x, y, z); 0: whole volumes
  double patch_foreground = 0.5;         // share of patches centred on a labelled / non-background voxel
  int64_t gan_start = 10000;             // step at which the GAN terms switch on
  double image_gan_weight = 1.0;         // 2-D slice discriminator
  double video_gan_weight = 1.0;         // 3-D volume discriminator
  double feature_matching_weight = 4.0;
  int64_t slice_axis = 0;                // axis of the random 2-D slices: 0 D (axial), 1 H, 2 W
  double perceptual_weight = 0.0;        // needs perceptual_model
  std::string perceptual_model;          // TorchScript file: [B,3,H,W] in [-1,1] -> features
  std::string precision = "auto";        // auto (bf16 autocast on CUDA, fp32 on CPU), fp32, bf16
  std::string device = "auto";           // auto, cpu, cuda, cuda:N
  int64_t log_every = 10;
  int64_t val_every = 100;
  int64_t ckpt_every = 500;
  int64_t nan_abort = 10;                // abort after this many non-finite steps in a row
  int64_t seed = 0;

  template <typename V>
  void visit(V& v) {
    v("steps", steps, "optimisation steps");
    v("batch_size", batch_size, "volumes per micro-batch (per device)");
    v("grad_accum", grad_accum, "micro-batches accumulated per optimisation step (effective batch = batch_size x grad_accum)");
    v("checkpointing", checkpointing, "activation checkpointing of the residual blocks: less memory, one more forward");
    v("optimizer", optimizer, "adam or adamw");
    v("lr", lr, "learning rate (generator and discriminators)");
    v("lr_decay", lr_decay, "share of the steps at the end over which the learning rate falls along a half cosine to 0 "
                            "(0: constant throughout, as the reference); the weights settle instead of jittering at the last step");
    v("betas", betas, "Adam betas");
    v("weight_decay", weight_decay, "weight decay (adamw)");
    v("grad_clip", grad_clip, "clip the global gradient norm to this; 0 = off");
    v("l1_weight", l1_weight, "weight of the L1 reconstruction loss");
    v("label_balance", label_balance, "cases with label maps: share of the L1 term that is the mean over labels of each label's mean L1, so that small structures weigh as much as large ones (0: plain L1 over the voxels, as the reference; 1: fully balanced)");
    v("kl_weight", kl_weight, "autoencoder.kind = kl: weight of the KL divergence of the latent posterior from N(0, 1) (summed over the latent, mean over the batch, as MONAI's tutorials; they use 1e-6, MAISI 1e-7)");
    v("patch", xyz(patch), "train on random patches of this size [x,y,z] (voxels) of the preprocessed volumes; [0,0,0]: whole volumes. The autoencoder is convolutional: it is applied to whole volumes afterwards (validation, latents, sampling)");
    v("patch_foreground", patch_foreground, "share of the patches centred on a labelled voxel (no label map: a voxel above the background)");
    v("gan_start", gan_start, "step at which the adversarial and feature-matching terms start");
    v("image_gan_weight", image_gan_weight, "weight of the 2-D slice discriminator terms");
    v("video_gan_weight", video_gan_weight, "weight of the 3-D volume discriminator terms");
    v("feature_matching_weight", feature_matching_weight, "weight of the discriminator feature-matching L1");
    v("slice_axis", slice_axis, "axis of the random slices for the 2-D terms: 0 (D), 1 (H), 2 (W)");
    v("perceptual_weight", perceptual_weight, "weight of the perceptual loss (needs perceptual_model)");
    v("perceptual_model", perceptual_model, "TorchScript feature extractor (e.g. LPIPS-VGG exported by you); never downloaded");
    v("precision", precision, "auto (bf16 autocast on CUDA, fp32 on CPU), fp32 or bf16");
    v("device", device, "auto, cpu, cuda or cuda:N");
    v("log_every", log_every, "steps between metrics.jsonl lines");
    v("val_every", val_every, "steps between validations (PSNR, SSIM, previews)");
    v("ckpt_every", ckpt_every, "steps between step-NNNNNNN.pt checkpoints (last.pt too)");
    v("nan_abort", nan_abort, "abort after this many non-finite losses in a row");
    v("seed", seed, "seed of initialisation and per-step randomness");
  }
  void validate(const std::string& where = "vqgan_train") const;
};

struct LDMTrainParams {
  int64_t steps = 2000;
  int64_t batch_size = 4;                 // latents per micro-batch
  int64_t grad_accum = 1;                 // micro-batches per optimisation step
  bool checkpointing = false;             // recompute U-Net block activations in backward
  double lr = 1e-4;
  int64_t warmup = 100;                   // linear learning-rate warm-up steps
  double weight_decay = 0.0;              // AdamW
  std::array<double, 2> betas{0.9, 0.999};
  double grad_clip = 1.0;
  double ema_decay = 0.995;
  int64_t ema_start = 200;                // EMA copies the weights until this step
  double label_balance = 0.0;             // share of the diffusion loss balanced over the label condition's labels
  int64_t augment_copies = 0;             // label-conditioned models: augmented copies of each case (image + map warped together)
  std::string precision = "auto";
  std::string device = "auto";
  int64_t log_every = 10;
  int64_t val_every = 500;                // sample previews
  int64_t ckpt_every = 1000;
  int64_t nan_abort = 10;
  int64_t seed = 0;

  template <typename V>
  void visit(V& v) {
    v("steps", steps, "optimisation steps");
    v("batch_size", batch_size, "latents per micro-batch (per device)");
    v("grad_accum", grad_accum, "micro-batches accumulated per optimisation step (effective batch = batch_size x grad_accum)");
    v("checkpointing", checkpointing, "activation checkpointing of the U-Net blocks: less memory, one more forward");
    v("lr", lr, "AdamW learning rate");
    v("warmup", warmup, "linear warm-up steps");
    v("weight_decay", weight_decay, "AdamW weight decay");
    v("betas", betas, "AdamW betas");
    v("grad_clip", grad_clip, "clip the global gradient norm; 0 = off");
    v("ema_decay", ema_decay, "EMA decay of the sampling weights");
    v("ema_start", ema_start, "step from which the EMA averages (before: copies)");
    v("label_balance", label_balance, "models conditioned on label maps: share of the diffusion loss that is the mean over labels of each label's mean error, every latent voxel weighted by the fraction of it the label covers, so that small structures weigh as much as large ones (0: the plain mean over the latent voxels)");
    v("augment_copies", augment_copies, "models conditioned on label maps: also train on this many augmented copies of each case, image and label map warped together by the augmentation `sample` applies to mask-bank maps (flip, rotation, scaling, elastic), encoded once with the latents, so that the model follows augmented maps (0: none; the demo uses 4)");
    v("precision", precision, "auto (bf16 autocast on CUDA), fp32 or bf16");
    v("device", device, "auto, cpu, cuda or cuda:N");
    v("log_every", log_every, "steps between metrics.jsonl lines");
    v("val_every", val_every, "steps between sample previews");
    v("ckpt_every", ckpt_every, "steps between step-NNNNNNN.pt checkpoints");
    v("nan_abort", nan_abort, "abort after this many non-finite losses in a row");
    v("seed", seed, "seed of initialisation and per-step randomness");
  }
  void validate(const std::string& where = "ldm_train") const;
};

// A meddiff config file: one section per stage, all optional (defaults fill the rest).
//   {"description", "data", "autoencoder", "vqgan", "vqgan_train", "ldm", "ldm_train", "sample"}
struct RunConfig {
  std::string description;
  std::string axis_order = kAxisOrder;  // of every shape, spacing and per-axis factor (core/config.h)
  DataParams data;
  AutoencoderParams autoencoder;
  VQGANParams vqgan;
  VQGANTrainParams vqgan_train;
  LDMParams ldm;
  LDMTrainParams ldm_train;
  SampleDefaults sample;

  template <typename V>
  void visit(V& v) {
    v("description", description, "what this config is for");
    v("axis_order", axis_order, "the order of every shape, spacing and per-axis factor in this file: \"xyz\" (x, y, z, as NIfTI/ITK headers)");
    v("data", data);
    v("autoencoder", autoencoder);
    v("vqgan", vqgan);
    v("vqgan_train", vqgan_train);
    v("ldm", ldm);
    v("ldm_train", ldm_train);
    v("sample", sample);
  }
  // Checks every section and the cross-section rules (downsampling divides the training shape, ...).
  void validate() const;
  // Stage 1's latent shape [E, d, h, w] for an input [D, H, W] (either autoencoder kind).
  std::array<int64_t, 4> latent_shape(const std::array<int64_t, 3>& shape, const std::string& where) const {
    return stage1_latent_shape(autoencoder, vqgan, shape, where);
  }
};

// The resolved config: defaults <- file <- --set overrides, validated.
RunConfig resolve_config(const std::string& file, const std::vector<std::string>& overrides);
// A config (as JSON) with --set overrides applied, read strictly and validated.
RunConfig with_overrides(json config, const std::vector<std::string>& overrides);

}  // namespace meddiff
