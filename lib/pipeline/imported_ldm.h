#pragma once
// Latent diffusion models brought in by `meddiff import` (checkpoint kind "monai-unet", pipeline/model_import.h)
// as models `meddiff sample` runs like its own:
//  - MAISI-v2 (family "maisi"): the rectified-flow U-Net with the voxel spacing (mm x 100) and a modality code as
//    inputs, MAISI's fp16 timestep list and Euler steps, guidance with the unconditional pass at class 0 (MAISI's
//    guidance 0 means none, meddiff's 1), the latent divided by the scale factor before decoding;
//  - a MONAI bundle (family "monai", e.g. brats_mri_generative_diffusion): DDIM or DDPM on the bundle's beta
//    schedule with the timesteps of the scheduler it names (MONAI's: grid "monai"; MONAI Generative's: grid
//    "leading"), eps / v / sample prediction.
// Their networks work on MONAI's (x, y, z) arrays of a RAS volume: noise [N, C, x/f, y/f, z/f] (f the autoencoder's
// downsampling), outputs written in meddiff's [D, H, W] with the world geometry MAISI's NIfTI has (affine
// diag(spacing) in RAS: LPS direction diag(-1, -1, 1), origin 0). The output grid is not fixed by training: it is
// chosen per job (configure_output).
#include "pipeline/loaded_models.h"

#include <optional>

namespace meddiff {

LoadedLDM load_imported_ldm(const Checkpoint& checkpoint, const std::filesystem::path& path, const torch::Device& device);

// Paired sampling with MAISI's ControlNet (sample --labels on an imported model): the ControlNet meddiff import
// wrote beside the U-Net (controlnet.pt) joins the denoiser; the model then takes label maps of the ControlNet's
// 2^bits values (MAISI: 0..255, its 132 classes and the body 200) on the output grid, as paired sampling's maps.
// Throws naming the file when there is none.
void attach_controlnet(LoadedLDM& ldm, const std::filesystem::path& ldm_path, const torch::Device& device);

// The spacing input of a MAISI U-Net as MAISI prepares it: `spacing_mm` (x, y, z, double) times the recipe's
// spacing_scale (100), rounded to fp16, as float.
torch::Tensor maisi_spacing_value(const nlohmann::json& recipe, const torch::Tensor& spacing_mm);

// What `sample` asks of a model's output: the image grid (voxels and mm along x, y, z) and, for MAISI, the
// modality code. Models trained by meddiff have a fixed grid and refuse these.
struct OutputRequest {
  std::optional<std::array<int64_t, 3>> shape;   // voxels x, y, z
  std::optional<std::array<double, 3>> spacing;  // mm x, y, z
  std::optional<int64_t> modality_class;         // MAISI's code: 1 CT, 9 T1, 10 T2, 11 FLAIR, ...
  bool force = false;                            // outside the ranges MAISI documents as reliable: a warning, not a refusal
};

// Sets the latent shape, the geometry, the modality and its output mapping of an imported model; throws naming
// the option when a request is impossible (shape not a multiple of the networks' downsampling) or, unless
// `force`, outside MAISI's documented ranges. For meddiff's own models any request is refused.
// `autoencoder_downsample`: the autoencoder's downsampling per axis (the latent grid is the image grid / it).
void configure_output(LoadedLDM& ldm, const OutputRequest& request, int64_t autoencoder_downsample);

// MAISI's documented ranges (NV-Generate-CTMR's input checks): the reason a request is outside them, or "".
//  CT (codes 1-7): x = y in {256, 384, 512}, z in {128, 256, ..., 768}; spacing x = y in [0.5, 3] mm, z in
//  [0.5, 5] mm; field of view x * spacing x >= 256 mm.  MR: sizes (x, y, z) with z 128 and x = y in {128, 256,
//  384, 512}, or z 256 and (x, y) in {(128, 256), (256, 128), (256, 256)}; every spacing in [0.4, 5] mm.
std::string maisi_range_problem(int64_t modality_class, const std::array<int64_t, 3>& shape, const std::array<double, 3>& spacing);

}  // namespace meddiff
