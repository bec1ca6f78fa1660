#pragma once
// The files of one synthetic volume of a sampling job, in the job's formats and layout: the NIfTI
// volume (and its label map), a DICOM series (and a second series of the label map), a PNG preview
// (with the label outlines); each says SYNTHETIC and where it came from. And the nnU-Net layout's
// dataset.json.
#include "cli/sample_job.h"
#include "data/intensity.h"
#include "data/volume.h"

#include <nlohmann/json.hpp>

#include <set>
#include <string>
#include <vector>

namespace meddiff::cli {

// Where a volume came from, for its descriptions.
struct SampleProvenance {
  uint64_t seed = 0;
  int64_t index = 0, cls = 0, attempt = 0;
  std::string sampler;
  int64_t steps = 0;
  double guidance = 1;
};

// Writes the channels of one volume (scanner units, one grid) and, when defined, its label map (int64 [D, H, W]
// on their grid) as SampleFolder `folder` lays them out; returns the files written, relative to the folder.
// One channel: NAME.nii.gz (flat) or NAME_0000.nii.gz (nnU-Net), NAME_dicom, NAME.png. Several (channel_names,
// one per volume): NAME_<channel>.nii.gz or NAME_0000.. NAME_000N.nii.gz, a DICOM series and a preview each.
nlohmann::json write_sample_files(const SampleFolder& folder, const SampleLayout& layout, const std::set<std::string>& formats,
                                  const std::vector<Volume>& channels, const std::vector<std::string>& channel_names,
                                  const torch::Tensor& label, const std::vector<std::string>& label_names,
                                  const IntensityWindow& window, const SampleProvenance& p);

// nnU-Net v2's dataset.json of a sampled folder: channels (CT / MRI for one unnamed channel), label names, the
// number of cases.
nlohmann::json nnunet_dataset_json(const std::string& name, Modality modality, const std::vector<std::string>& channel_names,
                                   const std::vector<std::string>& label_names, int64_t count);

}  // namespace meddiff::cli
