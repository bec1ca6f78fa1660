#include "pipeline/device.h"

#include "core/error.h"

#include <ATen/autocast_mode.h>

#include <malloc.h>

#include <fstream>

#ifdef MEDDIFF_HAVE_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

namespace meddiff {

torch::Device choose_device(const std::string& spec) {
  if (spec == "auto") return torch::cuda::is_available() ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);
  if (spec == "cpu") return torch::Device(torch::kCPU);
  if (!torch::cuda::is_available()) fail("device '{}' asked for, but no CUDA device is available", spec);
  torch::Device d(spec);
  if (d.index() >= static_cast<int>(torch::cuda::device_count())) fail("device '{}' does not exist", spec);
  return d;
}

bool use_bf16(const std::string& precision, const torch::Device& d) {
  return d.is_cuda() && (precision == "auto" || precision == "bf16");
}

AutocastGuard::AutocastGuard(bool enabled) : enabled_(enabled) {
  if (!enabled_) return;
  prev_ = at::autocast::is_autocast_enabled(at::kCUDA);
  at::autocast::set_autocast_enabled(at::kCUDA, true);
  at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
}

AutocastGuard::~AutocastGuard() {
  if (!enabled_) return;
  at::autocast::set_autocast_enabled(at::kCUDA, prev_);
  at::autocast::clear_cache();
}

void synchronize(const torch::Device& d) {
  if (d.is_cuda()) torch::cuda::synchronize(d.index());
}

double peak_device_mib(const torch::Device& d) {
#ifdef MEDDIFF_HAVE_CUDA
  if (d.is_cuda()) {
    auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(d.index() < 0 ? 0 : d.index());
    return static_cast<double>(stats.allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)].peak) /
           (1024.0 * 1024.0);
  }
#endif
  (void)d;
  return 0;
}

void reset_peak_device_memory(const torch::Device& d) {
#ifdef MEDDIFF_HAVE_CUDA
  if (d.is_cuda()) c10::cuda::CUDACachingAllocator::resetPeakStats(d.index() < 0 ? 0 : d.index());
#endif
  (void)d;
}

namespace {
double status_mib(const char* key) {
  std::ifstream f("/proc/self/status");
  std::string line;
  const std::string k(key);
  while (std::getline(f, line))
    if (line.rfind(k, 0) == 0) return std::stod(line.substr(k.size())) / 1024.0;
  return 0;
}
}  // namespace

double peak_rss_mib() { return status_mib("VmHWM:"); }
double current_rss_mib() { return status_mib("VmRSS:"); }

bool reset_peak_rss() {
  malloc_trim(0);
  std::ofstream f("/proc/self/clear_refs");
  f << "5";
  f.close();
  return static_cast<bool>(f);
}

}  // namespace meddiff
