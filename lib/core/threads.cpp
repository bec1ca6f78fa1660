#include "core/threads.h"

#include <ATen/Parallel.h>

#include <atomic>

namespace meddiff {
namespace {
std::atomic<int> g_threads{0};
}

void set_cpu_threads(int n) {
  g_threads = n;
  at::set_num_threads(n);
}

int cpu_threads() { return g_threads.load(); }

}  // namespace meddiff
