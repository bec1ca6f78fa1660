#include "core/threads.h"

#include "core/error.h"
#include "core/error_text.h"
#include "core/progress.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <mutex>
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

void for_each_case(size_t n, const std::string& label, const std::string& what, size_t total,
                   const std::function<void(size_t)>& fn) {
  std::vector<std::string> errors(n);
  Progress progress(label, static_cast<int64_t>(n));
  std::mutex mu;
  int64_t done = 0;
  parallel_for(n, 0, [&](size_t i) {
    try {
      fn(i);
    } catch (const std::exception& e) {
      errors[i] = error_text(e);
    }
    std::lock_guard<std::mutex> g(mu);
    progress.update(++done);
  });
  progress.finish();
  std::vector<std::string> bad;
  for (const auto& e : errors)
    if (!e.empty()) bad.push_back(e);
  if (!bad.empty()) fail("{}: {} of {} cases cannot be used: {}", what, bad.size(), total, fmt::join(bad, "; "));
}

}  // namespace meddiff
