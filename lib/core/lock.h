#pragma once
// Exclusive locks between meddiff processes (two sampling jobs for one shard, two trainers in one
// folder). A lock is flock() on an open file, so the kernel drops it when its process ends: a killed
// job never leaves a lock that blocks the next one. The file records the holder (host, pid, start,
// purpose) for the message a second job gets. Where the file system has no flock (some network
// mounts), the recorded pid is checked instead: a holder on this host that is no longer running is
// taken over; one on another host is reported with the file to delete if that job is gone.
#include <filesystem>
#include <optional>
#include <string>

namespace meddiff {

class FileLock {
 public:
  struct Holder {
    std::string host, started, purpose;
    long pid = 0;
  };

  // Takes the lock, or throws an Error that names `what` (e.g. the output folder) and the holder.
  // With `wait`, blocks until the holder releases it (short critical sections).
  static FileLock acquire(const std::filesystem::path& path, const std::string& purpose, const std::string& what,
                          bool wait = false);
  // The lock if it is free now, else nullopt.
  static std::optional<FileLock> try_acquire(const std::filesystem::path& path, const std::string& purpose);
  // Who holds (or last held) the lock at `path`, from its file.
  static std::optional<Holder> holder(const std::filesystem::path& path);

  FileLock(FileLock&& o) noexcept;
  FileLock& operator=(FileLock&&) = delete;
  FileLock(const FileLock&) = delete;
  ~FileLock();
  // Release now (the destructor does the same).
  void release();

 private:
  FileLock(int fd, std::filesystem::path path) : fd_(fd), path_(std::move(path)) {}
  int fd_ = -1;
  std::filesystem::path path_;
};

}  // namespace meddiff
