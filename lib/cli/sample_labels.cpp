#include "cli/sample_labels.h"

#include "cli/args.h"

#include "core/checkpoint.h"
#include "core/error.h"
#include "core/log.h"
#include "core/sha256.h"
#include "data/batches.h"
#include "data/label_maps.h"
#include "data/manifest.h"
#include "data/ras_axes.h"
#include "data/spatial.h"
#include "io/volume_reader.h"


namespace meddiff::cli {
namespace fs = std::filesystem;

namespace {

int64_t parse_label(const std::string& s, int64_t num_labels, const char* option) {
  size_t used = 0;
  int64_t v = -1;
  try {
    v = std::stoll(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != s.size() || v < 1 || v >= num_labels)
    usage_fail("{}: '{}' is not a label of this model (1..{}; 0 is the background)", option, s, num_labels - 1);
  return v;
}

}  // namespace

std::vector<LabelEdit> parse_label_edits(const std::string& remove, const std::string& scale, int64_t num_labels) {
  std::vector<LabelEdit> out;
  for (const auto& r : split_commas(remove)) {
    if (r.empty()) continue;
    out.push_back({"remove", parse_label(r, num_labels, "--remove-label"), 1.0});
  }
  for (const auto& item : split_commas(scale)) {
    if (item.empty()) continue;
    auto eq = item.find('=');
    if (eq == std::string::npos) usage_fail("--scale-label takes LABEL=FACTOR, e.g. 4=1.5 (got '{}')", item);
    LabelEdit e{"scale", parse_label(item.substr(0, eq), num_labels, "--scale-label"), 0};
    try {
      size_t used = 0;
      e.factor = std::stod(item.substr(eq + 1), &used);
      if (used != item.size() - eq - 1) e.factor = 0;
    } catch (const std::exception&) {
      e.factor = 0;
    }
    if (!(e.factor >= 0.25 && e.factor <= 4)) usage_fail("--scale-label: the factor of '{}' must be within 0.25..4", item);
    out.push_back(e);
  }
  return out;
}

LabelSource::LabelSource(const LoadedLDM& ldm, const std::string& user, const fs::path& bank, std::optional<bool> augment,
                         std::vector<LabelEdit> edits)
    : edits_(std::move(edits)) {
  const auto& shape = ldm.data.shape;
  from_bank_ = user.empty();
  // Mask-bank maps are augmented by default: as they are, they are training anatomy, and the pairs made from
  // them are near-copies of training cases (MR demo: the memorisation audit flagged 25 of 48 pairs, CT 48 of
  // 48; 0 and 1 with augmentation). A model follows augmented maps well only if it learned them
  // (ldm_train.augment_copies, train/augmented_copies.h).
  augment_ = augment.value_or(from_bank_);
  if (augment_ && ldm.augment_copies == 0)
    log_warn("label maps are augmented, but this model learned no augmented copies (ldm_train.augment_copies 0) and follows such "
             "maps less faithfully (MR demo: the pairs' ventricles +60 % against +27 % with 4 copies); train stage 2 with "
             "ldm_train.augment_copies = 4");
  spacing_ = ldm.geometry.spacing;
  nlohmann::json edits_json = nlohmann::json::array();
  for (const auto& e : edits_) edits_json.push_back(e.op == "remove" ? nlohmann::json{{"remove", e.label}} : nlohmann::json{{"scale", e.label}, {"factor", e.factor}});
  if (from_bank_) {
    if (!fs::exists(bank))
      fail("{}: no mask bank (the training label maps the LDM writes beside its checkpoint); pass --mask-bank FILE or --labels DIR",
           bank.string());
    Checkpoint c = load_checkpoint_of_kind(bank, "mask_bank", "a mask bank");
    auto all = c.tensor("labels").to(torch::kLong);  // [N, D, H, W]
    if (c.tensors.count("classes")) {
      auto cls = c.tensor("classes").to(torch::kLong);
      classes_.assign(cls.data_ptr<int64_t>(), cls.data_ptr<int64_t>() + cls.numel());
    }
    for (int64_t i = 0; i < all.size(0); ++i) {
      check_label_map(all[i], shape, ldm.num_labels, fmt::format("{} map {}", bank.string(), i));
      maps_.push_back(all[i]);
      geometries_.push_back(ldm.geometry);
      names_.push_back(fmt::format("bank:{}", i));
    }
    if (maps_.empty()) fail("{}: the mask bank is empty", bank.string());
    settings_ = {{"source", "mask bank"}, {"sha256", sha256_file(bank)}, {"count", maps_.size()}};
  } else {
    Manifest m = load_manifest(user, ManifestKind::LabelMaps);
    const auto ext = fs::path(user).extension().string();
    const bool with_classes = ext == ".csv" || ext == ".json";
    DataParams p = ldm.data;
    p.crop = "foreground";
    for (const auto& e : m.entries) {
      fs::path f = e.label ? *e.label : e.image;  // a manifest's label column, or a folder / list of label maps
      Volume v = io::read_volume(f);
      auto rounded = v.image.round();
      if (!torch::equal(rounded, v.image)) fail("{}: not a label map (non-integer values)", f.string());
      v.label = rounded.to(torch::kLong);
      if (ldm.network_xyz) v = to_ras_grid(v);  // an imported network's maps as MONAI's RAS arrays, the output's grid
      if (p.spacing[0] > 0 && p.spacing[1] > 0 && p.spacing[2] > 0) v = resample_to_spacing(v, p.spacing);
      v = crop_or_pad(v, shape, CropMode::Foreground, 0.0);
      check_label_map(*v.label, shape, ldm.num_labels, f.string());
      maps_.push_back(*v.label);
      geometries_.push_back(v.geometry);
      names_.push_back(f.filename().string());
      if (with_classes) classes_.push_back(e.class_label);
    }
    std::string digest;
    for (size_t i = 0; i < m.entries.size(); ++i) digest += names_[i] + ":" + sha256_file(m.entries[i].label ? *m.entries[i].label : m.entries[i].image) + ";";
    settings_ = {{"source", "user"}, {"maps", fs::absolute(user).string()}, {"sha256", sha256_hex(digest)}, {"count", maps_.size()}};
  }
  settings_["augment"] = augment_;
  settings_["edits"] = edits_json;
}

void LabelSource::check_classes(int64_t num_classes, const std::string& source) const {
  for (size_t k = 0; k < classes_.size(); ++k)
    if (classes_[k] >= num_classes)
      usage_fail("--labels {}: the map {} has class {}, which this model does not have (classes 0..{}); correct the "
                 "manifest's class column or give --class",
                 source, names_[k], classes_[k], num_classes - 1);
}

PairLabel LabelSource::for_volume(uint64_t seed, int64_t index) const {
  PairLabel out;
  size_t k = 0;
  if (from_bank_) {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(step_seed(seed, index, 0x6C61626CULL));  // the map drawn
    k = static_cast<size_t>(torch::randint(0, static_cast<int64_t>(maps_.size()), {1}, gen).item<int64_t>());
  } else {
    k = static_cast<size_t>(index % static_cast<int64_t>(maps_.size()));
  }
  out.label = maps_[k];
  out.geometry = geometries_[k];
  if (augment_) {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(step_seed(seed, index, 0x61756777ULL));  // its augmentation
    out.label = augment_label(out.label, spacing_, augment_params_, gen);
  }
  for (const auto& e : edits_) out.label = e.op == "remove" ? remove_label(out.label, e.label) : scale_label(out.label, e.label, e.factor);
  out.record = {{"map", names_[k]}, {"augmented", augment_}};
  if (k < classes_.size()) out.class_label = classes_[k];
  return out;
}

}  // namespace meddiff::cli
