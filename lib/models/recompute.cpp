#include "models/recompute.h"

#include "ops/kernel_support.h"

#include <ATen/autocast_mode.h>
#include <torch/csrc/autograd/custom_function.h>

namespace meddiff {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The devices whose random state the block may use: the CPU and the CUDA devices of its inputs.
std::vector<c10::Device> rng_devices(const std::vector<torch::Tensor>& inputs) {
  std::vector<c10::Device> devices{c10::Device(c10::kCPU)};
  for (const auto& t : inputs)
    if (t.defined() && t.is_cuda() && std::find(devices.begin(), devices.end(), t.device()) == devices.end())
      devices.push_back(t.device());
  return devices;
}

std::vector<at::Tensor> swap_rng_states(const std::vector<c10::Device>& devices, const std::vector<at::Tensor>* set) {
  std::vector<at::Tensor> old;
  for (size_t i = 0; i < devices.size(); ++i) {
    auto g = at::globalContext().defaultGenerator(devices[i]);
    std::lock_guard<std::mutex> lock(g.mutex());
    old.push_back(g.get_state());
    if (set) g.set_state((*set)[i]);
  }
  return old;
}

// The first run (under no-grad) with what the recomputation must replay: random state per device
// and the autocast state. `inputs` are the block's tensor inputs (all defined).
torch::Tensor first_run(AutogradContext* ctx, int64_t fn_address, const std::vector<torch::Tensor>& inputs) {
  const auto* fn = reinterpret_cast<const BlockFn*>(fn_address);
  std::vector<int64_t> device_codes;
  auto devices = rng_devices(inputs);
  for (const auto& d : devices) device_codes.push_back(d.is_cpu() ? -1 : d.index());
  ctx->saved_data["fn"] = fn_address;
  ctx->saved_data["devices"] = device_codes;
  ctx->saved_data["rng"] = swap_rng_states(devices, nullptr);
  ctx->saved_data["autocast"] = at::autocast::is_autocast_enabled(at::kCUDA);
  ctx->saved_data["autocast_dtype"] = static_cast<int64_t>(at::autocast::get_autocast_dtype(at::kCUDA));
  ctx->save_for_backward(inputs);
  torch::NoGradGuard ng;
  ops::LibTorchOnly same_as_recomputation;  // not the fused kernels, which the recomputation (with grad) cannot take
  return (*fn)(inputs);
}

// The second run with gradients, then backward through it; gradients of the inputs (one per
// forward argument, the function address first).
variable_list second_run(AutogradContext* ctx, const variable_list& grads) {
  const auto* fn = reinterpret_cast<const BlockFn*>(ctx->saved_data["fn"].toInt());
  std::vector<torch::Tensor> ins;
  for (const auto& s : ctx->get_saved_variables()) ins.push_back(s.detach().requires_grad_(s.requires_grad()));
  std::vector<c10::Device> devices;
  for (int64_t code : ctx->saved_data["devices"].toIntVector())
    devices.push_back(code < 0 ? c10::Device(c10::kCPU) : c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(code)));
  auto first = ctx->saved_data["rng"].toTensorVector();
  auto current = swap_rng_states(devices, &first);
  bool prev_autocast = at::autocast::is_autocast_enabled(at::kCUDA);
  auto prev_dtype = at::autocast::get_autocast_dtype(at::kCUDA);
  at::autocast::set_autocast_enabled(at::kCUDA, ctx->saved_data["autocast"].toBool());
  at::autocast::set_autocast_dtype(at::kCUDA, static_cast<at::ScalarType>(ctx->saved_data["autocast_dtype"].toInt()));
  torch::Tensor out;
  {
    torch::AutoGradMode on(true);
    out = (*fn)(ins);
  }
  at::autocast::set_autocast_enabled(at::kCUDA, prev_autocast);
  at::autocast::set_autocast_dtype(at::kCUDA, prev_dtype);
  swap_rng_states(devices, &current);
  torch::autograd::backward({out}, {grads[0]});  // accumulates into the block's parameters
  variable_list result{torch::Tensor()};           // for the function address
  for (const auto& i : ins) result.push_back(i.requires_grad() ? i.grad() : torch::Tensor());
  return result;
}

struct RecomputeOne : torch::autograd::Function<RecomputeOne> {
  static torch::Tensor forward(AutogradContext* ctx, int64_t fn, const torch::Tensor& a) { return first_run(ctx, fn, {a}); }
  static variable_list backward(AutogradContext* ctx, variable_list grads) { return second_run(ctx, grads); }
};

struct RecomputeTwo : torch::autograd::Function<RecomputeTwo> {
  static torch::Tensor forward(AutogradContext* ctx, int64_t fn, const torch::Tensor& a, const torch::Tensor& b) {
    return first_run(ctx, fn, {a, b});
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) { return second_run(ctx, grads); }
};

}  // namespace

void set_checkpointing(torch::nn::Module& m, bool on) {
  for (const auto& child : m.modules(/*include_self=*/true))
    if (auto* r = dynamic_cast<Recomputable*>(child.get())) r->checkpointing = on;
}

torch::Tensor recompute(const BlockFn& fn, const std::vector<torch::Tensor>& inputs) {
  if (!torch::GradMode::is_enabled()) return fn(inputs);
  TORCH_CHECK(!inputs.empty() && inputs.size() <= 2, "recompute: one or two inputs");
  auto address = static_cast<int64_t>(reinterpret_cast<intptr_t>(&fn));
  if (inputs.size() == 1) return RecomputeOne::apply(address, inputs[0]);
  return RecomputeTwo::apply(address, inputs[0], inputs[1]);
}

}  // namespace meddiff
