#pragma once
// The built-in configuration of `meddiff demo` (also shipped as configs/demo-mr.json and
// configs/demo-ct.json; a test keeps them equal).
#include "train/train_config.h"

namespace meddiff::cli {

RunConfig demo_config(Modality modality, bool quick);

}  // namespace meddiff::cli
