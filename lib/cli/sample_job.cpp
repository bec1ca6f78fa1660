#include "cli/sample_job.h"

#include "core/error.h"
#include "core/fs.h"
#include "core/log.h"
#include "core/output_policy.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <regex>
#include <set>

namespace meddiff::cli {
namespace fs = std::filesystem;

std::string SampleLayout::prefix() const { return kind == "nnunet" ? name : "synth"; }

std::string SampleLayout::base_name(int64_t index) const {
  return kind == "nnunet" ? fmt::format("{}_{:04d}", name, index) : fmt::format("synth_{:06d}", index);
}

SampleFolder::SampleFolder(fs::path out, SampleLayout layout) : out_(std::move(out)), layout_(std::move(layout)) {
  if (out_.filename().empty() && out_.has_parent_path()) out_ = out_.parent_path();
}

fs::path SampleFolder::images_dir() const { return layout_.kind == "nnunet" ? out_ / "imagesTr" : out_; }
fs::path SampleFolder::labels_dir() const { return layout_.kind == "nnunet" ? out_ / "labelsTr" : out_; }
fs::path SampleFolder::meta_dir() const { return layout_.kind == "nnunet" ? out_ / "meddiff" : out_; }
fs::path SampleFolder::sidecar(int64_t index) const { return meta_dir() / (layout_.base_name(index) + ".json"); }

namespace {

std::string regex_escape(const std::string& s) {
  static const std::regex special(R"([.^$|()\[\]{}*+?\\])");
  return std::regex_replace(s, special, R"(\$&)");
}

bool is_lock_name(const std::string& n) {
  return n == ".meddiff.lock" || (n.rfind(".meddiff-shard-", 0) == 0 && n.size() > 5 && n.compare(n.size() - 5, 5, ".lock") == 0);
}

}  // namespace

bool SampleFolder::ours(const fs::path& entry) const {
  const std::string n = entry.filename().string();
  if (is_temp_name(n) || is_lock_name(n)) return true;
  const fs::path dir = entry.parent_path();
  const std::string p = regex_escape(layout_.prefix());
  if (dir == out_ && (n == "manifest.jsonl" || n == "eval" || (layout_.kind == "nnunet" && (n == "dataset.json" || n == "imagesTr" || n == "labelsTr" || n == "meddiff"))))
    return true;
  if (dir == labels_dir() && std::regex_match(n, std::regex(p + (layout_.kind == "nnunet" ? R"(_\d+\.nii\.gz)" : R"(_\d+_label\.nii\.gz)"))))
    return true;
  if (dir == images_dir() && std::regex_match(n, std::regex(p + (layout_.kind == "nnunet" ? R"(_\d+_0000\.nii\.gz)" : R"(_\d+\.nii\.gz)"))))
    return true;
  if (dir == meta_dir() && (n == "job.json" || std::regex_match(n, std::regex(p + R"(_\d+(\.json|\.png|_dicom|_label_dicom))"))))
    return true;
  return false;
}

void SampleFolder::check_usable() const {
  std::error_code ec;
  std::error_code cwd_ec;
  fs::path cwd = fs::current_path(cwd_ec);
  if (!cwd_ec && is_within(cwd, out_))
    fail("{}: is the current folder or one of its parents; give a new folder for the samples", out_.string());
  if (!fs::exists(out_, ec)) return;
  if (!fs::is_directory(out_, ec)) fail("{}: exists and is not a folder", out_.string());
  for (const auto& dir : {out_, images_dir(), labels_dir(), meta_dir()}) {
    if (!fs::is_directory(dir, ec)) continue;
    for (const auto& e : fs::directory_iterator(dir)) {
      if (ours(e.path())) continue;
      fail("{}: holds '{}', which meddiff did not write; give a new or empty folder for the samples", out_.string(),
           fs::relative(e.path(), out_).string());
    }
  }
}

FileLock SampleFolder::folder_lock() const {
  fs::create_directories(meta_dir());
  return FileLock::acquire(folder_lock_file(), "sample: folder bookkeeping", out_.string(), /*wait=*/true);
}

void SampleFolder::lock_shard(int64_t k, int64_t n) {
  fs::create_directories(meta_dir());
  shard_lock_path_ = meta_dir() / fmt::format(".meddiff-shard-{}-of-{}.lock", k, n);
  shard_lock_.emplace(FileLock::acquire(shard_lock_path_, fmt::format("sample --shard {}/{}", k, n),
                                        fmt::format("{} (shard {}/{})", out_.string(), k, n)));
  remove_stale_temps(images_dir());
  if (meta_dir() != images_dir()) remove_stale_temps(meta_dir());
  if (labels_dir() != images_dir() && fs::is_directory(labels_dir())) remove_stale_temps(labels_dir());
  if (out_ != meta_dir() && out_ != images_dir()) remove_stale_temps(out_);
}

std::optional<nlohmann::json> SampleFolder::recorded_job() const {
  if (!fs::exists(job_file())) return std::nullopt;
  auto j = nlohmann::json::parse(read_text(job_file()), nullptr, false);
  if (!j.is_object() || !j.contains("settings") || !j["settings"].is_object())
    fail("{}: is not a meddiff job file", job_file().string());
  return j;
}

std::optional<nlohmann::json> SampleFolder::recorded_settings() const {
  auto j = recorded_job();
  if (!j) return std::nullopt;
  return (*j)["settings"];
}

namespace {
// A sidecar holds the job's settings among its keys.
bool has_settings(const nlohmann::json& record, const nlohmann::json& settings) {
  for (const auto& [k, v] : settings.items())
    if (!record.contains(k) || record[k] != v) return false;
  return true;
}
}  // namespace

std::string settings_difference(const nlohmann::json& recorded, const nlohmann::json& now) {
  std::set<std::string> keys;
  for (const auto& [k, v] : recorded.items()) keys.insert(k);
  for (const auto& [k, v] : now.items()) keys.insert(k);
  for (const auto& k : keys) {
    auto a = recorded.contains(k) ? recorded[k] : nlohmann::json();
    auto b = now.contains(k) ? now[k] : nlohmann::json();
    if (a != b) return fmt::format("{}: {} (recorded) vs {} (this run)", k, a.dump(), b.dump());
  }
  return "";
}

void SampleFolder::check_no_other_job(const std::string& what) const {
  std::error_code ec;
  if (!fs::is_directory(meta_dir(), ec)) return;
  for (const auto& e : fs::directory_iterator(meta_dir())) {
    std::string n = e.path().filename().string();
    if (!is_lock_name(n) || n == ".meddiff.lock" || e.path() == shard_lock_path_) continue;
    if (!FileLock::try_acquire(e.path(), "sample: checking for running jobs"))
      fail("{}: another job ({}) is still sampling here; wait for it before {}", out_.string(), n, what);
  }
}

std::optional<int64_t> SampleFolder::volume_of(const fs::path& entry) const {
  static const std::regex index(R"(_(\d{1,9})(?:_0000\.nii\.gz|_label\.nii\.gz|\.nii\.gz|\.json|\.png|_dicom|_label_dicom)$)");
  std::smatch m;
  const std::string n = entry.filename().string();
  if (!ours(entry) || is_temp_name(n) || is_lock_name(n) || !std::regex_search(n, m, index)) return std::nullopt;
  if (n.rfind(layout_.prefix() + "_", 0) != 0) return std::nullopt;
  return std::stoll(m[1].str());
}

int64_t SampleFolder::remove_unfinished() {
  check_no_other_job("--finalize");
  auto lock = folder_lock();
  int64_t removed = 0;
  std::set<fs::path> seen;
  for (const auto& dir : {images_dir(), labels_dir(), meta_dir(), out_}) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec) || !seen.insert(dir).second) continue;
    removed += remove_stale_temps(dir, /*all=*/true);
    std::vector<fs::path> doomed;
    for (const auto& e : fs::directory_iterator(dir)) {
      auto i = volume_of(e.path());
      if (i && !finished(*i)) doomed.push_back(e.path());
    }
    for (const auto& p : doomed) {
      log_warn("{}: removing {} of an unfinished volume", out_.string(), fs::relative(p, out_).string());
      fs::remove_all(p);
      ++removed;
    }
  }
  return removed;
}

std::optional<SampleLayout> SampleFolder::recorded_layout(const fs::path& out) {
  for (const auto& [kind, file] : {std::pair<std::string, fs::path>{"nnunet", out / "meddiff" / "job.json"}, {"flat", out / "job.json"}}) {
    std::error_code ec;
    if (!fs::is_regular_file(file, ec)) continue;
    auto j = nlohmann::json::parse(read_text(file), nullptr, false);
    if (!j.is_object() || !j.contains("settings") || !j["settings"].is_object()) fail("{}: is not a meddiff job file", file.string());
    SampleLayout l;
    l.kind = j["settings"].value("layout", kind);
    if (l.kind != kind) fail("{}: records layout '{}' but lies where the {} layout keeps it", file.string(), l.kind, kind);
    if (kind == "nnunet") l.name = j["settings"].value("name", l.name);
    return l;
  }
  return std::nullopt;
}

void SampleFolder::discard_volumes() {
  // Another shard still writing with the old settings would mix two jobs: refuse.
  check_no_other_job("--force");
  int64_t removed = 0;
  for (const auto& dir : {images_dir(), labels_dir(), meta_dir(), out_}) {
    if (!fs::is_directory(dir)) continue;
    std::vector<fs::path> doomed;
    for (const auto& e : fs::directory_iterator(dir)) {
      std::string n = e.path().filename().string();
      if (!ours(e.path()) || is_lock_name(n) || n == "imagesTr" || n == "labelsTr" || n == "meddiff" || n == "eval") continue;
      doomed.push_back(e.path());
    }
    for (const auto& p : doomed) {
      if (p.extension() == ".json" && p.filename() != "job.json" && p.filename() != "dataset.json") ++removed;
      fs::remove_all(p);
    }
  }
  log_warn("{}: --force: discarded {} volume(s) sampled with other settings", out_.string(), removed);
}

void SampleFolder::open(const nlohmann::json& settings, const nlohmann::json& info, bool force) {
  auto lock = folder_lock();
  nlohmann::json job = {{"kind", "meddiff sample job"}, {"settings", settings}, {"info", info}};
  if (auto recorded = recorded_settings()) {
    std::string diff = settings_difference(*recorded, settings);
    if (diff.empty()) {
      if ((*recorded_job())["info"] != info) write_text_atomically(job_file(), job.dump(2) + "\n");
      return;
    }
    int64_t n = static_cast<int64_t>(sidecar_indices().size());
    if (!force)
      fail("{}: was sampled with other settings ({}); use another --out, or --force to discard its {} volume(s) and "
           "start again",
           out_.string(), diff, n);
    discard_volumes();
  } else if (!sidecar_indices().empty()) {
    if (!force)
      fail("{}: holds {} volume(s) without a job.json (an older meddiff?); use another --out, or --force to discard them",
           out_.string(), sidecar_indices().size());
    discard_volumes();
  }
  fs::create_directories(images_dir());
  write_text_atomically(job_file(), job.dump(2) + "\n");
}

std::vector<int64_t> SampleFolder::sidecar_indices() const {
  std::vector<int64_t> out;
  std::error_code ec;
  if (!fs::is_directory(meta_dir(), ec)) return out;
  const std::regex re(regex_escape(layout_.prefix()) + R"(_(\d+)\.json)");
  for (const auto& e : fs::directory_iterator(meta_dir())) {
    std::smatch m;
    std::string n = e.path().filename().string();
    if (std::regex_match(n, m, re)) out.push_back(std::stoll(m[1].str()));
  }
  std::sort(out.begin(), out.end());
  return out;
}

bool SampleFolder::finished(int64_t index) const {
  fs::path p = sidecar(index);
  std::error_code ec;
  if (!fs::exists(p, ec)) return false;
  auto rec = nlohmann::json::parse(read_text(p), nullptr, false);
  if (!rec.is_object() || !rec.contains("files") || !rec["files"].is_array()) return false;
  auto job = recorded_settings();
  if (job && !has_settings(rec, *job)) return false;
  for (const auto& f : rec["files"]) {
    fs::path file = out_ / f.get<std::string>();
    if (!fs::exists(file, ec)) return false;
  }
  return true;
}

void SampleFolder::commit(int64_t index, const nlohmann::json& record) {
  auto lock = folder_lock();
  write_text_atomically(sidecar(index), record.dump(2) + "\n");
  // One line appended in a single write while holding the lock; a line cut short by a kill or a full
  // disk is dropped by the next rebuild.
  int fd = ::open(manifest().c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) fail("{}: cannot open for appending: {}", manifest().string(), std::strerror(errno));
  std::string line = record.dump() + "\n";
  ssize_t n = ::write(fd, line.data(), line.size());
  int err = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(line.size()))
    fail("{}: write failed: {}", manifest().string(), n < 0 ? std::strerror(err) : "disk full?");
}

int64_t SampleFolder::rebuild(const std::function<nlohmann::json(int64_t)>& dataset_json) {
  auto lock = folder_lock();
  std::string text;
  int64_t n = 0;
  auto job = recorded_settings();
  for (int64_t i : sidecar_indices()) {
    auto rec = nlohmann::json::parse(read_text(sidecar(i)), nullptr, false);
    if (!rec.is_object()) {
      log_warn("{}: unreadable sidecar, left out of the manifest", sidecar(i).string());
      continue;
    }
    if (job && !has_settings(rec, *job)) continue;
    text += rec.dump() + "\n";
    ++n;
  }
  write_text_atomically(manifest(), text);
  if (dataset_json && layout_.kind == "nnunet") write_text_atomically(out_ / "dataset.json", dataset_json(n).dump(2) + "\n");
  return n;
}

}  // namespace meddiff::cli
