#include "core/threads.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <thread>
#include <vector>

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

namespace meddiff {

void parallel_for(size_t n, int workers, const std::function<void(size_t)>& fn) {
  if (workers <= 0) workers = cpu_threads() > 0 ? cpu_threads() : static_cast<int>(std::thread::hardware_concurrency());
  workers = std::max(1, std::min({workers, 8, static_cast<int>(std::max<size_t>(n, 1))}));
  if (workers == 1) {
    for (size_t i = 0; i < n; ++i) fn(i);
    return;
  }
  std::atomic<size_t> next{0};
  std::vector<std::thread> pool;
  for (int w = 0; w < workers; ++w)
    pool.emplace_back([&] {
      for (size_t i; (i = next.fetch_add(1)) < n;) fn(i);
    });
  for (auto& t : pool) t.join();
}

}  // namespace meddiff
