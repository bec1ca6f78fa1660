#pragma once
// Where this process stands in a data-parallel job, read from the environment its launcher sets:
//   torchrun:  RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT
//   Slurm srun: SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID; the rendezvous host is MASTER_ADDR when set,
//              else the first host of SLURM_JOB_NODELIST; the port MASTER_PORT when set, else
//              20000 + SLURM_JOB_ID mod 20000 (one port per job, so two jobs on a node do not meet).
// Neither: one process (rank 0 of 1). A partial or inconsistent environment is one clear error.
#include <torch/torch.h>

#include <functional>
#include <string>

namespace meddiff {

struct LaunchEnv {
  int rank = 0, world_size = 1, local_rank = 0;
  std::string master_addr;
  int master_port = 0;
  std::string launcher = "none";  // "none", "torchrun", "environment" (RANK etc. set by hand) or "slurm"
  bool agent_store = false;       // torchrun's agent already serves the store (TORCHELASTIC_USE_AGENT_STORE)
  bool distributed() const { return world_size > 1; }
};

// `get` returns a variable's value or nullptr (std::getenv, or a table in tests).
LaunchEnv launch_env_from(const std::function<const char*(const char*)>& get);
LaunchEnv launch_env();

// The device of this rank: "auto"/"cuda" -> cuda:LOCAL_RANK when CUDA is present (an explicit
// "cuda:N" is an error in a job of several ranks: each rank takes its own device); else the CPU.
torch::Device rank_device(const std::string& spec, const LaunchEnv& env);

// The first host of a Slurm node list: "gpu[07-09,12],cpu1" -> "gpu07"; "n1,n2" -> "n1".
std::string first_slurm_host(const std::string& nodelist);

}  // namespace meddiff
