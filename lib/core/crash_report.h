#pragma once
// A process that dies of a fatal signal (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT) first writes one line
// to stderr naming the signal and the step it was in, then a raw backtrace, and then ends by the same
// signal as before (exit status and core dump unchanged; should the report itself block, SIGALRM ends the
// process after 5 s). A crash inside a library (LibTorch's c10d,
// Gloo, ITK) then says where it happened instead of only "Segmentation fault".
#include <string>

namespace meddiff {

// Installs the handlers (again, if something replaced them since).
void install_crash_report();

// Names the step a crash line reports while this object lives ("connecting the gloo process group,
// rank 0 of 2"); the previous step comes back when it ends.
class CrashStep {
 public:
  explicit CrashStep(const std::string& what);
  ~CrashStep();
  CrashStep(const CrashStep&) = delete;
  CrashStep& operator=(const CrashStep&) = delete;

 private:
  std::string previous_;
};

}  // namespace meddiff
