// GDCM as Debian builds it keeps its assert()s: a DICOM file with a broken element structure (cut
// inside its header, garbage appended) aborts the whole process inside GDCM. Before any GDCM call
// on files a user gave, a child process parses each of them; if the child dies, the file it was on
// is reported as corrupt and the parent never touches it.
#include "core/error.h"
#include "io/dicom_series.h"
#include "io/itk_image.h"

#include <gdcmReader.h>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <string>

namespace meddiff::io {

std::string first_unparsable_dicom(const std::vector<std::string>& files) {
  if (files.empty()) return "";
  int fds[2];
  if (::pipe(fds) != 0) fail("cannot create a pipe to check DICOM files: {}", std::strerror(errno));
  std::fflush(nullptr);
  pid_t child = ::fork();
  if (child < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    fail("cannot start a process to check DICOM files: {}", std::strerror(errno));
  }
  if (child == 0) {
    ::close(fds[0]);
    int devnull = ::open("/dev/null", O_WRONLY);  // GDCM's assertion message is not for the user
    if (devnull >= 0) ::dup2(devnull, STDERR_FILENO);
    // Only GDCM runs here; silence it and report progress as the index of each file begun.
    register_io_factories();
    for (size_t i = 0; i < files.size(); ++i) {
      uint32_t idx = static_cast<uint32_t>(i);
      if (::write(fds[1], &idx, sizeof idx) != static_cast<ssize_t>(sizeof idx)) ::_exit(2);
      gdcm::Reader r;
      r.SetFileName(files[i].c_str());
      r.Read();  // failing is fine (not DICOM, truncated pixel data): only an abort matters here
    }
    ::_exit(0);
  }
  ::close(fds[1]);
  int64_t last = -1;
  uint32_t idx;
  ssize_t n;
  while ((n = ::read(fds[0], &idx, sizeof idx)) == static_cast<ssize_t>(sizeof idx)) last = idx;
  ::close(fds[0]);
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return "";
  if (last >= 0 && static_cast<size_t>(last) < files.size()) return files[static_cast<size_t>(last)];
  fail("cannot check the DICOM files (checker ended with status {})", status);
}

void check_dicom_parsable(const std::vector<std::string>& files) {
  std::string bad = first_unparsable_dicom(files);
  if (!bad.empty()) fail("{}: corrupt DICOM file (its data elements do not parse: cut short or garbage in it)", bad);
}

}  // namespace meddiff::io
