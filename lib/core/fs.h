#pragma once
// Files written atomically and durably: the data goes to a temporary name beside the target, is
// flushed and fsync'ed, checked, and only then renamed over the target (and the folder fsync'ed).
// A crash, a full disk or an I/O error leaves either the old file or nothing, never half a file.
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace meddiff {

namespace fs = std::filesystem;

// A temporary path beside `target` that keeps the target's extension (so format-by-extension
// writers such as ITK still work): "dir/.name.tmp-HOST-PID-N.nii.gz". Removed (file or folder) on
// destruction unless commit() renamed it over the target.
class TempPath {
 public:
  explicit TempPath(const fs::path& target);
  ~TempPath();
  TempPath(const TempPath&) = delete;
  TempPath& operator=(const TempPath&) = delete;
  const fs::path& path() const { return tmp_; }
  const fs::path& target() const { return target_; }
  // fsync the temporary (every file of a temporary folder), rename it over the target (a file, or a
  // folder the caller has checked may be replaced) and fsync the target's folder.
  void commit();

 private:
  fs::path target_, tmp_;
  bool committed_ = false;
};

// True for names TempPath makes (".name.tmp-HOST-PID-N[.ext]").
bool is_temp_name(const std::string& filename);
// Removes temporaries in `dir` (not recursive) left by processes of this host that are no longer
// running; with `all`, every temporary (the caller holds the folder's lock). Returns how many.
int remove_stale_temps(const fs::path& dir, bool all = false);

// Calls write(tmp_path), then checks (optional `verify(tmp_path)`, which throws on a bad file),
// syncs and renames tmp_path over `target`. Creates missing parent folders.
void write_atomically(const fs::path& target, const std::function<void(const fs::path&)>& write,
                      const std::function<void(const fs::path&)>& verify = nullptr);
void write_text_atomically(const fs::path& target, const std::string& text);

// Files that appear together or not at all (e.g. an eval's eval.json, report.md and plots): each is
// written to its temporary when added; commit() renames them into place in the order they were added
// (add last the file that marks the set complete). Destroyed before commit(), or after a failed add,
// no target is touched and the temporaries are gone.
class StagedFiles {
 public:
  void add(const fs::path& target, const std::function<void(const fs::path& tmp)>& write);
  void add_text(const fs::path& target, const std::string& text);
  void commit();

 private:
  std::vector<std::unique_ptr<TempPath>> temps_;
};

// A file written with checked POSIX writes: ENOSPC, EIO and short writes are errors naming `what`
// (default: the path). finish() flushes (fsync) and closes; the destructor closes without flushing.
class CheckedFile {
 public:
  explicit CheckedFile(const fs::path& path, const std::string& what = "");
  ~CheckedFile();
  CheckedFile(const CheckedFile&) = delete;
  CheckedFile& operator=(const CheckedFile&) = delete;
  void write(const void* data, size_t size);
  void finish();

 private:
  int fd_ = -1;
  std::string what_;
};

// Writes all of `bytes` to `path` (a CheckedFile), then fsync.
void write_file_checked(const fs::path& path, const char* data, size_t size, const std::string& what = "");
inline void write_file_checked(const fs::path& path, const std::string& bytes, const std::string& what = "") {
  write_file_checked(path, bytes.data(), bytes.size(), what);
}
// Flushes a written file (or every file of a folder, then the folder) to the disk; errors name it.
void sync_path(const fs::path& path);

std::string read_text(const fs::path& path);

// "nii.gz"-aware lower-case extension without the dot: "a/b.NII.GZ" -> "nii.gz".
std::string full_extension(const fs::path& path);

// This machine's host name (for lock files and temporary names).
std::string host_name();
// Whether process `pid` is running on this host.
bool process_alive(long pid);

}  // namespace meddiff
