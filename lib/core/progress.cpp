#include "core/progress.h"

#include "core/log.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>

namespace meddiff {

std::string format_duration(double s) {
  if (!(s >= 0) || s > 1e8) return "?";
  auto t = static_cast<int64_t>(s + 0.5);
  if (t >= 3600) return fmt::format("{}h{:02}m", t / 3600, (t % 3600) / 60);
  if (t >= 60) return fmt::format("{}m{:02}s", t / 60, t % 60);
  return fmt::format("{}s", t);
}

Progress::Progress(std::string label, int64_t total, int64_t start, double interval_s)
    : label_(std::move(label)), total_(total), start_(start), done_(start), interval_s_(interval_s),
      tty_(isatty(STDERR_FILENO) != 0), t0_(std::chrono::steady_clock::now()), last_print_(t0_) {}

double Progress::elapsed_s() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
}

double Progress::rate() const {
  double e = elapsed_s();
  return e > 0 ? static_cast<double>(done_ - start_) / e : 0.0;
}

bool Progress::due() const {
  double since = std::chrono::duration<double>(std::chrono::steady_clock::now() - last_print_).count();
  return since >= (tty_ ? 0.2 : interval_s_);
}

void Progress::update(int64_t done, const std::string& fields) {
  done_ = done;
  if (!fields.empty()) fields_ = fields;
  if (due()) {
    last_print_ = std::chrono::steady_clock::now();
    print(false);
  }
}

void Progress::finish(const std::string& fields) {
  if (!fields.empty()) fields_ = fields;
  print(true);
}

void Progress::print(bool final) {
  if (log_level() > LogLevel::Info) return;
  double r = rate();
  double eta = r > 0 ? static_cast<double>(total_ - done_) / r : -1;
  std::string line = fmt::format("{} {}/{} ({:.0f}%) {:.2f} it/s {} {}{}{}", label_, done_, total_,
                                 total_ > 0 ? 100.0 * done_ / total_ : 100.0, r,
                                 final ? "took" : "ETA", format_duration(final ? elapsed_s() : eta),
                                 fields_.empty() ? "" : " | ", fields_);
  if (tty_) {
    std::fprintf(stderr, "\r\033[K%s%s", line.c_str(), final ? "\n" : "");
    std::fflush(stderr);
  } else {
    log_line(LogLevel::Info, line);
  }
}

}  // namespace meddiff
