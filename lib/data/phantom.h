#pragma once
// Built-in synthetic data: random MR heads and CT chests with label maps, in two classes, for the
// demo and the tests (nothing is downloaded). Shapes are drawn in millimetres, so anisotropic
// spacing gives the same anatomy at another resolution.
//   MR head, labels: 0 background, 1 skull/scalp, 2 brain, 3 ventricles, 4 lesion (class 1: 1-3 bright lesions)
//   CT chest (HU), labels: 0 air, 1 soft tissue, 2 lung, 3 bone, 4 nodule (class 1: 1-3 solid nodules in the lungs)
#include "data/volume.h"

#include <cstdint>
#include <string>
#include <vector>

namespace meddiff {

struct PhantomParams {
  Modality modality = Modality::MR;
  std::array<int64_t, 3> shape{32, 32, 32};     // [D, H, W] voxels
  std::array<double, 3> spacing{1.0, 1.0, 1.0};  // x, y, z mm
  uint64_t seed = 0;
  void validate() const;
};

namespace phantom_label {
constexpr int64_t kBackground = 0, kShell = 1, kOrgan = 2, kCavity = 3, kLesion = 4;
// CT names for the same numbers
constexpr int64_t kAir = 0, kSoftTissue = 1, kLung = 2, kBone = 3, kNodule = 4;
}  // namespace phantom_label

// The label names of the phantoms of modality m (index = label value).
std::vector<std::string> phantom_label_names(Modality m);

// Case `index` of a dataset: identical for identical (params, index, class_label).
Volume make_phantom(const PhantomParams& p, int64_t index, int64_t class_label);

// MR only: the anatomy of make_phantom(p, index, class_label) (the same label map and geometry, on the first
// volume) seen in several MR sequences, by name: t1, t1ce, t2, flair. Per tissue (skull/scalp, brain,
// ventricles, lesion) the relative intensities of each sequence: fat-bright skull in T1; CSF dark in T1 and
// FLAIR, bright in T2; a lesion hypointense in T1, enhancing in T1ce, hyperintense in T2 and FLAIR. Each
// sequence has its own bias field and noise.
std::vector<Volume> make_phantom_sequences(const PhantomParams& p, int64_t index, int64_t class_label,
                                           const std::vector<std::string>& sequences);
// The sequence names make_phantom_sequences knows.
const std::vector<std::string>& phantom_sequences();

}  // namespace meddiff
