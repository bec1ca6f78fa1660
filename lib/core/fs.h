#pragma once
// Files written atomically: the data goes to a temporary name beside the target, which is renamed
// over the target only when complete. A crash leaves either the old file or the new one, never half.
#include <filesystem>
#include <functional>
#include <string>

namespace meddiff {

namespace fs = std::filesystem;

// A temporary path beside `target` that keeps the target's extension (so format-by-extension
// writers such as ITK still work): "dir/.name.tmp-PID-N.nii.gz". Removed on destruction unless
// commit() renamed it over the target.
class TempPath {
 public:
  explicit TempPath(const fs::path& target);
  ~TempPath();
  TempPath(const TempPath&) = delete;
  TempPath& operator=(const TempPath&) = delete;
  const fs::path& path() const { return tmp_; }
  const fs::path& target() const { return target_; }
  void commit();  // rename tmp -> target (replacing a file, or an empty/absent folder)

 private:
  fs::path target_, tmp_;
  bool committed_ = false;
};

// Calls write(tmp_path) then renames tmp_path over `target`.
void write_atomically(const fs::path& target, const std::function<void(const fs::path&)>& write);
void write_text_atomically(const fs::path& target, const std::string& text);
std::string read_text(const fs::path& path);

// "nii.gz"-aware lower-case extension without the dot: "a/b.NII.GZ" -> "nii.gz".
std::string full_extension(const fs::path& path);

}  // namespace meddiff
