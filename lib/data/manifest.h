#pragma once
// A dataset manifest: the list of (image, class, optional label map) a training run reads.
// Sources: a folder (every image file in it), a glob ("dir/*.nii.gz"), a CSV file with a header
// (image,class[,label]; "mask" is read as "label") or a JSON file ({"cases": [{"image": ..., "class": ..., "label": ...}]} or a
// bare array). Relative paths are resolved against the manifest's folder (the CSV's or JSON's, not the
// current folder). Loading checks every entry (missing files, FIFOs and devices, unreadable paths,
// negative classes or classes beyond kMaxClasses - 1) and reports all bad ones in a single error.
// A manifest of label maps (ManifestKind::LabelMaps, `sample --labels`) may name only a label column.
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace meddiff {

// Class ids are 0..K-1 with K at most this: a model has one embedding per class.
constexpr int64_t kMaxClasses = 1000;

struct ManifestEntry {
  std::filesystem::path image;  // empty in a label-map manifest without an image column
  int64_t class_label = 0;
  std::optional<std::filesystem::path> label;  // label map (segmentation) on the image's grid
};

struct Manifest {
  std::string source;  // what it was loaded from
  std::vector<ManifestEntry> entries;
  int64_t num_classes() const;  // 1 + the largest class label
  std::vector<int64_t> classes_used() const;  // the distinct class labels, sorted
};

enum class ManifestKind { Images, LabelMaps };
Manifest load_manifest(const std::string& source, ManifestKind kind = ManifestKind::Images);
// Writes `m` as {"cases": [...]} with paths relative to the JSON file's folder, atomically.
void save_manifest_json(const Manifest& m, const std::filesystem::path& path);
// True for the file name endings meddiff reads as images (nii, nii.gz, nrrd, nhdr, mha, mhd).
bool has_image_extension(const std::filesystem::path& p);
// Glob on the file name only: '*' any run, '?' one character.
bool wildcard_match(const std::string& pattern, const std::string& name);

}  // namespace meddiff
