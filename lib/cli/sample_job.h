#pragma once
// The folder of a sampling job (`meddiff sample --out`): which volumes are finished, with which
// settings, and the manifest derived from them. Safe against kills, re-runs and concurrent shards:
//   - job.json records the settings that determine every volume (checkpoint SHA-256s, seed, class
//     rule, sampler, steps, guidance, eta, thresholds, precision, layout, formats, name); a run with
//     other settings is refused naming the difference, or with --force the folder's volumes are
//     discarded first (only files meddiff wrote; anything else in the folder is never touched);
//   - a volume is finished when its sidecar JSON exists and every file it lists is present;
//   - manifest.jsonl holds one line per sidecar, sorted by index: lines are appended as volumes
//     finish and the whole file is rebuilt from the sidecars at the start and end of every run and by
//     `sample --finalize`, all under the folder lock, so it never misses or doubles a line for long;
//   - one lock per shard K/N refuses a second identical job while the first runs (a killed job's
//     lock is released by the kernel and taken over).
#include "core/lock.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace meddiff::cli {

struct SampleLayout {
  std::string kind = "flat";  // flat: OUT/synth_NNNNNN.* (+ _label.nii.gz); nnunet: OUT/imagesTr/<name>_NNNN_0000.nii.gz (+ labelsTr/<name>_NNNN.nii.gz), sidecars in OUT/meddiff/
  std::string name = "meddiff";

  std::string base_name(int64_t index) const;   // synth_000012 / Name_0012
  std::string prefix() const;                   // synth / Name
};

class SampleFolder {
 public:
  SampleFolder(std::filesystem::path out, SampleLayout layout);

  const std::filesystem::path& out() const { return out_; }
  std::filesystem::path images_dir() const;   // where NIfTI volumes go
  std::filesystem::path labels_dir() const;   // where NIfTI label maps go (labelsTr/, or beside the volumes)
  std::filesystem::path meta_dir() const;     // sidecars, DICOM folders, PNGs, job.json, locks
  std::filesystem::path sidecar(int64_t index) const;

  // Before any work: the folder is new, empty, or a sampling folder of meddiff's (else an error naming
  // what it holds). Does not write anything.
  void check_usable() const;
  // Takes the lock of shard K/N (error naming the holder if another job has it).
  void lock_shard(int64_t k, int64_t n);
  // Under the folder lock: records `settings` (and `info`: modality, config) in job.json, or compares
  // them with the recorded ones. A difference is an error naming it, unless `force`: then the folder's
  // volumes are discarded first.
  void open(const nlohmann::json& settings, const nlohmann::json& info, bool force);
  // job.json ({"kind", "settings", "info"}), if present.
  std::optional<nlohmann::json> recorded_job() const;
  std::optional<nlohmann::json> recorded_settings() const;

  // Finished: the sidecar exists, it has the job's settings and every file it lists is present.
  bool finished(int64_t index) const;
  // Under the folder lock: writes the sidecar (atomically) and appends its manifest line.
  void commit(int64_t index, const nlohmann::json& record);
  // Under the folder lock: manifest.jsonl (and, for the nnunet layout, dataset.json via `dataset_json`)
  // rebuilt from the sidecars. Returns the number of finished volumes.
  int64_t rebuild(const std::function<nlohmann::json(int64_t finished)>& dataset_json = nullptr);
  // Indices of every sidecar present.
  std::vector<int64_t> sidecar_indices() const;
  // For --finalize, when no job samples here (else an error naming the running one): removes the
  // temporaries and the files of volumes that have no finished sidecar (an image a killed job wrote
  // before its label map and sidecar), so that the folder holds only complete cases. Returns how many
  // files and folders were removed.
  int64_t remove_unfinished();

  // The layout and name a folder's job.json records (nnunet: OUT/meddiff/job.json, flat: OUT/job.json).
  static std::optional<SampleLayout> recorded_layout(const std::filesystem::path& out);

 private:
  std::filesystem::path job_file() const { return meta_dir() / "job.json"; }
  std::filesystem::path manifest() const { return out_ / "manifest.jsonl"; }
  std::filesystem::path folder_lock_file() const { return meta_dir() / ".meddiff.lock"; }
  FileLock folder_lock() const;
  // Removes every file this job layout names (volumes, sidecars, DICOM folders, previews, manifest,
  // dataset.json, job.json) and nothing else. Refused while another shard's job holds its lock.
  void discard_volumes();
  bool ours(const std::filesystem::path& entry) const;  // a name this layout writes
  // The volume index a file or folder name of this layout belongs to, if any.
  std::optional<int64_t> volume_of(const std::filesystem::path& entry) const;
  // An error naming the other job when any shard lock but this process's own is held.
  void check_no_other_job(const std::string& what) const;

  std::filesystem::path out_;
  SampleLayout layout_;
  std::optional<FileLock> shard_lock_;
  std::filesystem::path shard_lock_path_;
};

// The first setting that differs between two job records, as "key: A (recorded) vs B (this run)"; "" if none.
std::string settings_difference(const nlohmann::json& recorded, const nlohmann::json& now);

}  // namespace meddiff::cli
