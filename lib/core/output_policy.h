#pragma once
// The one output policy of every command (README: "What meddiff will never do to your files"):
//   - an output is never an input, never inside an input folder and never a folder that holds an input;
//   - a folder output is never the current folder, one of its parents or the root;
//   - an existing file is replaced only with --force; an existing non-empty folder only with --force
//     and only when it holds nothing but what meddiff wrote there (the caller says what that is:
//     e.g. one DICOM series written by meddiff);
//   - nothing is written in place: outputs go to a temporary name, are synced, checked and renamed
//     (core/fs.h).
// Commands call check_output() before any work, so a refused output costs nothing.
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace meddiff {

struct OutputRules {
  std::vector<std::filesystem::path> inputs;  // files and folders the command reads
  bool force = false;                         // --force: replace an existing output
  bool folder = false;                        // the output is a folder (a DICOM series, a sample job)
  // For folder outputs: "" when an existing folder holds only what meddiff wrote there (so --force may
  // replace it), else the first thing it holds that meddiff did not write, e.g. "'notes.txt'".
  std::function<std::string(const std::filesystem::path&)> foreign_entry;
  std::string owned_what = "what meddiff wrote";  // for the message: "a DICOM series written by meddiff"
};

// Throws an Error naming `out` and the rule it breaks.
void check_output(const std::filesystem::path& out, const OutputRules& rules);

// OUT and IN name the same file or folder, or OUT lies inside the folder IN (or IN inside OUT).
bool same_or_nested(const std::filesystem::path& a, const std::filesystem::path& b);
// `inner` is `outer` or lies inside it (after resolving '.', '..' and symbolic links).
bool is_within(const std::filesystem::path& inner, const std::filesystem::path& outer);

}  // namespace meddiff
