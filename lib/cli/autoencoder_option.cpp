#include "cli/autoencoder_option.h"

#include "core/error.h"

#include <optional>

namespace meddiff::cli {

const char* const kAutoencoderModalityHelp =
    "ct or mr: for an imported autoencoder (meddiff import's autoencoder.pt, which records no training data), how to scale "
    "volumes as MAISI and MONAI do (CT: [-1000, 1000] HU; MR: 0th-99.5th percentile); a trained checkpoint knows its own";

LoadedAutoencoder load_autoencoder_option(const std::string& checkpoint, const std::string& modality, const torch::Device& device) {
  std::optional<Modality> imported_as;
  if (!modality.empty()) {
    if (modality != "ct" && modality != "mr") usage_fail("--modality must be ct or mr (got '{}')", modality);
    imported_as = parse_modality(modality);
  }
  LoadedAutoencoder vq = load_autoencoder(checkpoint, device, imported_as);
  if (imported_as && vq.imported.empty() && *imported_as != vq.data.modality_enum())
    usage_fail("--modality {}: the {} {} was trained on {} (leave --modality out)", modality, vq.kind(), checkpoint, vq.data.modality);
  return vq;
}

}  // namespace meddiff::cli
