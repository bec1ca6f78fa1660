#pragma once
// CPU threads for LibTorch's intra-op pool (and, through lib/io, ITK's filters): `--threads N` on
// every command. Without it, the libraries' defaults apply (every core, or OMP_NUM_THREADS).
namespace meddiff {

void set_cpu_threads(int n);  // n >= 1
int cpu_threads();            // the number set, or 0 when --threads was not given

}  // namespace meddiff
