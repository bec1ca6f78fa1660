#pragma once
// `--vqgan CKPT` with `--modality ct|mr`, as reconstruct and eval take them: a checkpoint trained by meddiff
// knows how its volumes were prepared; an autoencoder brought in by `meddiff import` records no training
// data and prepares volumes as MAISI and MONAI do for the modality given (CT: [-1000, 1000] HU; MR: the 0th
// to 99.5th percentile), seeing them in MONAI's RAS (x, y, z) layout.
#include "pipeline/loaded_models.h"

#include <string>

namespace meddiff::cli {

// The help text of --modality.
extern const char* const kAutoencoderModalityHelp;

// Loads `checkpoint`; `modality` ("" when not given) must be ct or mr, is required for an imported
// autoencoder and must agree with a trained one's data.
LoadedAutoencoder load_autoencoder_option(const std::string& checkpoint, const std::string& modality, const torch::Device& device);

}  // namespace meddiff::cli
