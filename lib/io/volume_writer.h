#pragma once
// Writing volumes. The format follows the path (see format_of): NIfTI, NRRD, MetaImage, or a DICOM
// series folder. Outputs go to a temporary name beside the target and are renamed when complete.
// Pixel type: int16 when every voxel is an integer in int16 range (CT in HU, phantoms), else float32.
#include "data/volume.h"
#include "io/dicom_series.h"

#include <filesystem>

namespace meddiff::io {

struct WriteOptions {
  DicomWriteOptions dicom;   // used for DICOM series outputs
  bool overwrite = true;     // replace an existing file (a non-empty DICOM folder needs this too)
};

void write_volume(const Volume& v, const std::filesystem::path& path, const WriteOptions& options = {});
// Writes a label map (uint8) with v's geometry to a file format (not DICOM).
void write_label_map(const torch::Tensor& label, const Geometry& g, const std::filesystem::path& path);

}  // namespace meddiff::io
