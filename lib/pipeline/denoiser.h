#pragma once
// The network of a latent diffusion model as the samplers call it, whichever family it is: meddiff's U-Net
// (checkpoint kind "ldm": time steps, a class with its own null class, an optional label condition) or an
// imported MONAI / MAISI U-Net (kind "monai-unet": MONAI's time embedding, a class embedding whose
// unconditional branch is class 0 in MAISI, the voxel spacing as an input). Per-job inputs that are the
// same for every volume (MAISI's spacing) are set once on the denoiser.
#include "models/monai_controlnet.h"
#include "models/monai_unet.h"
#include "models/unet3d.h"

#include <memory>

namespace meddiff {

class Denoiser {
 public:
  virtual ~Denoiser() = default;
  // x [B, C, d, h, w]; t [B] (int64 timesteps, or float times as the family takes them); cls int64 [B] or
  // undefined; cond [B, cond_channels(), d, h, w] or undefined -> the network's output, shaped as x.
  virtual torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& cls,
                                const torch::Tensor& cond = {}) = 0;
  virtual int64_t null_class() const = 0;     // the class of classifier-free guidance's unconditional branch
  virtual int64_t cond_channels() const = 0;  // label-condition channels (0: none)
};

// meddiff's own U-Net.
class UNet3dDenoiser : public Denoiser {
 public:
  explicit UNet3dDenoiser(UNet3d m) : net(std::move(m)) {}
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& cls, const torch::Tensor& cond) override {
    return net->forward(x, t, cls, cond);
  }
  int64_t null_class() const override { return net->null_class(); }
  int64_t cond_channels() const override { return net->cond_channels; }
  UNet3d net;
};

// An imported MONAI DiffusionModelUNet / MAISI DiffusionModelUNetMaisi. `spacing` (MAISI: mm x 100, as the
// network was trained) is given to every volume; `null` is the class of the unconditional branch.
class MonaiDenoiser : public Denoiser {
 public:
  MonaiDenoiser(MonaiUNet m, int64_t null) : net(std::move(m)), null(null) {}
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& cls, const torch::Tensor& cond) override;
  int64_t null_class() const override { return null; }
  int64_t cond_channels() const override { return 0; }
  void set_spacing(const torch::Tensor& spacing_row) { spacing = spacing_row; }  // [1, 3]
  MonaiUNet net;
  int64_t null;
  torch::Tensor spacing;

 protected:
  MonaiUNetInputs inputs(const torch::Tensor& x, const torch::Tensor& cls) const;  // the class and the spacing
};

// The same U-Net with MAISI's ControlNet: `cond` is a label map's embedding (MonaiControlNetImpl::embed_label,
// computed once per volume; undefined: zeros), from which the ControlNet computes the residuals the U-Net adds at
// every step, as NV-Generate-CTMR's image-from-mask inference does (the modality class to both networks).
class MonaiControlNetDenoiser : public MonaiDenoiser {
 public:
  MonaiControlNetDenoiser(MonaiUNet m, int64_t null, MonaiControlNet c) : MonaiDenoiser(std::move(m), null), control(std::move(c)) {}
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& cls, const torch::Tensor& cond) override;
  int64_t cond_channels() const override { return control->params.unet.channels.at(0); }
  MonaiControlNet control;
};

}  // namespace meddiff
