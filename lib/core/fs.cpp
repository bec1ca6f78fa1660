#include "core/fs.h"

#include "core/error.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <sstream>

namespace meddiff {
namespace {
std::atomic<int> g_counter{0};

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}
}  // namespace

std::string full_extension(const fs::path& path) {
  std::string name = lower(path.filename().string());
  for (const char* two : {".nii.gz", ".tar.gz"}) {
    std::string t(two);
    if (name.size() > t.size() && name.compare(name.size() - t.size(), t.size(), t) == 0) return t.substr(1);
  }
  auto dot = name.rfind('.');
  if (dot == std::string::npos || dot == 0) return "";
  return name.substr(dot + 1);
}

TempPath::TempPath(const fs::path& target) : target_(target) {
  std::string ext = full_extension(target);
  std::string stem = target.filename().string();
  if (!ext.empty()) stem = stem.substr(0, stem.size() - ext.size() - 1);
  std::string name = "." + stem + ".tmp-" + std::to_string(getpid()) + "-" + std::to_string(g_counter++);
  if (!ext.empty()) name += "." + ext;
  tmp_ = target.parent_path() / name;
}

TempPath::~TempPath() {
  if (!committed_) {
    std::error_code ec;
    fs::remove_all(tmp_, ec);
  }
}

void TempPath::commit() {
  std::error_code ec;
  if (fs::is_directory(tmp_) && fs::is_directory(target_)) {
    // rename() replaces an empty folder only; a folder with content is an error the caller checks first.
    fs::remove(target_, ec);
  }
  fs::rename(tmp_, target_, ec);
  if (ec) fail("{}: cannot move finished output into place: {}", target_.string(), ec.message());
  committed_ = true;
}

void write_atomically(const fs::path& target, const std::function<void(const fs::path&)>& write) {
  if (target.has_parent_path() && !fs::exists(target.parent_path())) {
    std::error_code ec;
    fs::create_directories(target.parent_path(), ec);
    if (ec) fail("{}: cannot create folder: {}", target.parent_path().string(), ec.message());
  }
  TempPath tmp(target);
  write(tmp.path());
  tmp.commit();
}

void write_text_atomically(const fs::path& target, const std::string& text) {
  write_atomically(target, [&](const fs::path& p) {
    std::ofstream out(p, std::ios::binary);
    out << text;
    out.close();
    if (!out) fail("{}: write failed", target.string());
  });
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open: {}", path.string(), fs::exists(path) ? "permission denied" : "no such file");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace meddiff
