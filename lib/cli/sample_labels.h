#pragma once
// Where the label maps of paired sampling come from (sample on a label-conditioned model):
//   - the mask bank: the training label maps the LDM saved beside its checkpoint (mask_bank.pt);
//     volume i draws map (seed, i) and, unless turned off, a random geometric augmentation of it (which a
//     model follows well when it learned augmented copies: ldm_train.augment_copies);
//   - the user's own maps (--labels DIR|manifest; a manifest may name only a label column, its
//     relative paths resolve against its own folder): volume i takes map i mod their count, resampled to
//     the training spacing (nearest neighbour) and cropped/padded to the training shape around the
//     labelled voxels; its geometry is then the map's own.
// The pair's class is its map's case class when known (the bank; a CSV/JSON manifest), so a map with a
// lesion is generated as the class that has lesions; `sample --class` overrides it.
// Per-label edits (--remove-label, --scale-label) apply to every map after augmentation.
#include "data/label_augment.h"
#include "data/volume.h"
#include "pipeline/loaded_models.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace meddiff::cli {

struct LabelEdit {
  std::string op;       // remove or scale
  int64_t label = 0;
  double factor = 1.0;  // scale
};
// "4,2" -> remove 4 and 2; "4=1.5" (scale) -> scale 4 by 1.5. Throws a usage error naming the option.
std::vector<LabelEdit> parse_label_edits(const std::string& remove, const std::string& scale, int64_t num_labels);

struct PairLabel {
  torch::Tensor label;    // int64 [D, H, W] on the training grid
  std::optional<int64_t> class_label;  // the map's case class (mask bank; a manifest with a class column)
  Geometry geometry;      // of the pair (the user's map's, or the training grid's centred on the origin)
  nlohmann::json record;  // where it came from, for the sidecar
};

class LabelSource {
 public:
  // `user`: --labels (empty: the mask bank `bank`, or --mask-bank); augment: nullopt = the default
  // (on for the bank, off for the user's maps).
  LabelSource(const LoadedLDM& ldm, const std::string& user, const std::filesystem::path& bank, std::optional<bool> augment,
              std::vector<LabelEdit> edits);
  PairLabel for_volume(uint64_t seed, int64_t index) const;
  // A usage error naming the map when a map's class (from a --labels manifest) is not one of the
  // model's 0..num_classes-1 (a map's class would otherwise be replaced without a word).
  void check_classes(int64_t num_classes, const std::string& source) const;
  // What determines the maps (recorded in job.json: a change is another job).
  nlohmann::json settings() const { return settings_; }
  int64_t count() const { return static_cast<int64_t>(maps_.size()); }

 private:
  std::vector<torch::Tensor> maps_;     // int64 [D, H, W]
  std::vector<Geometry> geometries_;
  std::vector<std::string> names_;      // file names (user maps) or bank indices
  std::vector<int64_t> classes_;        // the maps' case classes, when known
  bool from_bank_ = true, augment_ = true;
  std::array<double, 3> spacing_{1, 1, 1};
  std::vector<LabelEdit> edits_;
  LabelAugment augment_params_;
  nlohmann::json settings_;
};

}  // namespace meddiff::cli
