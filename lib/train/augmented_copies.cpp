#include "train/augmented_copies.h"

#include "core/error.h"
#include "data/batches.h"

#include <fmt/format.h>

namespace meddiff {

namespace {

at::Generator copy_generator(const TrainingVolume& v, int64_t case_index, int64_t copy, uint64_t seed) {
  if (!v.label.defined()) fail("{}: an augmented copy needs the case's label map", v.source);
  return at::make_generator<at::CPUGeneratorImpl>(step_seed(seed, case_index * kMaxAugmentCopies + copy, 0x6175676dULL));
}

}  // namespace

torch::Tensor augmented_copy_label(const TrainingVolume& v, int64_t case_index, int64_t copy, uint64_t seed, const LabelAugment& params) {
  return augment_label(v.label, v.geometry.spacing, params, copy_generator(v, case_index, copy, seed));
}

TrainingVolume augmented_copy(const TrainingVolume& v, int64_t case_index, int64_t copy, uint64_t seed, const LabelAugment& params) {
  auto pair = augment_pair(v.x, v.label, v.geometry.spacing, params, copy_generator(v, case_index, copy, seed));
  TrainingVolume out = v;
  out.x = pair.image;
  out.label = pair.label;
  out.label_count = -1;
  out.source = fmt::format("{} (augmented copy {})", v.source, copy + 1);
  return out;
}

}  // namespace meddiff
