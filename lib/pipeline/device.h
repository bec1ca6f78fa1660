#pragma once
// Device and precision choice for training and sampling.
#include <torch/torch.h>

#include <string>

namespace meddiff {

// "auto" -> CUDA when available, else CPU; "cpu", "cuda", "cuda:N". Error if CUDA is asked for but absent.
torch::Device choose_device(const std::string& spec);
// bf16 autocast on CUDA for "auto" and "bf16"; fp32 on CPU.
bool use_bf16(const std::string& precision, const torch::Device& d);

// Turns CUDA bf16 autocast on for its lifetime (no-op when `enabled` is false).
class AutocastGuard {
 public:
  explicit AutocastGuard(bool enabled);
  ~AutocastGuard();

 private:
  bool enabled_, prev_ = false;
};

// Waits for the work queued on `d` (no-op on the CPU): for timings.
void synchronize(const torch::Device& d);
// Peak memory allocated by the CUDA caching allocator on `d` since the start or the last reset (MiB);
// 0 on the CPU.
double peak_device_mib(const torch::Device& d);
void reset_peak_device_memory(const torch::Device& d);

// Peak resident memory of this process (MiB), from /proc/self/status VmHWM.
double peak_rss_mib();
// Resident memory now (MiB), VmRSS.
double current_rss_mib();
// Starts a new peak: returns freed heap memory to the system (malloc_trim) and resets VmHWM through
// /proc/self/clear_refs. False where the kernel does not allow the reset (the peak then stays the
// process's peak so far).
bool reset_peak_rss();

}  // namespace meddiff
