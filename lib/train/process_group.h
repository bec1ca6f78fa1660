#pragma once
// The data-parallel process group of a training job, over LibTorch's c10d: a TCPStore rendezvous at
// MASTER_ADDR:MASTER_PORT (rank 0 serves it), then ProcessGroupGloo (CPU tensors) or ProcessGroupNCCL
// (CUDA tensors; each rank on device LOCAL_RANK). No transport of meddiff's own.
//
// Failure: every collective has the job's timeout (--dist-timeout). When another rank exits, hangs or
// cannot be reached, the call fails with one line naming this rank, the operation and the timeout;
// nothing waits forever.
#include "core/collectives.h"
#include "train/launch_env.h"

#include <memory>
#include <string>

namespace meddiff {

struct DistOptions {
  std::string backend = "auto";  // auto (NCCL on CUDA, Gloo on the CPU), gloo or nccl
  int timeout_s = 600;           // rendezvous and every collective
};

class ProcessGroup : public Collectives {
 public:
  // Connects to the other ranks; `device` is where this rank's tensors live.
  static std::unique_ptr<ProcessGroup> connect(const LaunchEnv& env, const DistOptions& opt, const torch::Device& device);
  ~ProcessGroup() override;

  int rank() const override { return env_.rank; }
  int world_size() const override { return env_.world_size; }
  void all_reduce_sum(std::vector<torch::Tensor>& tensors) override;
  void all_reduce_max(torch::Tensor& t) override;
  torch::Tensor all_gather_rows(const torch::Tensor& t) override;
  void broadcast(std::vector<torch::Tensor>& tensors, int root) override;
  void barrier() override;
  const std::string& backend() const { return backend_; }

 private:
  struct Impl;
  ProcessGroup(LaunchEnv env, DistOptions opt, std::string backend, std::unique_ptr<Impl> impl);
  void reduce_flat(std::vector<torch::Tensor>& tensors, bool max);
  LaunchEnv env_;
  DistOptions opt_;
  std::string backend_;
  std::unique_ptr<Impl> impl_;
};

// Usage errors for a bad backend name or timeout.
void check_dist_options(const DistOptions& o);

// Backends compiled into this build ("gloo", "nccl").
std::vector<std::string> available_backends();

}  // namespace meddiff
