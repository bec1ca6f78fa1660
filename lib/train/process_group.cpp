#include "train/process_group.h"

#include "core/crash_report.h"
#include "core/error.h"
#include "pipeline/device.h"
#include "train/listener_probe.h"

#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef MEDDIFF_WITH_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#ifdef MEDDIFF_WITH_NCCL
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <algorithm>

namespace meddiff {

struct ProcessGroup::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> backend;
};

namespace {

std::string first_line(const std::exception& e) {
  std::string m;
  if (auto* ce = dynamic_cast<const c10::Error*>(&e)) m = ce->what_without_backtrace();
  else m = e.what();
  m = m.substr(0, m.find('\n'));
  return m.size() > 300 ? m.substr(0, 300) + "..." : m;
}

}  // namespace

void check_dist_options(const DistOptions& o) {
  if (o.backend != "auto" && o.backend != "gloo" && o.backend != "nccl")
    usage_fail("--dist-backend must be auto, gloo or nccl (got '{}')", o.backend);
  if (o.timeout_s < 1) usage_fail("--dist-timeout must be at least 1 second (got {})", o.timeout_s);
}

std::vector<std::string> available_backends() {
  std::vector<std::string> b;
#ifdef MEDDIFF_WITH_GLOO
  b.push_back("gloo");
#endif
#ifdef MEDDIFF_WITH_NCCL
  b.push_back("nccl");
#endif
  return b;
}

ProcessGroup::ProcessGroup(LaunchEnv env, DistOptions opt, std::string backend, std::unique_ptr<Impl> impl)
    : env_(std::move(env)), opt_(opt), backend_(std::move(backend)), impl_(std::move(impl)) {}

ProcessGroup::~ProcessGroup() = default;

std::unique_ptr<ProcessGroup> ProcessGroup::connect(const LaunchEnv& env, const DistOptions& opt, const torch::Device& device) {
  check_dist_options(opt);
  std::string backend = opt.backend;
  if (backend == "auto") backend = device.is_cuda() ? "nccl" : "gloo";
  if (backend == "nccl" && !device.is_cuda()) fail("--dist-backend nccl needs CUDA devices; this rank trains on the CPU");
  auto avail = available_backends();
  if (std::find(avail.begin(), avail.end(), backend) == avail.end())
    fail("--dist-backend {}: this build of meddiff has no {} support (built with: {}); rebuild after scripts/setup.sh",
         backend, backend, avail.empty() ? std::string("none") : fmt::format("{}", fmt::join(avail, ", ")));
  const auto timeout = std::chrono::seconds(opt.timeout_s);
  auto impl = std::make_unique<Impl>();
  const bool serves_store = env.rank == 0 && !env.agent_store;
  auto no_rendezvous = [&](const std::string& why) {
    fail("rank {} of {}: no rendezvous at {}:{} within --dist-timeout {} s ({}): is rank 0 running, MASTER_ADDR "
         "reachable and MASTER_PORT free?",
         env.rank, env.world_size, env.master_addr, env.master_port, opt.timeout_s, why);
  };
  CrashStep step(fmt::format("connecting the rendezvous store at {}:{} (rank {} of {})", env.master_addr,
                             env.master_port, env.rank, env.world_size));
  if (!serves_store) {
    std::string why = wait_for_listener(env.master_addr, env.master_port, timeout);
    if (!why.empty()) no_rendezvous(why);
  }
  try {
    c10d::TCPStoreOptions so;
    so.port = static_cast<uint16_t>(env.master_port);
    so.isServer = serves_store;
    so.numWorkers = env.world_size;
    so.waitWorkers = true;
    so.timeout = timeout;
    impl->store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, so);
  } catch (const std::exception& e) {
    no_rendezvous(first_line(e));
  }
  CrashStep connecting(fmt::format("connecting the {} process group (rank {} of {})", backend, env.rank, env.world_size));
  try {
    if (backend == "gloo") {
#ifdef MEDDIFF_WITH_GLOO
      auto o = c10d::ProcessGroupGloo::Options::create(timeout);
      // The interface that reaches the rendezvous host reaches the other ranks too.
      o->devices.push_back(env.master_addr == "127.0.0.1" || env.master_addr == "localhost"
                               ? c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1")
                               : c10d::ProcessGroupGloo::createDefaultDevice());
      impl->backend = c10::make_intrusive<c10d::ProcessGroupGloo>(impl->store, env.rank, env.world_size, o);
#endif
    } else {
#ifdef MEDDIFF_WITH_NCCL
      c10::cuda::set_device(device.index());
      auto o = c10d::ProcessGroupNCCL::Options::create();
      o->timeout = timeout;  // NCCL's watchdog ends the process when an exchange exceeds it
      impl->backend = c10::make_intrusive<c10d::ProcessGroupNCCL>(impl->store, env.rank, env.world_size, o);
      impl->backend->setBoundDeviceId(device);  // barriers and exchanges on this rank's GPU
#endif
    }
  } catch (const std::exception& e) {
    fail("rank {} of {}: could not connect the {} process group within --dist-timeout {} s ({})", env.rank,
         env.world_size, backend, opt.timeout_s, first_line(e));
  }
  return std::unique_ptr<ProcessGroup>(new ProcessGroup(env, opt, backend, std::move(impl)));
}

namespace {
template <typename F>
void checked(const LaunchEnv& env, const DistOptions& opt, const char* op, F&& f) {
  try {
    f();
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    fail("rank {} of {}: {} failed: another rank exited, or did not answer within --dist-timeout {} s ({})", env.rank,
         env.world_size, op, opt.timeout_s, first_line(e));
  }
}
}  // namespace

namespace {
// Runs `op` on one flat buffer per dtype of `tensors` and copies the results back.
template <typename Op>
void flat_by_dtype(std::vector<torch::Tensor>& tensors, Op&& op) {
  std::vector<bool> done(tensors.size(), false);
  torch::NoGradGuard ng;
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (done[i]) continue;
    std::vector<size_t> group;
    std::vector<torch::Tensor> flat;
    for (size_t j = i; j < tensors.size(); ++j)
      if (!done[j] && tensors[j].scalar_type() == tensors[i].scalar_type() && tensors[j].device() == tensors[i].device()) {
        group.push_back(j);
        flat.push_back(tensors[j].detach().reshape({-1}));
        done[j] = true;
      }
    std::vector<torch::Tensor> buf{torch::cat(flat)};
    op(buf);
    int64_t off = 0;
    for (size_t j : group) {
      auto& t = tensors[j];
      t.detach().copy_(buf[0].slice(0, off, off + t.numel()).view(t.sizes()));
      off += t.numel();
    }
  }
}
}  // namespace

void ProcessGroup::reduce_flat(std::vector<torch::Tensor>& tensors, bool max) {
  c10d::AllreduceOptions o;
  o.reduceOp = max ? c10d::ReduceOp::MAX : c10d::ReduceOp::SUM;
  flat_by_dtype(tensors, [&](std::vector<torch::Tensor>& buf) {
    checked(env_, opt_, max ? "all-reduce (max)" : "all-reduce", [&] { impl_->backend->allreduce(buf, o)->wait(); });
  });
}

void ProcessGroup::all_reduce_sum(std::vector<torch::Tensor>& tensors) { reduce_flat(tensors, false); }

void ProcessGroup::all_reduce_max(torch::Tensor& t) {
  std::vector<torch::Tensor> v{t};
  reduce_flat(v, true);
}

torch::Tensor ProcessGroup::all_gather_rows(const torch::Tensor& t) {
  std::vector<torch::Tensor> in{t.detach().contiguous()};
  std::vector<std::vector<torch::Tensor>> out(1);
  for (int r = 0; r < env_.world_size; ++r) out[0].push_back(torch::empty_like(in[0]));
  checked(env_, opt_, "all-gather", [&] { impl_->backend->allgather(out, in)->wait(); });
  return torch::cat(out[0], 0);
}

void ProcessGroup::broadcast(std::vector<torch::Tensor>& tensors, int root) {
  c10d::BroadcastOptions o;
  o.rootRank = root;
  flat_by_dtype(tensors, [&](std::vector<torch::Tensor>& buf) {
    checked(env_, opt_, "broadcast", [&] { impl_->backend->broadcast(buf, o)->wait(); });
  });
}

void ProcessGroup::barrier() {
  checked(env_, opt_, "barrier", [&] { impl_->backend->barrier()->wait(); });
}

}  // namespace meddiff
