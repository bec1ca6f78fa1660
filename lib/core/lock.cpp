#include "core/lock.h"

#include "core/error.h"
#include "core/fs.h"
#include "core/log.h"

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>

namespace meddiff {
namespace {

std::string now_iso() {
  auto t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string describe(const FileLock::Holder& h) {
  return fmt::format("host {}, pid {}, since {}{}", h.host, h.pid, h.started, h.purpose.empty() ? "" : ": " + h.purpose);
}

void record_holder(int fd, const std::string& purpose) {
  nlohmann::json j = {{"host", host_name()}, {"pid", static_cast<long>(::getpid())}, {"started", now_iso()}, {"purpose", purpose}};
  std::string text = j.dump() + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, text.data(), text.size(), 0) != static_cast<ssize_t>(text.size()))
    log_debug("lock: cannot record the holder: {}", std::strerror(errno));
}

// Where flock() is not supported: the recorded holder decides.
bool held_by_someone_else(const std::optional<FileLock::Holder>& h) {
  if (!h || h->pid <= 0) return false;
  if (h->host == host_name()) return h->pid != static_cast<long>(::getpid()) && process_alive(h->pid);
  return true;  // another host: cannot tell, assume it runs
}

}  // namespace

std::optional<FileLock::Holder> FileLock::holder(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return std::nullopt;
  std::string text;
  try {
    text = read_text(path);
  } catch (const Error&) {
    return std::nullopt;
  }
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (!j.is_object()) return std::nullopt;
  Holder h;
  h.host = j.value("host", "");
  h.pid = j.value("pid", 0L);
  h.started = j.value("started", "");
  h.purpose = j.value("purpose", "");
  return h;
}

std::optional<FileLock> FileLock::try_acquire(const std::filesystem::path& path, const std::string& purpose) {
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) fail("{}: cannot create lock file: {}", path.string(), std::strerror(errno));
  auto previous = holder(path);
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    if (err == EWOULDBLOCK || err == EINTR) {
      ::close(fd);
      return std::nullopt;
    }
    if (err != ENOLCK && err != EOPNOTSUPP && err != ENOSYS) {
      ::close(fd);
      fail("{}: cannot lock: {}", path.string(), std::strerror(err));
    }
    if (held_by_someone_else(previous)) {
      ::close(fd);
      return std::nullopt;
    }
  }
  if (previous && previous->pid > 0 && previous->pid != static_cast<long>(::getpid()))
    log_info("{}: taking over from a job that is no longer running ({})", path.string(), describe(*previous));
  record_holder(fd, purpose);
  return FileLock(fd, path);
}

FileLock FileLock::acquire(const std::filesystem::path& path, const std::string& purpose, const std::string& what, bool wait) {
  if (wait) {
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) fail("{}: cannot create lock file: {}", path.string(), std::strerror(errno));
    int rc;
    do rc = ::flock(fd, LOCK_EX);
    while (rc != 0 && errno == EINTR);
    if (rc == 0) {
      record_holder(fd, purpose);
      return FileLock(fd, path);
    }
    ::close(fd);  // no flock here: fall through to the recorded-holder check
  }
  auto lock = try_acquire(path, purpose);
  if (lock) return std::move(*lock);
  auto h = holder(path);
  std::string who = h ? describe(*h) : "unknown holder";
  bool other_host = h && h->host != host_name();
  fail("{}: in use by another meddiff job ({}); wait for it to finish or stop it{}", what, who,
       other_host ? fmt::format(" (if it is gone, delete {})", path.string()) : "");
}

FileLock::FileLock(FileLock&& o) noexcept : fd_(o.fd_), path_(std::move(o.path_)) { o.fd_ = -1; }

void FileLock::release() {
  if (fd_ < 0) return;
  if (::ftruncate(fd_, 0) != 0) log_debug("lock: cannot clear {}", path_.string());
  ::flock(fd_, LOCK_UN);
  ::close(fd_);
  fd_ = -1;
}

FileLock::~FileLock() { release(); }

}  // namespace meddiff
