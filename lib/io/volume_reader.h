#pragma once
// Reading volumes: NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr), MetaImage (.mha, .mhd) and a DICOM
// series from a folder. Every failure is one line naming the file and what is wrong.
#include "data/manifest.h"
#include "data/volume.h"

#include <filesystem>
#include <string>

namespace meddiff::io {

struct ReadOptions {
  Modality modality = Modality::Unknown;  // overrides the file's (DICOM) or the guess (others)
  std::string series_uid;                 // DICOM: which series of a folder that holds several
  int64_t component = -1;                 // a 4-D file: the index along its 4th axis to read (-1: the file is 3-D)
};

enum class Format { Nifti, Nrrd, Meta, DicomSeries };
std::string to_string(Format f);
// The format a path names: an image extension, else a DICOM series folder (existing folder, a path
// ending in '/', or a name without an image extension).
Format format_of(const std::filesystem::path& path);

Volume read_volume(const std::filesystem::path& path, const ReadOptions& options = {});
// One channel of a manifest case (a 3-D file, a component of a 4-D file, a series of a DICOM folder).
Volume read_channel(const ChannelFile& channel, const ReadOptions& options = {});
// A label map on the same grid as `like` (checked), as int64 [D, H, W].
torch::Tensor read_label_map(const std::filesystem::path& path, const Volume& like);

// CT when the darkest voxels are air in HU (min <= -500), else MR.
Modality guess_modality(const torch::Tensor& image);

}  // namespace meddiff::io
