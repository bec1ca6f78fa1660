#pragma once
// Resampling and cropping that keep physical coordinates: after any of these, a world point maps
// to the same anatomy as before (the geometry is updated with the voxels).
#include "data/volume.h"

namespace meddiff {

// Resample to `spacing` (x, y, z mm) on a grid with the same origin and direction: linear
// interpolation for the image, nearest neighbour for the label map.
Volume resample_to_spacing(const Volume& v, const std::array<double, 3>& spacing);

enum class CropMode { Centre, Foreground };
// Crop and/or pad to `shape` [D, H, W]. Centre: around the volume centre. Foreground: around the
// bounding box of label > 0 (or image > foreground_threshold without a label). Padding uses `pad_value`
// for the image and 0 for the label.
Volume crop_or_pad(const Volume& v, const std::array<int64_t, 3>& shape, CropMode mode, double pad_value,
                   double foreground_threshold = 0.0);

// Shift the window [start, start + shape) of the [D, H, W] grid: the sub-volume with geometry (start may
// be negative or reach past the end: those voxels are padded).
Volume extract_window(const Volume& v, const std::array<int64_t, 3>& start_dhw,
                      const std::array<int64_t, 3>& shape_dhw, double pad_value);

}  // namespace meddiff
