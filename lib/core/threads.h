#pragma once
// CPU threads for LibTorch's intra-op pool (and, through lib/io, ITK's filters): `--threads N` on
// every command. Without it, the libraries' defaults apply (every core, or OMP_NUM_THREADS).
namespace meddiff {

void set_cpu_threads(int n);  // n >= 1
int cpu_threads();            // the number set, or 0 when --threads was not given

}  // namespace meddiff

#include <cstddef>
#include <functional>
#include <string>

namespace meddiff {

// Runs fn(0), ..., fn(n - 1) on `workers` threads (0: cpu_threads(), else the hardware's, at most 8), each index
// once. fn must not throw (catch inside and record): an escaping exception ends the program.
void parallel_for(size_t n, int workers, const std::function<void(size_t)>& fn);

// fn(0), ..., fn(n - 1) on parallel_for's threads under a progress line `label`; what fn(i) throws becomes one
// line (error_text), and when any failed, one Error "<what>: <failed> of <total> cases cannot be used: a; b; ...".
void for_each_case(size_t n, const std::string& label, const std::string& what, size_t total,
                   const std::function<void(size_t)>& fn);

}  // namespace meddiff
