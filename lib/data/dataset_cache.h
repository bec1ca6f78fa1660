#pragma once
// The preprocessed dataset cache (data.cache / --cache DIR): every case read, resampled, cropped and normalised
// once, stored as fixed-size records (images float16, label maps uint8) that training maps into memory, so
// that a restart, a resume or a second run with the same data settings starts without preprocessing, and
// memory does not grow with the number of cases (the pages are the file's, shared by every process of a node).
//
// DIR/v2-<key>/ holds meta.json (settings, record shape [C, D, H, W], per case: its key, source, class, geometry, windows),
// images.f16 and labels.u8; <key> is a digest of the data settings and of every case's files (path, size,
// modification time). A cache is built under DIR/.build.lock (the first process to take it builds, the
// others wait and then map the result), in a temporary folder renamed into place when complete. Records of an
// earlier cache with the same settings are reused for the cases whose files did not change; the log says
// what changed.
#include "data/preprocess.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace meddiff {

struct CacheSpec {
  std::filesystem::path dir;          // data.cache
  nlohmann::json settings;            // every data setting a record depends on
  std::vector<nlohmann::json> cases;  // per case (in the order of the result): its files' fingerprints and class
  std::array<int64_t, 4> shape{};     // a record's image [C, D, H, W]
};

// Path, size and modification time of a file (a folder: of every file in it, e.g. a DICOM series).
nlohmann::json file_fingerprint(const std::filesystem::path& p);

// The cases of `spec`, preprocessed: records from the cache (x a float16 view of the mapped file, label a uint8
// view) where the settings and files are unchanged, the others made by make(i) (called in parallel; an error
// names its case and every failing case is reported in one error) and written into a new cache.
std::vector<TrainingVolume> cached_cases(const CacheSpec& spec, const std::function<TrainingVolume(size_t)>& make,
                                         const std::string& what);

}  // namespace meddiff
