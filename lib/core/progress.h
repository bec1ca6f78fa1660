#pragma once
// A progress line for long work: count, rate, ETA and free-form fields (losses). On a terminal it
// redraws one line; otherwise (logs, CI) it prints a line at most every `interval_s` seconds.
#include <chrono>
#include <cstdint>
#include <string>

namespace meddiff {

class Progress {
 public:
  Progress(std::string label, int64_t total, int64_t start = 0, double interval_s = 10.0);
  // Advance to `done` units; `fields` is appended to the line (e.g. "loss 0.123").
  void update(int64_t done, const std::string& fields = "");
  void finish(const std::string& fields = "");
  // Whether the next update() prints: callers build costly fields (values read from a GPU) only then.
  bool due() const;
  double rate() const;         // units per second since construction
  double elapsed_s() const;

 private:
  void print(bool final);
  std::string label_;
  int64_t total_, start_, done_;
  double interval_s_;
  bool tty_;
  std::string fields_;
  std::chrono::steady_clock::time_point t0_, last_print_;
};

std::string format_duration(double seconds);

}  // namespace meddiff
