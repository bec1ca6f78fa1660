#pragma once
// Feature vectors of volumes for `meddiff eval`.
//   - Autoencoder latent features (the VQ-GAN's pre-quantisation latent or the KL autoencoder's posterior
//     mean): per latent channel the mean and standard deviation over the volume, and the latent averaged
//     over a 2x2x2 grid of regions (coarse layout). E channels give 10 E values per volume. Volumes are
//     encoded one at a time within the memory budget (a VQ-GAN splits large ones).
//   - A TorchScript network the user brings (nothing is downloaded): "3d:FILE" takes [B, C, D, H, W]
//     volumes (e.g. MedicalNet's ResNet); "2d:FILE" takes [B, C, H, W] slices and is applied to every
//     slice of the three planes (the MAISI protocol). An output with spatial dimensions is averaged over
//     them; a tuple or list output gives its first tensor.
#include "data/preprocess.h"
#include "pipeline/latent_autoencoder.h"

#include <array>
#include <memory>
#include <string>

namespace meddiff {

struct LatentFeatures {
  torch::Tensor feature;  // [10 E] float64
  torch::Tensor latent;   // [E, d, h, w] float32 on the CPU (for latent-space distances)
};

// x: one prepared volume [1, D, H, W].
LatentFeatures latent_features(LatentAutoencoder& model, const torch::Tensor& x, const AutoencoderRun& run, const torch::Device& device);

// How volumes (in the training normalisation, [-1, 1]) are fed to a user's network.
struct FeatureInput {
  std::string norm = "zscore";        // zscore (per volume, as MedicalNet), unit ([0, 1]) or raw ([-1, 1])
  int64_t channels = 1;               // the input repeated over this many channels (3 for ImageNet-style 2-D nets)
  std::array<int64_t, 3> size{0, 0, 0};  // 3d: resample volumes to [D, H, W] (trilinear); 2d: slices to [H, W]
                                      // from the last two; 0 keeps the volume's size
  int64_t batch = 16;                 // 2d: slices per forward pass
};

class FeatureNetwork {
 public:
  // spec: "3d:FILE" or "2d:FILE" (TorchScript, e.g. saved by torch.jit.trace(...).save(FILE)).
  FeatureNetwork(const std::string& spec, const torch::Device& device);
  ~FeatureNetwork();
  bool slice_wise() const { return slice_wise_; }
  const std::string& file() const { return file_; }
  struct Result {
    torch::Tensor feature;                 // [F] (2d: the mean slice feature of each plane, concatenated: [3 F])
    std::array<torch::Tensor, 3> planes;   // 2d: [slices, F] per plane (axial, coronal, sagittal)
  };
  // x: one prepared volume [C, D, H, W] in [-1, 1]; several channels: each channel's features concatenated
  // ([C F], planes [slices, C F]).
  Result features(const torch::Tensor& x, const FeatureInput& in) const;

 private:
  torch::Tensor forward(const torch::Tensor& x) const;  // [B, F] float64 on the CPU
  struct Impl;
  std::unique_ptr<Impl> impl_;
  bool slice_wise_ = false;
  std::string file_;
  torch::Device device_;
};

}  // namespace meddiff
