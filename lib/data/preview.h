#pragma once
// Preview images: axial, coronal and sagittal mid-slices side by side, each drawn with the aspect
// ratio of the voxel spacing (square display pixels of the finest spacing). Radiological display:
// axial with anterior up, coronal and sagittal with superior up (LPS index order assumed).
#include "data/intensity.h"
#include "data/volume.h"

#include <vector>

namespace meddiff {

// uint8 [H, W] grey image of the three mid-slices of `image` ([D, H, W]) mapped from window to 0..255.
torch::Tensor orthogonal_panel(const torch::Tensor& image, const Geometry& g, const IntensityWindow& w);
// The same panel with the outlines of the label map (int [D, H, W], same grid) drawn in white.
torch::Tensor contour_panel(const torch::Tensor& image, const torch::Tensor& label, const Geometry& g, const IntensityWindow& w);
// Panels side by side (top-aligned, padded with black), with `gap` black columns between them.
torch::Tensor hconcat(const std::vector<torch::Tensor>& panels, int64_t gap = 4);
// Panels one under another (left-aligned).
torch::Tensor vconcat(const std::vector<torch::Tensor>& panels, int64_t gap = 4);

}  // namespace meddiff
