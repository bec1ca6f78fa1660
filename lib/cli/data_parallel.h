#pragma once
// Joining a data-parallel training job from the command line: the launcher's environment (torchrun,
// Slurm srun; see train/launch_env.h), --dist-backend and --dist-timeout, this rank's device, and the
// process group. Ranks other than 0 log warnings and errors only, tagged "[rank r/N]".
#include "cli/args.h"
#include "train/process_group.h"

#include <memory>

namespace meddiff::cli {

// --dist-backend, --dist-timeout
void add_dist_options(Args& a);

struct DataParallel {
  LaunchEnv env;
  torch::Device device{torch::kCPU};
  std::unique_ptr<ProcessGroup> group;  // null for one process
  Collectives* comm() const { return group.get(); }
};

// One process unless the environment says otherwise; `device_spec` is the config's device.
DataParallel join_data_parallel(const cxxopts::ParseResult& r, const std::string& device_spec);

}  // namespace meddiff::cli
