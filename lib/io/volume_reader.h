#pragma once
// Reading volumes: NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr), MetaImage (.mha, .mhd) and a DICOM
// series from a folder. Every failure is one line naming the file and what is wrong.
#include "data/volume.h"

#include <filesystem>
#include <string>

namespace meddiff::io {

struct ReadOptions {
  Modality modality = Modality::Unknown;  // overrides the file's (DICOM) or the guess (others)
  std::string series_uid;                 // DICOM: which series of a folder that holds several
};

enum class Format { Nifti, Nrrd, Meta, DicomSeries };
std::string to_string(Format f);
// The format a path names: an image extension, else a DICOM series folder (existing folder, a path
// ending in '/', or a name without an image extension).
Format format_of(const std::filesystem::path& path);

Volume read_volume(const std::filesystem::path& path, const ReadOptions& options = {});
// A label map on the same grid as `like` (checked), as int64 [D, H, W].
torch::Tensor read_label_map(const std::filesystem::path& path, const Volume& like);

// CT when the darkest voxels are air in HU (min <= -500), else MR.
Modality guess_modality(const torch::Tensor& image);

}  // namespace meddiff::io
