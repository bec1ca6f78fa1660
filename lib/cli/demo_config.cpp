#include "cli/demo_config.h"

#include "data/phantom.h"

namespace meddiff::cli {

RunConfig demo_config(Modality modality, bool quick) {
  RunConfig c;
  bool ct = modality == Modality::CT;
  c.description = fmt::format(
      "meddiff demo{}: two-class {} phantoms ({}), {}^3, a small VQ-GAN (downsampling 2, 8 latent channels) and a "
      "small class- and label-conditional latent diffusion model (image + label pairs), sized for 2 CPU cores. Set data.manifest to the phantoms' manifest.json.",
      quick ? " --quick" : "", ct ? "CT chest" : "MR head", ct ? "class 1: lung nodules" : "class 1: bright lesions",
      quick ? 16 : 32);
  c.data.modality = ct ? "ct" : "mr";
  c.data.shape = quick ? std::array<int64_t, 3>{16, 16, 16} : std::array<int64_t, 3>{32, 32, 32};
  c.data.ct_window = {-1024, 1024};  // phantom CT spans air to bone
  // Per-volume min-max for MR (as the reference): small lesions are under 0.5 % of the voxels, and a
  // 99.5 % percentile window would clip them to the brain's intensity.
  c.data.mr_percentiles = {0.0, 100.0};
  c.data.val_fraction = 0.15;
  c.data.val_max = 4;
  c.vqgan.n_hiddens = quick ? 8 : 16;
  c.vqgan.downsample = {2, 2, 2};
  c.vqgan.embedding_dim = 8;
  c.vqgan.n_codes = quick ? 128 : 512;
  c.vqgan.disc_channels = 16;
  c.vqgan.disc_layers = 2;
  // 4000 steps: the validation PSNR was still rising at 2000 (27.9 dB) and reached 29.9 dB at 4000, the
  // held-out ventricles' median reconstruction error falling from +18 % to +10 % (2000 steps with 32 hidden
  // channels: 28.7 dB, +17 %; 2048 codes: 27.7 dB, +10 %; another seed at 2000 steps: 26.7 dB, -16 %: single
  // 2000-step runs scatter that much); lr 1e-3 was worse (24.6 dB at 900).
  c.vqgan_train.steps = quick ? 60 : 4000;
  c.vqgan_train.batch_size = 2;
  c.vqgan_train.lr = 5e-4;
  // The last quarter of the steps with a falling rate: at a constant 5e-4 the label-conditioned decoder's
  // per-label levels still moved at the end (CT soft tissue reconstructed at 56 HU at step 3500, 19 HU at
  // step 4000; the phantoms' 34-49).
  c.vqgan_train.lr_decay = 0.25;
  // Half of the L1 term balanced over the labels: with plain L1 the ventricles (0.1 % of the voxels) came
  // back at 523 where the held-out phantoms have 139 (+277 %); with 0.5 at 152 (+9 %), the validation
  // PSNR rising from 26.3 to 28.1 dB and every other label within 5 %.
  c.vqgan_train.label_balance = 0.5;
  // The full demo trains the autoencoder without the adversarial terms: switched on at step 800 of 1000
  // CPU steps, they lowered the validation PSNR (24.8 -> 23.1 dB) and added texture that the diffusion
  // model then learned. The
  // quick demo switches them on to exercise the whole stage-1 path; real configs start them late.
  c.vqgan_train.gan_start = quick ? 40 : 4000;
  c.vqgan_train.val_every = quick ? 30 : 400;
  c.vqgan_train.ckpt_every = quick ? 60 : 500;
  c.ldm.timesteps = 300;
  c.ldm.latent_norm = "channel_meanstd";
  // Each image voxel's label under a latent voxel, not only the labels' shares: measured on the MR demo, the
  // ventricles' median in the pairs went from +36 / +21 % (class 0 / 1) to +19 / +4 % of the held-out phantoms',
  // and a segmenter trained on the pairs alone from Dice 0.71 to 0.89 on them (lesion 0.66 -> 0.72).
  c.ldm.label_condition = "subvoxel";
  // v-prediction: the cosine schedule ends at alpha_bar ~ 0, where an eps-model's x0 estimate
  // (x_t - sigma eps) / alpha is undefined and DDIM's first step goes astray (Lin et al. 2024).
  c.ldm.prediction = "v";
  c.ldm.loss = "l2";
  c.ldm.unet.base_channels = 16;
  c.ldm.unet.channel_mults = {1, 2};
  c.ldm.unet.downsample = {{2, 2, 2}};
  c.ldm.unet.attention_levels = {1};
  c.ldm.unet.attention_heads = 4;
  c.ldm_train.steps = quick ? 40 : 2000;
  c.ldm_train.batch_size = 4;
  c.ldm_train.lr = 1e-3;
  c.ldm_train.augment_copies = 4;  // the mask-bank maps are sampled augmented: stage 2 learns such maps
  c.ldm_train.warmup = quick ? 5 : 50;
  c.ldm_train.ema_decay = 0.99;
  c.ldm_train.ema_start = quick ? 10 : 100;
  c.ldm_train.val_every = quick ? 40 : 500;
  c.ldm_train.ckpt_every = quick ? 40 : 500;
  c.sample.sampler = "ddim";
  c.sample.steps = quick ? 10 : 50;
  // Guidance 2 on class and labels together: with the class alone it washed the randomly placed
  // lesions out, but the label map says where they are; on the CT demo's augmented mask-bank maps it
  // raised the pairs with bone above 300 HU from 2 to 5 of 8, and MR lesions stayed brighter than
  // brain in every pair (8 of 8, as at w = 1).
  c.sample.guidance = 2.0;
  c.sample.batch = 4;
  // Paired image + label sampling: the diffusion model is conditioned on the phantoms' label maps.
  c.data.labels = "condition";
  c.data.label_names = phantom_label_names(ct ? Modality::CT : Modality::MR);
  // The decoder sees each pair's label map: measured on the stop-41 demo outputs, the plain decoder's
  // reconstructions of the held-out phantoms already lost the labels' edges (thresholded halfway between a
  // label's median and its surroundings', the image agreed with the ventricle label at Dice 0.67, lesion
  // 0.88, CT nodule 0.56; the phantoms themselves: 1.00, 1.00, 0.69), and the pairs inherited that.
  c.vqgan.decoder_labels = static_cast<int64_t>(c.data.label_names.size());
  // One output head per label: with a fixed offset per label, about 9 % of the brain voxels around a
  // synthetic MR lesion were as bright as it (none in the phantoms), and the lesion's Dice fell when the pairs
  // were added.
  c.vqgan.decoder_label_heads = true;
  return c;
}

}  // namespace meddiff::cli
