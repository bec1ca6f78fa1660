// DICOM trees: every file below a folder (patient / study / series folders, or a flat dump with cryptic names),
// grouped into series by SeriesInstanceUID, one case per series that passes data.source.dicom's rules.
// Headers only: GDCM reads each file up to (0028,0011), in child processes (one per core), so a file that aborts
// GDCM (Debian's build keeps its asserts) is reported as unreadable instead of ending meddiff, and the scan runs in
// parallel. Files that are not DICOM (no "DICM" at byte 128 and not parsable) are skipped without a word.
#include "core/error.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/text.h"
#include "core/threads.h"
#include "data/manifest.h"
#include "io/dataset_index.h"

#include <gdcmReader.h>
#include <gdcmStringFilter.h>

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

namespace meddiff::io {
namespace {

namespace fs = std::filesystem;

// The header fields read per file, in this order.
const gdcm::Tag kTags[] = {
    {0x0008, 0x0008},  // ImageType
    {0x0008, 0x0016},  // SOPClassUID
    {0x0008, 0x0060},  // Modality
    {0x0008, 0x103e},  // SeriesDescription
    {0x0020, 0x000d},  // StudyInstanceUID
    {0x0020, 0x000e},  // SeriesInstanceUID
    {0x0020, 0x0011},  // SeriesNumber
    {0x0020, 0x0037},  // ImageOrientationPatient
    {0x0028, 0x0008},  // NumberOfFrames
    {0x0028, 0x0010},  // Rows
    {0x0028, 0x0011},  // Columns
};
constexpr size_t kFields = sizeof(kTags) / sizeof(kTags[0]);
enum Field { fImageType, fSopClass, fModality, fDescription, fStudy, fSeries, fSeriesNumber, fOrientation, fFrames, fRows, fColumns };

struct FileHeader {
  size_t file = 0;  // index into the scanned file list
  std::array<std::string, kFields> v;
};

std::string clean(std::string s) {
  for (auto& c : s)
    if (c == '\n' || c == '\t' || c == '\0' || c == '\x1f') c = ' ';
  while (!s.empty() && s.back() == ' ') s.pop_back();
  size_t b = s.find_first_not_of(' ');
  return b == std::string::npos ? "" : s.substr(b);
}

bool has_dicm_magic(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  char buf[132];
  if (!in.read(buf, 132)) return false;
  return std::memcmp(buf + 128, "DICM", 4) == 0;
}

// Child side: one line per file from `begin`: "index\x1fok\x1fvalues..." or "index\x1fno".
void scan_in_child(const std::vector<std::string>& files, size_t begin, size_t end, int fd) {
  std::set<gdcm::Tag> tags(std::begin(kTags), std::end(kTags));
  std::string buf;
  auto flush = [&] {
    size_t off = 0;
    while (off < buf.size()) {
      ssize_t n = ::write(fd, buf.data() + off, buf.size() - off);
      if (n <= 0) ::_exit(3);
      off += static_cast<size_t>(n);
    }
    buf.clear();
  };
  for (size_t i = begin; i < end; ++i) {
    gdcm::Reader r;
    r.SetFileName(files[i].c_str());
    std::string line = std::to_string(i);
    if (r.ReadSelectedTags(tags)) {
      gdcm::StringFilter sf;
      sf.SetFile(r.GetFile());
      line += "\x1fok";
      for (const auto& t : kTags) line += "\x1f" + clean(r.GetFile().GetDataSet().FindDataElement(t) ? sf.ToString(t) : "");
    } else {
      line += "\x1fno";
    }
    buf += line + "\n";
    flush();  // each line as soon as it is known: a crash on the next file leaves this one reported
  }
  ::_exit(0);
}

struct Child {
  pid_t pid = -1;
  int fd = -1;
  size_t next = 0, end = 0;  // the next file it has not reported, one past its last
  std::string pending;
};

Child start_child(const std::vector<std::string>& files, size_t begin, size_t end) {
  int fds[2];
  if (::pipe(fds) != 0) fail("cannot create a pipe to scan DICOM files: {}", std::strerror(errno));
  std::fflush(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) fail("cannot start a process to scan DICOM files: {}", std::strerror(errno));
  if (pid == 0) {
    ::close(fds[0]);
    // GDCM's warnings and assertion messages are not for the user, and a crash ends this process only: the
    // default actions, not the handlers the program installed (a test framework's, LibTorch's)
    int devnull = ::open("/dev/null", O_WRONLY);
    if (devnull >= 0) {
      ::dup2(devnull, STDERR_FILENO);
      ::dup2(devnull, STDOUT_FILENO);
    }
    for (int sig : {SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL}) std::signal(sig, SIG_DFL);
    scan_in_child(files, begin, end, fds[1]);
  }
  ::close(fds[1]);
  return {pid, fds[0], begin, end, ""};
}

// Headers of every file that GDCM parses; `unreadable` gets the DICOM-looking files it cannot.
std::vector<FileHeader> scan_headers(const std::vector<std::string>& files, std::vector<std::string>& unreadable) {
  std::vector<FileHeader> out;
  if (files.empty()) return out;
  size_t workers = std::max<size_t>(1, std::min<size_t>(files.size() / 64 + 1,
                                                        cpu_threads() > 0 ? static_cast<size_t>(cpu_threads())
                                                                          : std::max(1u, std::thread::hardware_concurrency())));
  Progress progress("scanning DICOM headers", static_cast<int64_t>(files.size()));
  std::vector<Child> children;
  for (size_t w = 0; w < workers; ++w) {
    size_t b = files.size() * w / workers, e = files.size() * (w + 1) / workers;
    if (b < e) children.push_back(start_child(files, b, e));
  }
  size_t done = 0;
  auto record = [&](size_t i, bool parsed, const std::vector<std::string>& cells) {
    ++done;
    if (parsed && cells.size() == kFields + 2) {
      FileHeader h;
      h.file = i;
      for (size_t k = 0; k < kFields; ++k) h.v[k] = cells[k + 2];
      out.push_back(std::move(h));
    } else if (has_dicm_magic(files[i])) {
      unreadable.push_back(files[i]);
    }
  };
  while (!children.empty()) {
    std::vector<pollfd> fds;
    for (const auto& c : children) fds.push_back({c.fd, POLLIN, 0});
    if (::poll(fds.data(), fds.size(), -1) < 0 && errno != EINTR) fail("scanning DICOM files: poll failed: {}", std::strerror(errno));
    for (size_t k = children.size(); k-- > 0;) {
      if (!(fds[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      Child& c = children[k];
      char buf[65536];
      ssize_t n = ::read(c.fd, buf, sizeof buf);
      if (n > 0) {
        c.pending.append(buf, static_cast<size_t>(n));
        size_t nl;
        while ((nl = c.pending.find('\n')) != std::string::npos) {
          std::string line = c.pending.substr(0, nl);
          c.pending.erase(0, nl + 1);
          std::vector<std::string> cells;
          std::stringstream ss(line);
          std::string cell;
          while (std::getline(ss, cell, '\x1f')) cells.push_back(cell);
          while (cells.size() < kFields + 2 && cells.size() >= 2 && cells[1] == "ok") cells.push_back("");
          size_t i = std::stoull(cells.at(0));
          record(i, cells.size() > 1 && cells[1] == "ok", cells);
          c.next = i + 1;
        }
        progress.update(static_cast<int64_t>(done));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      // end of the child's output: finished, or died on file c.next
      ::close(c.fd);
      int status = 0;
      ::waitpid(c.pid, &status, 0);
      size_t next = c.next, end = c.end;
      children.erase(children.begin() + static_cast<std::ptrdiff_t>(k));
      if (next < end) {
        record(next, false, {});  // the file it died on
        if (next + 1 < end) children.push_back(start_child(files, next + 1, end));
      }
    }
  }
  progress.finish();
  std::sort(out.begin(), out.end(), [](const FileHeader& a, const FileHeader& b) { return a.file < b.file; });
  std::sort(unreadable.begin(), unreadable.end());
  return out;
}

bool is_localizer(const std::string& image_type, const std::string& description) {
  for (const char* w : {"LOCALIZER", "SCOUT"})
    if (image_type.find(w) != std::string::npos) return true;
  for (const char* w : {"LOCALIZER", "LOCALISER", "SCOUT", "TOPOGRAM", "SURVEY", "SCANOGRAM", "SURVIEW"})
    if (description.find(w) != std::string::npos) return true;
  return false;
}

struct SeriesGroup {
  std::string uid;
  std::vector<size_t> files;  // indices into the headers
  std::set<fs::path> folders;
  std::set<std::string> sizes, orientations;
  int64_t frames = 1;
};

class DicomTreeSource : public DatasetSource {
 public:
  std::string layout() const override { return "DICOM tree"; }
  bool recognises(const fs::path& path) const override { return fs::is_directory(path); }
  Manifest index(const fs::path& root, const SourceParams& p, IndexReport& report) const override {
    std::vector<std::string> files;
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(root, fs::directory_options::skip_permission_denied, ec);
         it != fs::recursive_directory_iterator(); it.increment(ec)) {
      if (ec) break;
      if (it->is_regular_file(ec)) files.push_back(it->path().string());
    }
    std::sort(files.begin(), files.end());
    auto headers = scan_headers(files, report.unreadable);
    std::map<std::string, SeriesGroup> series;
    for (size_t h = 0; h < headers.size(); ++h) {
      const auto& v = headers[h].v;
      if (v[fSeries].empty()) continue;  // DICOMDIR and other non-image objects
      auto& s = series[v[fSeries]];
      s.uid = v[fSeries];
      s.files.push_back(h);
      s.folders.insert(fs::path(files[headers[h].file]).parent_path());
      s.sizes.insert(v[fRows] + "x" + v[fColumns]);
      s.orientations.insert(v[fOrientation]);
      if (!v[fFrames].empty()) s.frames = std::max<int64_t>(s.frames, std::atoll(v[fFrames].c_str()));
    }
    const auto& rules = p.dicom;
    Manifest m;
    m.source = root.string();
    m.layout = layout();
    struct Kept {
      const SeriesGroup* s;
      std::string study;
    };
    std::vector<Kept> kept;
    for (const auto& [uid, s] : series) {
      const auto& first = headers[s.files.front()].v;
      const std::string where = fmt::format("{} (series {} '{}', {} {} file(s))", fs::relative(*s.folders.begin(), root).string(),
                                            first[fSeriesNumber], first[fDescription], s.files.size(), first[fModality]);
      const std::string type = to_upper(first[fImageType]), desc = to_upper(first[fDescription]);
      std::string why;
      if (!rules.modality.empty() &&
          std::none_of(rules.modality.begin(), rules.modality.end(), [&](const std::string& x) { return to_upper(x) == to_upper(first[fModality]); }))
        why = fmt::format("modality {} is not one of {}", first[fModality].empty() ? "(none)" : first[fModality], fmt::join(rules.modality, ", "));
      else if (!rules.keep_localizers && is_localizer(type, desc))
        why = "a localiser / scout (data.source.dicom.keep_localizers keeps it)";
      else if (!rules.keep_derived && (first[fSopClass].rfind("1.2.840.10008.5.1.4.1.1.7", 0) == 0 ||
                                       (type.rfind("DERIVED", 0) == 0 && type.find("SECONDARY") != std::string::npos)))
        why = "a derived secondary capture (data.source.dicom.keep_derived keeps it)";
      else if (!rules.series_description.empty() && !wildcard_match(to_upper(rules.series_description), desc))
        why = fmt::format("description '{}' does not match '{}'", first[fDescription], rules.series_description);
      else if (!rules.image_type.empty() && !wildcard_match(to_upper(rules.image_type), type))
        why = fmt::format("image type '{}' does not match '{}'", first[fImageType], rules.image_type);
      else if (s.frames > 1)
        why = fmt::format("multi-frame ({} frames per file): meddiff reads one slice per file", s.frames);
      else if (static_cast<int64_t>(s.files.size()) < rules.min_slices)
        why = fmt::format("{} slice(s), fewer than data.source.dicom.min_slices = {}", s.files.size(), rules.min_slices);
      else if (s.folders.size() > 1)
        why = fmt::format("its files are in {} folders; meddiff reads a series from one folder", s.folders.size());
      else if (s.sizes.size() > 1)
        why = fmt::format("slices of different sizes ({})", fmt::join(s.sizes, ", "));
      else if (s.orientations.size() > 1)
        why = "slices of different orientations";
      if (!why.empty()) {
        report.skipped.push_back(fmt::format("{}: {}", where, why));
        continue;
      }
      kept.push_back({&s, first[fStudy]});
    }
    if (rules.per_study == "most_slices") {
      std::map<std::string, const SeriesGroup*> best;
      for (const auto& k : kept) {
        auto& b = best[k.study];
        if (!b || k.s->files.size() > b->files.size()) b = k.s;
      }
      std::vector<Kept> one;
      for (const auto& k : kept) {
        const SeriesGroup* b = best[k.study];
        if (b == k.s) one.push_back(k);
        else
          report.skipped.push_back(fmt::format("{} (series {}): not the largest series of its study ({} slices, the kept one {})",
                                               fs::relative(*k.s->folders.begin(), root).string(),
                                               headers[k.s->files.front()].v[fSeriesNumber], k.s->files.size(), b->files.size()));
      }
      kept = one;
    }
    std::map<fs::path, int> per_folder;
    for (const auto& k : kept) ++per_folder[*k.s->folders.begin()];
    for (const auto& k : kept) {
      const auto& first = headers[k.s->files.front()].v;
      const fs::path folder = *k.s->folders.begin();
      std::string id = fs::relative(folder, root).generic_string();
      if (id == ".") id = root.filename().string();
      std::replace(id.begin(), id.end(), '/', '_');
      if (per_folder[folder] > 1) id += "_S" + (first[fSeriesNumber].empty() ? k.s->uid.substr(k.s->uid.size() - 6) : first[fSeriesNumber]);
      ManifestEntry e;
      e.id = id;
      e.image = folder;
      e.channels = {ChannelFile{folder, -1, per_folder[folder] > 1 ? k.s->uid : ""}};
      e.info = fmt::format("{} {} slices, {}x{}, '{}'", first[fModality], k.s->files.size(), first[fColumns], first[fRows], first[fDescription]);
      m.entries.push_back(e);
    }
    std::sort(m.entries.begin(), m.entries.end(), [](const ManifestEntry& a, const ManifestEntry& b) { return a.id < b.id; });
    return m;
  }
};

}  // namespace

std::unique_ptr<DatasetSource> make_dicom_tree_source() { return std::make_unique<DicomTreeSource>(); }

}  // namespace meddiff::io
