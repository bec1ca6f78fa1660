#include "train/run_folder.h"

#include "core/config.h"
#include "core/error.h"
#include "core/fs.h"

#include <algorithm>
#include <fstream>
#include <regex>

namespace meddiff {
namespace fs = std::filesystem;

namespace {
const std::regex& step_checkpoint_name() {
  static const std::regex r(R"(step-(\d{1,15})\.pt)");
  return r;
}

// What a trainer writes in its folder (the lock and temporaries aside).
bool run_entry(const std::string& n) {
  return n == "last.pt" || n == "config.json" || n == "metrics.jsonl" || n == "previews" || n == "latents.pt" || n == "mask_bank.pt" ||
         n == "autoencoder.pt" || std::regex_match(n, step_checkpoint_name());  // autoencoder.pt: train-ldm --init's copy
}

bool trainer_entry(const std::string& n) { return run_entry(n) || n == ".meddiff.lock" || is_temp_name(n); }

bool checkpoint_name(const std::string& n) { return n == "last.pt" || std::regex_match(n, step_checkpoint_name()); }

// The earlier run's checkpoints in `dir`, sorted: what a new run must not replace without --force.
// (A run that never wrote one left nothing to lose: its config.json and metrics.jsonl are replaced, its
// latents.pt is a cache checked against the data, and a new run starts there.)
std::vector<std::string> earlier_checkpoints(const fs::path& dir) {
  std::vector<std::string> found;
  for (const auto& e : fs::directory_iterator(dir))
    if (checkpoint_name(e.path().filename().string())) found.push_back(e.path().filename().string());
  std::sort(found.begin(), found.end());
  return found;
}
}  // namespace

namespace {
// last.pt, else the newest step checkpoint, else "".
fs::path find_resume_checkpoint(const fs::path& dir) {
  if (fs::exists(dir / "last.pt")) return dir / "last.pt";
  fs::path newest;
  int64_t best = -1;
  std::error_code ec;
  if (fs::is_directory(dir, ec))
    for (const auto& e : fs::directory_iterator(dir)) {
      std::smatch m;
      std::string n = e.path().filename().string();
      if (!std::regex_match(n, m, step_checkpoint_name())) continue;
      int64_t step = std::stoll(m[1].str());
      if (step > best) best = step, newest = e.path();
    }
  return newest;
}

void nothing_to_resume(const fs::path& dir) {
  fail("{}: nothing to resume (no last.pt and no step-NNNNNNN.pt checkpoint); start without --resume", dir.string());
}
}  // namespace

fs::path resume_checkpoint(const fs::path& dir) {
  fs::path from = find_resume_checkpoint(dir);
  if (from.empty()) nothing_to_resume(dir);
  if (from.filename() != "last.pt")
    log_warn("{}: no last.pt (a run killed while writing it); resuming from the newest complete checkpoint, {}", dir.string(),
             from.filename().string());
  return from;
}

RunFolder::RunFolder(const fs::path& out, const std::string& command, RunStart start) : out_(out) {
  if (out_.filename().empty() && out_.has_parent_path()) out_ = out_.parent_path();
  std::error_code ec;
  if (fs::exists(out_, ec)) {
    if (!fs::is_directory(out_, ec)) fail("{}: exists and is not a folder", out_.string());
    for (const auto& e : fs::directory_iterator(out_)) {
      std::string n = e.path().filename().string();
      if (!trainer_entry(n))
        fail("{}: holds '{}', which a meddiff trainer did not write; give a new or empty --out", out_.string(), n);
    }
  }
  fs::create_directories(out_);
  lock_.emplace(FileLock::acquire(out_ / ".meddiff.lock", command, out_.string()));
  remove_stale_temps(out_, /*all=*/true);
  if (fs::exists(out_ / "previews")) remove_stale_temps(out_ / "previews", /*all=*/true);
  auto earlier = earlier_checkpoints(out_);
  if (start == RunStart::New && !earlier.empty())
    fail("{}: holds an earlier training run ({}); --resume continues it, --force deletes it and starts again, or give "
         "another --out",
         out_.string(), fmt::join(earlier, ", "));
  if (start == RunStart::Replace) {
    // the earlier run's checkpoints, logs and previews; latents.pt stays (a cache checked against the data)
    std::vector<std::string> doomed;
    for (const auto& e : fs::directory_iterator(out_)) {
      const std::string n = e.path().filename().string();
      if (checkpoint_name(n) || n == "config.json" || n == "metrics.jsonl" || n == "previews" || n == "mask_bank.pt" || n == "autoencoder.pt")
        doomed.push_back(n);
    }
    if (!doomed.empty()) log_warn("{}: --force: deleting the earlier run's {}", out_.string(), fmt::join(doomed, ", "));
    for (const auto& n : doomed) fs::remove_all(out_ / n);
  }
  if (start == RunStart::Resume && find_resume_checkpoint(out_).empty()) nothing_to_resume(out_);  // before any work
  fs::create_directories(out_ / "previews");
}

std::unique_ptr<JsonlWriter> RunFolder::metrics(int64_t start_step, bool resume) const {
  fs::path p = out_ / "metrics.jsonl";
  if (!resume) return std::make_unique<JsonlWriter>(p.string(), /*append=*/false);
  // Keep what was logged up to the checkpoint; later lines belong to steps that will run again.
  std::string kept;
  if (fs::exists(p)) {
    std::ifstream in(p);
    std::string line;
    while (std::getline(in, line)) {
      auto j = nlohmann::json::parse(line, nullptr, false);
      if (j.is_object() && j.contains("step") && j["step"].is_number_integer() && j["step"].get<int64_t>() <= start_step)
        kept += line + "\n";
    }
  }
  write_text_atomically(p, kept);
  return std::make_unique<JsonlWriter>(p.string(), /*append=*/true);
}

nlohmann::json data_fingerprint(const DataParams& p, const std::vector<TrainingVolume>& cases) {
  nlohmann::json params = config_to_json(p);
  params.erase("manifest");  // the data may move; its content is what counts
  nlohmann::json list = nlohmann::json::array();
  for (const auto& c : cases) {
    std::error_code ec;
    auto size = fs::file_size(c.source, ec);
    nlohmann::json item = {fs::path(c.source).filename().string(), ec ? -1 : static_cast<int64_t>(size), c.class_label};
    if (p.label_conditioned()) {  // the label maps condition the model: they are part of the data
      auto label_size = fs::file_size(c.label_source, ec);
      item.push_back(fs::path(c.label_source).filename().string());
      item.push_back(ec ? -1 : static_cast<int64_t>(label_size));
    }
    list.push_back(item);
  }
  std::sort(list.begin(), list.end());
  return {{"params", params}, {"cases", list}};
}

std::string data_difference(const nlohmann::json& recorded, const nlohmann::json& now) {
  if (!recorded.is_object() || !recorded.contains("params")) return "";  // an older checkpoint: nothing recorded
  for (const auto& [k, v] : now["params"].items())
    if (!recorded["params"].contains(k) || recorded["params"][k] != v)
      return fmt::format("data.{}: {} (checkpoint) vs {} (now)", k,
                         recorded["params"].contains(k) ? recorded["params"][k].dump() : "absent", v.dump());
  const auto& a = recorded["cases"];
  const auto& b = now["cases"];
  if (a == b) return "";
  if (a.size() != b.size()) return fmt::format("the checkpoint was trained on {} cases, the data now has {}", a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i] != b[i]) return fmt::format("case {} (file, bytes, class) vs {} now", a[i].dump(), b[i].dump());
  return "";
}

}  // namespace meddiff
