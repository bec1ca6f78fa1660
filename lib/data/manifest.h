#pragma once
// A dataset manifest: the list of cases (image channels, class, optional label map) a training run reads.
// Sources here: a folder (every image file in it), a glob ("dir/*.nii.gz"), a CSV file with a header
// (image,class[,label]; "mask" is read as "label") or a JSON file ({"cases": [{"image": ..., "class": ..., "label": ...}]} or a
// bare array). Cases with several channels (a JSON manifest written by `meddiff index`) list them as
// "channels": [path or {"file", "component", "series_uid"}, ...] in the order of the top-level "channel_names".
// Dataset layouts (nnU-Net raw, MSD, BraTS folders, DICOM trees) are indexed into a Manifest by the
// sources of data/dataset_source.h and io/dataset_index.h. Relative paths are resolved against the manifest's folder (the CSV's or JSON's, not the
// current folder). Loading checks every entry (missing files, FIFOs and devices, unreadable paths,
// negative classes or classes beyond kMaxClasses - 1) and reports all bad ones in a single error.
// A manifest of label maps (ManifestKind::LabelMaps, `sample --labels`) may name only a label column.
#include <nlohmann/json.hpp>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace meddiff {

// Class ids are 0..K-1 with K at most this: a model has one embedding per class.
constexpr int64_t kMaxClasses = 1000;

// One channel of a case: a 3-D image file, one component of a 4-D file (MSD) or a DICOM series.
struct ChannelFile {
  std::filesystem::path path;
  int64_t component = -1;  // index along the 4th axis of a 4-D file; -1: the file is 3-D
  std::string series_uid;  // a DICOM folder holding several series: which one ("" = the only one)
};

struct ManifestEntry {
  std::filesystem::path image;  // the first channel's file; empty in a label-map manifest without an image column
  int64_t class_label = 0;
  std::optional<std::filesystem::path> label;  // label map (segmentation) on the image's grid
  std::string id;                              // case id (nnU-Net / BraTS case, DICOM series); may be empty
  std::vector<ChannelFile> channels;           // every channel, in Manifest::channel_names order; empty: `image` alone
  std::string info;                            // what indexing says of the case (DICOM: modality, slices, description)
  // The case's channels: `channels`, or `image` as the one channel.
  std::vector<ChannelFile> channel_files() const;
};

struct Manifest {
  std::string source;  // what it was loaded from
  std::string layout = "list";  // list, nnU-Net raw, MSD, BraTS or DICOM tree
  std::vector<ManifestEntry> entries;
  std::vector<std::string> channel_names;  // one per channel (a one-channel manifest may leave it empty)
  std::vector<std::string> label_names;    // label value -> name, when the source names them (dataset.json)
  int64_t num_classes() const;  // 1 + the largest class label
  std::vector<int64_t> classes_used() const;  // the distinct class labels, sorted
  int64_t num_channels() const;  // channels per case (the same for every case; checked when loading)
};

// The indices of the channels `wanted` names (in that order) in m.channel_names; empty `wanted` takes every
// channel. Throws naming `key` and the channels there are for an unknown name.
std::vector<size_t> select_channels(const Manifest& m, const std::vector<std::string>& wanted, const std::string& key);

enum class ManifestKind { Images, LabelMaps };
Manifest load_manifest(const std::string& source, ManifestKind kind = ManifestKind::Images);
// Problems of a list of entries: missing files, FIFOs and devices, unreadable paths, classes out of range, and
// cases whose channel count differs from the first case's. `where[i]` names entry i in each message.
std::vector<std::string> entry_problems(const std::vector<ManifestEntry>& entries, const std::vector<std::string>& where);
// `m` as {"layout", "channel_names", "label_names", "cases": [...]}: paths relative to `base` (as given when empty).
nlohmann::json manifest_json(const Manifest& m, const std::filesystem::path& base);
// Writes manifest_json(m, the JSON file's folder) atomically; load_manifest reads it back to the same cases.
void save_manifest_json(const Manifest& m, const std::filesystem::path& path);
// True for the file name endings meddiff reads as images (nii, nii.gz, nrrd, nhdr, mha, mhd).
bool has_image_extension(const std::filesystem::path& p);
// Glob on the file name only: '*' any run, '?' one character.
bool wildcard_match(const std::string& pattern, const std::string& name);

}  // namespace meddiff
