#include "data/dataset_cache.h"

#include "core/error.h"
#include "core/fs.h"
#include "core/lock.h"
#include "core/log.h"
#include "core/sha256.h"
#include "core/threads.h"
#include "data/geometry_json.h"

#include <fmt/format.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <memory>

namespace meddiff {
namespace {

constexpr const char* kVersion = "v2";  // v2: per-channel windows

int64_t numel(const std::array<int64_t, 4>& s) { return s[0] * s[1] * s[2] * s[3]; }

// A read-only mapping of a whole file, unmapped when the last tensor viewing it is gone.
struct Mapping {
  void* data = nullptr;
  size_t size = 0;
  ~Mapping() {
    if (data && data != MAP_FAILED) ::munmap(data, size);
  }
};

std::shared_ptr<Mapping> map_file(const fs::path& path, size_t expected) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) fail("{}: cannot be opened ({})", path.string(), std::strerror(errno));
  struct stat st {};
  ::fstat(fd, &st);
  if (static_cast<size_t>(st.st_size) != expected) {
    ::close(fd);
    fail("{}: {} bytes, the cache's meta.json needs {} (a damaged cache: delete the folder)", path.string(), st.st_size, expected);
  }
  auto m = std::make_shared<Mapping>();
  m->size = expected;
  if (expected > 0) {
    m->data = ::mmap(nullptr, expected, PROT_READ, MAP_SHARED, fd, 0);
    if (m->data == MAP_FAILED) {
      ::close(fd);
      fail("{}: cannot be mapped ({})", path.string(), std::strerror(errno));
    }
  }
  ::close(fd);
  return m;
}

torch::Tensor view(const std::shared_ptr<Mapping>& m, size_t offset, at::IntArrayRef sizes, torch::Dtype dtype) {
  auto keep = m;
  return torch::from_blob(static_cast<char*>(m->data) + offset, sizes, [keep](void*) {}, torch::TensorOptions().dtype(dtype));
}

// A file of `size` bytes (zeros) written at offsets from several threads; errors name it.
class RecordFile {
 public:
  RecordFile(const fs::path& path, size_t size) : path_(path) {
    fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd_ < 0) fail("{}: cannot be created ({})", path.string(), std::strerror(errno));
    if (::ftruncate(fd_, static_cast<off_t>(size)) != 0) fail("{}: cannot be sized to {} bytes ({})", path.string(), size, std::strerror(errno));
  }
  ~RecordFile() {
    if (fd_ >= 0) ::close(fd_);
  }
  void write_at(size_t offset, const void* data, size_t size) {
    const char* p = static_cast<const char*>(data);
    while (size > 0) {
      ssize_t w = ::pwrite(fd_, p, size, static_cast<off_t>(offset));
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) fail("{}: write failed ({})", path_.string(), w < 0 ? std::strerror(errno) : "no progress");
      p += w;
      offset += static_cast<size_t>(w);
      size -= static_cast<size_t>(w);
    }
  }
  void finish() {
    if (::fsync(fd_) != 0) fail("{}: cannot be flushed to disk ({})", path_.string(), std::strerror(errno));
    ::close(fd_);
    fd_ = -1;
  }

 private:
  fs::path path_;
  int fd_ = -1;
};

// A complete cache folder: its meta.json and where its records are.
struct Entry {
  fs::path dir;
  nlohmann::json meta;
};

std::vector<Entry> complete_entries(const fs::path& dir) {
  std::vector<Entry> out;
  std::error_code ec;
  for (const auto& f : fs::directory_iterator(dir, ec)) {
    const auto name = f.path().filename().string();
    if (!f.is_directory() || name.rfind(std::string(kVersion) + "-", 0) != 0 || is_temp_name(name)) continue;
    try {
      out.push_back({f.path(), nlohmann::json::parse(read_text(f.path() / "meta.json"))});
    } catch (const std::exception&) {
      // not complete (no meta.json) or not ours: left alone
    }
  }
  return out;
}

// What differs between two settings objects, by key.
std::vector<std::string> changed_keys(const nlohmann::json& a, const nlohmann::json& b) {
  std::vector<std::string> out;
  for (auto it = a.begin(); it != a.end(); ++it)
    if (!b.contains(it.key()) || b[it.key()] != it.value()) out.push_back(it.key());
  for (auto it = b.begin(); it != b.end(); ++it)
    if (!a.contains(it.key())) out.push_back(it.key());
  return out;
}

std::vector<TrainingVolume> map_entry(const Entry& e, const std::array<int64_t, 4>& shape) {
  const auto& cases = e.meta.at("cases");
  const size_t n = cases.size();
  const size_t img_bytes = static_cast<size_t>(numel(shape)) * 2, lab_bytes = static_cast<size_t>(shape[1] * shape[2] * shape[3]);
  auto images = map_file(e.dir / "images.f16", n * img_bytes);
  auto labels = map_file(e.dir / "labels.u8", n * lab_bytes);
  std::vector<TrainingVolume> out(n);
  for (size_t i = 0; i < n; ++i) {
    const auto& c = cases[i];
    auto& v = out[i];
    v.x = view(images, i * img_bytes, {shape[0], shape[1], shape[2], shape[3]}, torch::kHalf);
    if (c.at("has_label").get<bool>()) v.label = view(labels, i * lab_bytes, {shape[1], shape[2], shape[3]}, torch::kUInt8);
    v.geometry = geometry_from_json(c.at("geometry"));
    v.windows = c.at("windows").get<std::vector<IntensityWindow>>();
    v.class_label = c.at("class").get<int64_t>();
    if (v.label.defined()) v.label_count = c.value("label_count", int64_t{-1});
    v.source = c.at("source").get<std::string>();
    v.label_source = c.at("label_source").get<std::string>();
  }
  return out;
}

}  // namespace

nlohmann::json file_fingerprint(const fs::path& p) {
  std::error_code ec;
  auto fp = [&](const fs::path& f) {
    auto size = fs::file_size(f, ec);
    auto mtime = fs::last_write_time(f, ec).time_since_epoch().count();
    return nlohmann::json{fs::absolute(f).lexically_normal().string(), ec ? -1 : static_cast<int64_t>(size), static_cast<int64_t>(mtime)};
  };
  if (!fs::is_directory(p)) return fp(p);
  nlohmann::json all = nlohmann::json::array();
  std::vector<fs::path> files;
  for (const auto& f : fs::directory_iterator(p, ec))
    if (f.is_regular_file()) files.push_back(f.path());
  std::sort(files.begin(), files.end());
  for (const auto& f : files) all.push_back(fp(f));
  return {fs::absolute(p).lexically_normal().string(), sha256_hex(all.dump())};
}

std::vector<TrainingVolume> cached_cases(const CacheSpec& spec, const std::function<TrainingVolume(size_t)>& make,
                                         const std::string& what) {
  const size_t n = spec.cases.size();
  std::vector<std::string> case_keys;
  std::string all_keys = spec.settings.dump();
  for (const auto& c : spec.cases) {
    case_keys.push_back(c.dump());
    all_keys += "\n" + case_keys.back();
  }
  const std::string key = sha256_hex(all_keys).substr(0, 16);
  fs::create_directories(spec.dir);
  const fs::path target = spec.dir / fmt::format("{}-{}", kVersion, key);
  auto use = [&](const fs::path& dir) {
    Entry e{dir, nlohmann::json::parse(read_text(dir / "meta.json"))};
    log_info("{}: {} preprocessed case(s) from the cache {}", what, n, dir.string());
    return map_entry(e, spec.shape);
  };
  if (fs::exists(target / "meta.json")) return use(target);
  // The first process to take the lock builds; the others wait for it, then find the cache complete.
  FileLock lock = FileLock::acquire(spec.dir / ".build.lock", "building the dataset cache", spec.dir.string(), /*wait=*/true);
  if (fs::exists(target / "meta.json")) return use(target);
  remove_stale_temps(spec.dir, /*all=*/true);

  // Reusable records: earlier caches with the same settings, by case key.
  const auto entries = complete_entries(spec.dir);
  std::map<std::string, std::pair<size_t, size_t>> reusable;  // case key -> (entry, record)
  std::vector<size_t> same_settings;
  for (size_t k = 0; k < entries.size(); ++k) {
    const auto& m = entries[k].meta;
    if (m.value("settings", nlohmann::json()) != spec.settings || m.value("shape", std::array<int64_t, 4>{}) != spec.shape) continue;
    same_settings.push_back(k);
    const auto& cs = m.at("cases");
    for (size_t i = 0; i < cs.size(); ++i) reusable.emplace(cs[i].at("key").get<std::string>(), std::make_pair(k, i));
  }
  size_t reused = 0;
  for (const auto& k : case_keys) reused += reusable.count(k);
  if (entries.empty()) log_info("{}: building the dataset cache in {} ({} cases)", what, target.string(), n);
  else if (same_settings.empty())
    log_info("{}: the data settings differ from the cache's ({}): building {} ({} cases)", what,
             fmt::join(changed_keys(entries.back().meta.value("settings", nlohmann::json::object()), spec.settings), ", "),
             target.string(), n);
  else
    log_info("{}: {} of {} cases are new or their files changed since the cache was built: rebuilding them into {}, reusing the rest",
             what, n - reused, n, target.string());

  // The new cache's files at their full size; each record is written at its offset as soon as it is made (in
  // parallel), so memory holds a few cases at a time, not the dataset.
  TempPath tmp(target);
  fs::create_directories(tmp.path());
  const size_t img_bytes = static_cast<size_t>(numel(spec.shape)) * 2, lab_bytes = static_cast<size_t>(spec.shape[1] * spec.shape[2] * spec.shape[3]);
  RecordFile images(tmp.path() / "images.f16", n * img_bytes), labels(tmp.path() / "labels.u8", n * lab_bytes);
  std::vector<nlohmann::json> cases(n);
  auto put = [&](size_t i, const TrainingVolume& v) {
    auto x = v.x.to(torch::kHalf).contiguous();
    images.write_at(i * img_bytes, x.data_ptr(), img_bytes);
    if (v.label.defined()) {
      auto l = v.label.to(torch::kUInt8).contiguous();
      labels.write_at(i * lab_bytes, l.data_ptr(), lab_bytes);  // the file's zeros stand for "no label map" otherwise
    }
    cases[i] = {{"key", case_keys[i]}, {"source", v.source}, {"label_source", v.label_source}, {"class", v.class_label},
                {"has_label", v.label.defined()}, {"geometry", geometry_json(v.geometry)}, {"windows", v.windows},
                {"label_count", v.label.defined() ? (v.label_count >= 0 ? v.label_count : v.label.max().item<int64_t>() + 1) : 0}};
  };
  {  // records of earlier caches, copied
    std::vector<std::vector<TrainingVolume>> old(entries.size());
    for (size_t k : same_settings) old[k] = map_entry(entries[k], spec.shape);
    for (size_t i = 0; i < n; ++i)
      if (auto it = reusable.find(case_keys[i]); it != reusable.end()) put(i, old[it->second.first][it->second.second]);
  }
  // the others made in parallel; every failing case goes into one error
  std::vector<size_t> todo;
  for (size_t i = 0; i < n; ++i)
    if (!reusable.count(case_keys[i])) todo.push_back(i);
  for_each_case(todo.size(), "preprocessing", what, n, [&](size_t t) {
    const size_t i = todo[t];
    TrainingVolume v = make(i);
    const auto& x = v.x;
    if (x.dim() != 4 || x.size(0) != spec.shape[0] || x.size(1) != spec.shape[1] || x.size(2) != spec.shape[2] ||
        x.size(3) != spec.shape[3])
      fail("{}: preprocessed to {}, the cache's records are {}", v.source, x.sizes(), fmt::join(spec.shape, "x"));
    if (v.label.defined() && (v.label.min().item<int64_t>() < 0 || v.label.max().item<int64_t>() > 255))
      fail("{}: label values beyond 0..255 (the cache stores label maps as bytes)", v.label_source);
    put(i, v);
  });
  images.finish();
  labels.finish();
  write_file_checked(tmp.path() / "meta.json",
                     nlohmann::json{{"settings", spec.settings}, {"shape", spec.shape}, {"cases", cases}}.dump(1) + "\n");
  tmp.commit();
  // Earlier caches of the same settings are superseded (a process still mapping one keeps its pages).
  for (size_t k : same_settings) {
    std::error_code ec;
    fs::remove_all(entries[k].dir, ec);
  }
  return use(target);
}

}  // namespace meddiff
