#include "cli/data_parallel.h"

#include "core/log.h"
#include "pipeline/device.h"

namespace meddiff::cli {

void add_dist_options(Args& a) {
  a.add()("dist-backend", "Data-parallel backend under torchrun or srun: auto (NCCL on GPUs, Gloo on CPUs), gloo, nccl",
          cxxopts::value<std::string>()->default_value("auto"))
      ("dist-timeout", "Seconds a rank waits for the others (rendezvous and every exchange) before the job ends with an error",
       cxxopts::value<int>()->default_value("600"));
}

DataParallel join_data_parallel(const cxxopts::ParseResult& r, const std::string& device_spec) {
  DataParallel dp;
  dp.env = launch_env();
  DistOptions o;
  o.backend = r["dist-backend"].as<std::string>();
  o.timeout_s = r["dist-timeout"].as<int>();
  check_dist_options(o);
  dp.device = rank_device(device_spec, dp.env);
  if (!dp.env.distributed()) return dp;
  if (dp.env.rank > 0) {
    set_log_tag(fmt::format("[rank {}/{}] ", dp.env.rank, dp.env.world_size));
    if (log_level() < LogLevel::Warn) set_log_level(LogLevel::Warn);
  }
  dp.group = ProcessGroup::connect(dp.env, o, dp.device);
  log_info("data-parallel: {} ranks ({}, {}), rendezvous {}:{}; this rank on {}", dp.env.world_size, dp.env.launcher,
           dp.group->backend(), dp.env.master_addr, dp.env.master_port, dp.device.str());
  return dp;
}

}  // namespace meddiff::cli
