#include "train/launch_env.h"

#include "core/error.h"
#include "pipeline/device.h"

#include <cstdlib>

namespace meddiff {
namespace {

int int_var(const std::function<const char*(const char*)>& get, const char* name, int lo, int hi) {
  const char* v = get(name);
  std::string s = v ? v : "";
  size_t used = 0;
  long n = 0;
  try {
    n = std::stol(s, &used);
  } catch (...) {
    used = 0;
  }
  if (s.empty() || used != s.size() || n < lo || n > hi)
    fail("environment: {}='{}' is not an integer in [{}, {}]", name, s, lo, hi);
  return static_cast<int>(n);
}

}  // namespace

std::string first_slurm_host(const std::string& nodelist) {
  std::string out;
  size_t i = 0;
  while (i < nodelist.size() && nodelist[i] != ',') {
    if (nodelist[i] == '[') {
      // the first entry of the range list, zero padding kept: [07-09,12] -> 07
      size_t end = nodelist.find(']', i);
      if (end == std::string::npos) fail("environment: SLURM_JOB_NODELIST='{}' has an unclosed '['", nodelist);
      std::string inner = nodelist.substr(i + 1, end - i - 1);
      out += inner.substr(0, inner.find_first_of(",-"));
      i = end + 1;
    } else {
      out += nodelist[i++];
    }
  }
  if (out.empty()) fail("environment: SLURM_JOB_NODELIST='{}' names no host", nodelist);
  return out;
}

LaunchEnv launch_env_from(const std::function<const char*(const char*)>& get) {
  LaunchEnv e;
  auto has = [&](const char* n) { return get(n) != nullptr && *get(n) != '\0'; };
  if (has("RANK") || has("WORLD_SIZE")) {
    for (const char* n : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"})
      if (!has(n))
        fail("environment: {} is set but {} is not (a data-parallel launch needs RANK, WORLD_SIZE, LOCAL_RANK, "
             "MASTER_ADDR and MASTER_PORT, as torchrun sets them)",
             has("RANK") ? "RANK" : "WORLD_SIZE", n);
    e.launcher = has("TORCHELASTIC_RUN_ID") ? "torchrun" : "environment";
    e.world_size = int_var(get, "WORLD_SIZE", 1, 1 << 20);
    e.rank = int_var(get, "RANK", 0, e.world_size - 1);
    e.local_rank = int_var(get, "LOCAL_RANK", 0, e.world_size - 1);
    e.master_addr = get("MASTER_ADDR");
    e.master_port = int_var(get, "MASTER_PORT", 1, 65535);
    e.agent_store = has("TORCHELASTIC_USE_AGENT_STORE") && std::string(get("TORCHELASTIC_USE_AGENT_STORE")) == "True";
    return e;
  }
  if (has("SLURM_PROCID") && has("SLURM_NTASKS")) {
    e.world_size = int_var(get, "SLURM_NTASKS", 1, 1 << 20);
    if (e.world_size == 1) return LaunchEnv{};  // one task: not a data-parallel job
    e.launcher = "slurm";
    e.rank = int_var(get, "SLURM_PROCID", 0, e.world_size - 1);
    e.local_rank = has("SLURM_LOCALID") ? int_var(get, "SLURM_LOCALID", 0, e.world_size - 1) : 0;
    if (has("MASTER_ADDR")) {
      e.master_addr = get("MASTER_ADDR");
    } else {
      if (!has("SLURM_JOB_NODELIST"))
        fail("environment: Slurm task {} of {} but neither MASTER_ADDR nor SLURM_JOB_NODELIST is set", e.rank, e.world_size);
      e.master_addr = first_slurm_host(get("SLURM_JOB_NODELIST"));
    }
    if (has("MASTER_PORT")) e.master_port = int_var(get, "MASTER_PORT", 1, 65535);
    else e.master_port = 20000 + (has("SLURM_JOB_ID") ? int_var(get, "SLURM_JOB_ID", 0, 2147483647) % 20000 : 0);
    return e;
  }
  return e;
}

torch::Device rank_device(const std::string& spec, const LaunchEnv& env) {
  if (!env.distributed()) return choose_device(spec);
  if (spec.rfind("cuda:", 0) == 0)
    fail("device '{}': in a job of {} ranks each rank uses the GPU LOCAL_RANK; give device auto or cuda", spec, env.world_size);
  torch::Device d = choose_device(spec);
  if (!d.is_cuda()) return d;
  int64_t n = static_cast<int64_t>(torch::cuda::device_count());
  if (env.local_rank >= n)
    fail("rank {}: LOCAL_RANK {} but this node has {} GPU(s); start at most {} processes per node", env.rank, env.local_rank, n, n);
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(env.local_rank));
}

LaunchEnv launch_env() {
  return launch_env_from([](const char* n) -> const char* { return std::getenv(n); });
}

}  // namespace meddiff
