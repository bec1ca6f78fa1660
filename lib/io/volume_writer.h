#pragma once
// Writing volumes. The format follows the path (see format_of): NIfTI, NRRD, MetaImage, or a DICOM
// series folder. Outputs go to a temporary name beside the target, are synced and checked (the
// payload read back complete: ITK's writers report a full disk only on stderr), then renamed.
// Pixel type: int16 when every voxel is an integer in int16 range (CT in HU, phantoms), else float32.
#include "data/volume.h"
#include "io/dicom_series.h"

#include <filesystem>
#include <vector>

namespace meddiff::io {

struct WriteOptions {
  DicomWriteOptions dicom;   // used for DICOM series outputs
  bool overwrite = false;    // replace an existing file / a DICOM folder meddiff wrote (--force)
  std::string description;   // NIfTI descrip (80 characters), e.g. "SYNTHETIC meddiff ..."
};

// The output policy (core/output_policy.h) for a volume output, checked before any work: a file is
// replaced only with `force`; a DICOM folder only with `force` and only if it holds a series meddiff
// wrote; never an input, inside an input folder or around one.
void check_volume_output(const std::filesystem::path& out, const std::vector<std::filesystem::path>& inputs, bool force);

void write_volume(const Volume& v, const std::filesystem::path& path, const WriteOptions& options = {});
// Writes co-registered channels (one grid) as one 4-D image, channel along the 4th axis (as the Medical
// Segmentation Decathlon's images): NIfTI, NRRD or MHA.
void write_volume_4d(const std::vector<Volume>& channels, const std::filesystem::path& path, const WriteOptions& options = {});
// Writes a label map (uint8) with v's geometry to a file format (not DICOM).
void write_label_map(const torch::Tensor& label, const Geometry& g, const std::filesystem::path& path,
                     const WriteOptions& options = {});

}  // namespace meddiff::io
