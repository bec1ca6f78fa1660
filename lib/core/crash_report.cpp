#include "core/crash_report.h"

#include <execinfo.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <mutex>

namespace meddiff {
namespace {

// The step text lives in fixed storage the handler can read without allocating.
constexpr size_t kStepBytes = 256;
char g_step[kStepBytes] = "";
std::mutex g_step_mutex;

void put(const char* s) {
  size_t n = std::strlen(s);
  while (n > 0) {
    ssize_t w = ::write(STDERR_FILENO, s, n);
    if (w <= 0) return;
    s += w;
    n -= static_cast<size_t>(w);
  }
}

const char* signal_name(int sig) {
  switch (sig) {
    case SIGSEGV: return "SIGSEGV (invalid memory access)";
    case SIGBUS: return "SIGBUS (bus error)";
    case SIGFPE: return "SIGFPE (arithmetic error)";
    case SIGILL: return "SIGILL (illegal instruction)";
    case SIGABRT: return "SIGABRT (aborted)";
    default: return "a fatal signal";
  }
}

void on_fatal_signal(int sig) {
  // SA_RESETHAND has restored the default action: raising the signal again ends the process by it. The
  // report must never keep a dying process alive: should the unwinder block (a lock the crashed code held),
  // SIGALRM's default action ends the process after a few seconds.
  ::alarm(5);
  put("meddiff: fatal signal ");
  put(signal_name(sig));
  if (g_step[0] != '\0') {
    put(" while ");
    put(g_step);
  }
  put("; backtrace follows\n");
  void* frames[64];
  int n = ::backtrace(frames, 64);
  ::backtrace_symbols_fd(frames, n, STDERR_FILENO);
  ::raise(sig);
}

void set_step(const std::string& s) {
  std::lock_guard<std::mutex> lock(g_step_mutex);
  size_t n = std::min(s.size(), kStepBytes - 1);
  // The terminator first, so a handler running meanwhile never reads past the buffer.
  g_step[n] = '\0';
  std::memcpy(g_step, s.data(), n);
}

}  // namespace

void install_crash_report() {
  static std::once_flag once;
  std::call_once(once, [] {
    void* warm[1];
    ::backtrace(warm, 1);  // loads the unwinder now, not inside the handler
  });
  struct sigaction sa {};
  sa.sa_handler = on_fatal_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESETHAND | SA_NODEFER;
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) ::sigaction(sig, &sa, nullptr);
}

CrashStep::CrashStep(const std::string& what) {
  {
    std::lock_guard<std::mutex> lock(g_step_mutex);
    previous_ = g_step;
  }
  set_step(what);
}

CrashStep::~CrashStep() { set_step(previous_); }

}  // namespace meddiff
