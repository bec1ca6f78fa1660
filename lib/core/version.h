#pragma once
// What this build of meddiff is: version, git hash, LibTorch version, CUDA compiled / available.
#include <nlohmann/json.hpp>

#include <string>

namespace meddiff {

std::string version();            // "0.1.0"
std::string git_hash();           // short hash or "unknown"
std::string torch_version();      // LibTorch version this binary was built against
bool cuda_compiled();             // meddiff's own CUDA kernels compiled in
bool cuda_available();            // a CUDA device is usable now
nlohmann::json build_info();      // all of the above as JSON
std::string version_text();       // the human-readable `meddiff --version` text

}  // namespace meddiff
