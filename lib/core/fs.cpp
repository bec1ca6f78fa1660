#include "core/fs.h"

#include "core/error.h"
#include "core/text.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace meddiff {
namespace {
std::atomic<int> g_counter{0};

// Host name as it appears in temporary names: the short name, [A-Za-z0-9_] only.
std::string host_token() {
  std::string h = host_name();
  h = h.substr(0, h.find('.'));
  for (auto& c : h)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  return h.empty() ? "host" : h;
}

struct TempNameParts {
  std::string host;
  long pid = 0;
};
bool parse_temp_name(const std::string& name, TempNameParts& parts) {
  if (name.empty() || name[0] != '.') return false;
  auto at = name.rfind(".tmp-");
  if (at == std::string::npos || at == 0) return false;
  std::string rest = name.substr(at + 5);
  rest = rest.substr(0, rest.find('.'));  // host-pid-n
  auto d2 = rest.rfind('-');
  if (d2 == std::string::npos || d2 == 0) return false;
  auto d1 = rest.rfind('-', d2 - 1);
  if (d1 == std::string::npos || d1 == 0) return false;
  std::string pid = rest.substr(d1 + 1, d2 - d1 - 1), n = rest.substr(d2 + 1);
  auto digits = [](const std::string& s) { return !s.empty() && std::all_of(s.begin(), s.end(), ::isdigit); };
  if (!digits(pid) || !digits(n)) return false;
  parts.host = rest.substr(0, d1);
  parts.pid = std::stol(pid);
  return true;
}

void fsync_fd_path(const fs::path& p, bool directory) {
  int fd = ::open(p.c_str(), (directory ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
  if (fd < 0) fail("{}: cannot open to flush: {}", p.string(), std::strerror(errno));
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  // Some file systems cannot fsync a folder (EINVAL); the data files were flushed already.
  if (rc != 0 && !(directory && (err == EINVAL || err == EROFS)))
    fail("{}: write failed: {}", p.string(), std::strerror(err));
}

}  // namespace

std::string host_name() {
  char buf[256] = {0};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "localhost";
  return buf;
}

bool process_alive(long pid) {
  if (pid <= 0) return false;
  return ::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM;
}

std::string full_extension(const fs::path& path) {
  std::string name = to_lower(path.filename().string());
  for (const char* two : {".nii.gz", ".tar.gz"}) {
    std::string t(two);
    if (name.size() > t.size() && name.compare(name.size() - t.size(), t.size(), t) == 0) return t.substr(1);
  }
  auto dot = name.rfind('.');
  if (dot == std::string::npos || dot == 0) return "";
  return name.substr(dot + 1);
}

TempPath::TempPath(const fs::path& target) : target_(target) {
  if (target_.filename().empty()) target_ = target_.parent_path();  // "out/" -> "out"
  std::string ext = full_extension(target_);
  std::string stem = target_.filename().string();
  if (!ext.empty()) stem = stem.substr(0, stem.size() - ext.size() - 1);
  std::string name = "." + stem + ".tmp-" + host_token() + "-" + std::to_string(getpid()) + "-" + std::to_string(g_counter++);
  if (!ext.empty()) name += "." + ext;
  tmp_ = target_.parent_path() / name;
}

TempPath::~TempPath() {
  if (!committed_) {
    std::error_code ec;
    fs::remove_all(tmp_, ec);
  }
}

void TempPath::commit() {
  sync_path(tmp_);
  std::error_code ec;
  if (fs::is_directory(tmp_) && fs::is_directory(target_) && !fs::is_empty(target_)) {
    // A non-empty folder the caller has checked may be replaced: move it aside, move the new one in,
    // then delete the old. A crash in between leaves the old one under a temporary name (cleaned later).
    TempPath old(target_);
    fs::rename(target_, old.path(), ec);
    if (ec) fail("{}: cannot move the old folder aside: {}", target_.string(), ec.message());
    fs::rename(tmp_, target_, ec);
    if (ec) {
      std::error_code ec2;
      fs::rename(old.path(), target_, ec2);
      fail("{}: cannot move finished output into place: {}", target_.string(), ec.message());
    }
    committed_ = true;
    // `old` removes the previous folder when it goes out of scope.
  } else {
    if (fs::is_directory(tmp_) && fs::is_directory(target_)) fs::remove(target_, ec);  // empty folder
    fs::rename(tmp_, target_, ec);
    if (ec) fail("{}: cannot move finished output into place: {}", target_.string(), ec.message());
    committed_ = true;
  }
  fs::path parent = target_.parent_path().empty() ? fs::path(".") : target_.parent_path();
  fsync_fd_path(parent, true);
}

bool is_temp_name(const std::string& filename) {
  TempNameParts p;
  return parse_temp_name(filename, p);
}

int remove_stale_temps(const fs::path& dir, bool all) {
  int removed = 0;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return 0;
  const std::string me = host_token();
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    TempNameParts p;
    if (!parse_temp_name(e.path().filename().string(), p)) continue;
    if (!all && (p.host != me || process_alive(p.pid))) continue;
    std::error_code ec2;
    if (fs::remove_all(e.path(), ec2) > 0) ++removed;
  }
  return removed;
}

void sync_path(const fs::path& path) {
  if (fs::is_directory(path)) {
    for (const auto& e : fs::recursive_directory_iterator(path))
      if (e.is_regular_file()) fsync_fd_path(e.path(), false);
    for (const auto& e : fs::recursive_directory_iterator(path))
      if (e.is_directory()) fsync_fd_path(e.path(), true);
    fsync_fd_path(path, true);
  } else {
    fsync_fd_path(path, false);
  }
}

CheckedFile::CheckedFile(const fs::path& path, const std::string& what) : what_(what.empty() ? path.string() : what) {
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) fail("{}: cannot create: {}", what_, std::strerror(errno));
}

CheckedFile::~CheckedFile() {
  if (fd_ >= 0) ::close(fd_);
}

void CheckedFile::write(const void* data, size_t size) {
  const char* p = static_cast<const char*>(data);
  size_t done = 0;
  while (done < size) {
    ssize_t n = ::write(fd_, p + done, size - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail("{}: write failed: {}", what_, std::strerror(n < 0 ? errno : ENOSPC));
    done += static_cast<size_t>(n);
  }
}

void CheckedFile::finish() {
  if (::fsync(fd_) != 0) fail("{}: write failed: {}", what_, std::strerror(errno));
  int rc = ::close(fd_);
  fd_ = -1;
  if (rc != 0) fail("{}: write failed: {}", what_, std::strerror(errno));
}

void write_file_checked(const fs::path& path, const char* data, size_t size, const std::string& what) {
  CheckedFile f(path, what);
  f.write(data, size);
  f.finish();
}

void write_atomically(const fs::path& target, const std::function<void(const fs::path&)>& write,
                      const std::function<void(const fs::path&)>& verify) {
  if (target.has_parent_path() && !fs::exists(target.parent_path())) {
    std::error_code ec;
    fs::create_directories(target.parent_path(), ec);
    if (ec) fail("{}: cannot create folder: {}", target.parent_path().string(), ec.message());
  }
  TempPath tmp(target);
  write(tmp.path());
  if (!fs::exists(tmp.path())) fail("{}: the writer produced no file", target.string());
  if (verify) verify(tmp.path());
  tmp.commit();
}

void write_text_atomically(const fs::path& target, const std::string& text) {
  write_atomically(target, [&](const fs::path& p) { write_file_checked(p, text, target.string()); });
}

void StagedFiles::add(const fs::path& target, const std::function<void(const fs::path&)>& write) {
  if (target.has_parent_path() && !fs::exists(target.parent_path())) {
    std::error_code ec;
    fs::create_directories(target.parent_path(), ec);
    if (ec) fail("{}: cannot create folder: {}", target.parent_path().string(), ec.message());
  }
  auto tmp = std::make_unique<TempPath>(target);
  write(tmp->path());
  if (!fs::exists(tmp->path())) fail("{}: the writer produced no file", target.string());
  temps_.push_back(std::move(tmp));
}

void StagedFiles::add_text(const fs::path& target, const std::string& text) {
  add(target, [&](const fs::path& p) { write_file_checked(p, text, target.string()); });
}

void StagedFiles::commit() {
  for (auto& t : temps_) t->commit();
  temps_.clear();
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open: {}", path.string(), fs::exists(path) ? "permission denied" : "no such file");
  std::stringstream ss;
  ss << in.rdbuf();
  if (in.bad()) fail("{}: read error", path.string());
  return ss.str();
}

}  // namespace meddiff
