#pragma once
// The folder of a training run (`train-vqgan --out`, `train-ldm --out`): what may be in it, who
// writes it, and what a resume must match.
//   - It is new, empty, or holds only what a meddiff trainer writes there (last.pt, step-*.pt,
//     config.json, metrics.jsonl, previews/, latents.pt); anything else is an error naming it.
//   - A lock (flock on .meddiff.lock, released by the kernel when the process ends) refuses a second
//     trainer in the same folder; temporaries of a killed run are removed.
//   - A new run (no --resume) in a folder that holds an earlier run's checkpoints (last.pt, step-*.pt)
//     is refused naming them; --force deletes them first, with the run's logs and previews
//     (RunStart::Replace). A folder without checkpoints (a run stopped before its first) is started in. --resume continues from last.pt, or, when a kill left none, from the
//     newest complete step-NNNNNNN.pt (checkpoints are renamed into place only when complete).
//   - metrics.jsonl is cut back to the resumed step, so a resumed run never repeats steps.
//   - The data a checkpoint was trained on is fingerprinted (data settings and, per case, file name,
//     size and class); a resume on other data is refused naming the difference.
#include "core/lock.h"
#include "core/log.h"
#include "data/preprocess.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <memory>
#include <optional>

namespace meddiff {

// How a trainer starts in its folder: a new run (refused over an earlier run's files), --resume, or
// --force (a new run replacing the earlier run's files).
enum class RunStart { New, Resume, Replace };

// The checkpoint a resume continues from: DIR/last.pt, else the newest DIR/step-NNNNNNN.pt; an error
// naming DIR when there is neither.
std::filesystem::path resume_checkpoint(const std::filesystem::path& dir);

class RunFolder {
 public:
  RunFolder(const std::filesystem::path& out, const std::string& command, RunStart start);
  const std::filesystem::path& dir() const { return out_; }
  std::filesystem::path last() const { return out_ / "last.pt"; }
  // metrics.jsonl for appending: kept up to `start_step` on a resume, emptied on a fresh start.
  std::unique_ptr<JsonlWriter> metrics(int64_t start_step, bool resume) const;

 private:
  std::filesystem::path out_;
  std::optional<FileLock> lock_;
};

// What the run trains on: the data settings (without the manifest's location) and each case's file
// name, size and class.
nlohmann::json data_fingerprint(const DataParams& p, const std::vector<TrainingVolume>& cases);
// "" when the two fingerprints agree, else what differs (for an error message).
std::string data_difference(const nlohmann::json& recorded, const nlohmann::json& now);

}  // namespace meddiff
