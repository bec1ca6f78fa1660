#pragma once
// Stage 2's augmented copies of the training cases (ldm_train.augment_copies). `sample` draws label maps
// from the mask bank and augments them (flip, rotation, scaling, elastic: data/label_augment); a model
// that saw only the training maps as they are follows such maps poorly (on the MR demo the pairs'
// ventricles came out 60 % too bright with augmented maps, 27 % after learning 4 copies of each case;
// maps as they are gave 9 %, but pairs that copy training anatomy). So stage 2 can also learn
// from copies of each case whose image and label map are warped together by a draw of the same
// augmentation: the pairs that sampling asks for. Copy k of case i derives from (seed, i, k) alone, so
// every data-parallel rank and every resumed run makes the same copies.
#include "data/label_augment.h"
#include "data/preprocess.h"

namespace meddiff {

// The most copies per case (ldm_train.augment_copies' bound): copy k of case i is draw i * kMaxAugmentCopies + k.
constexpr int64_t kMaxAugmentCopies = 64;

// Copy `copy` (0-based) of case `case_index`: x and label warped by one augmentation draw, the class and
// geometry of the case kept; source names the copy ("<source> (augmented copy k)").
TrainingVolume augmented_copy(const TrainingVolume& v, int64_t case_index, int64_t copy, uint64_t seed,
                              const LabelAugment& params = {});
// Its label map alone (the same draw, without warping the image).
torch::Tensor augmented_copy_label(const TrainingVolume& v, int64_t case_index, int64_t copy, uint64_t seed,
                                   const LabelAugment& params = {});

}  // namespace meddiff
