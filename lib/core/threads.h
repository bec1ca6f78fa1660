#pragma once
// CPU threads for LibTorch's intra-op pool (and, through lib/io, ITK's filters): `--threads N` on
// every command. Without it, the libraries' defaults apply (every core, or OMP_NUM_THREADS).
namespace meddiff {

void set_cpu_threads(int n);  // n >= 1
int cpu_threads();            // the number set, or 0 when --threads was not given

}  // namespace meddiff

#include <cstddef>
#include <functional>

namespace meddiff {

// Runs fn(0), ..., fn(n - 1) on `workers` threads (0: cpu_threads(), else the hardware's, at most 8), each index
// once. fn must not throw (catch inside and record): an escaping exception ends the program.
void parallel_for(size_t n, int workers, const std::function<void(size_t)>& fn);

}  // namespace meddiff
