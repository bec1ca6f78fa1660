#include "core/checkpoint.h"

#include "core/config.h"

#include "core/error.h"
#include "core/fs.h"
#include "core/version.h"

#include <caffe2/serialize/inline_container.h>
#include <torch/csrc/jit/serialization/export.h>
#include <torch/csrc/jit/serialization/pickler.h>
#include <torch/serialize.h>

#include <fstream>
#include <sstream>

namespace meddiff {

void Checkpoint::put_module(const std::string& prefix, const torch::nn::Module& m) {
  // CPU tensors are referenced, not copied (a checkpoint is saved before the module changes again):
  // a saved checkpoint costs no second copy of the weights in memory.
  for (const auto& p : m.named_parameters(true)) tensors[prefix + "." + p.key()] = p.value().detach().to(torch::kCPU);
  for (const auto& b : m.named_buffers(true)) tensors[prefix + "." + b.key()] = b.value().detach().to(torch::kCPU);
}

void Checkpoint::load_module(const std::string& prefix, torch::nn::Module& m) const {
  torch::NoGradGuard ng;
  auto copy = [&](const std::string& name, torch::Tensor& dst) {
    auto it = tensors.find(prefix + "." + name);
    if (it == tensors.end()) fail("checkpoint: no tensor '{}.{}' (another model configuration?)", prefix, name);
    if (it->second.sizes() != dst.sizes())
      fail("checkpoint: '{}.{}' has shape [{}], the model expects [{}]", prefix, name, fmt::join(it->second.sizes(), ","),
           fmt::join(dst.sizes(), ","));
    dst.copy_(it->second);
  };
  for (auto& p : m.named_parameters(true)) copy(p.key(), p.value());
  for (auto& b : m.named_buffers(true)) copy(b.key(), b.value());
}

namespace {
// Adam and AdamW keep the same per-parameter state (step, first and second moments).
template <typename State>
void put_adam_state(std::map<std::string, torch::Tensor>& tensors, const std::string& key, const State& st) {
  tensors[key + "step"] = torch::tensor(st.step(), torch::kLong);
  tensors[key + "exp_avg"] = st.exp_avg().detach().to(torch::kCPU);
  tensors[key + "exp_avg_sq"] = st.exp_avg_sq().detach().to(torch::kCPU);
  if (st.max_exp_avg_sq().defined()) tensors[key + "max_exp_avg_sq"] = st.max_exp_avg_sq().detach().to(torch::kCPU);
}

template <typename State>
std::unique_ptr<torch::optim::OptimizerParamState> get_adam_state(const Checkpoint& c, const std::string& key,
                                                                  const torch::Tensor& param) {
  auto st = std::make_unique<State>();
  st->step(c.tensor(key + "step").item<int64_t>());
  auto moment = [&](const std::string& n) {
    const auto& t = c.tensor(key + n);
    if (t.sizes() != param.sizes())
      fail("checkpoint: '{}{}' has shape [{}], the parameter [{}]", key, n, fmt::join(t.sizes(), ","), fmt::join(param.sizes(), ","));
    return t.to(param.device(), param.scalar_type()).clone();
  };
  st->exp_avg(moment("exp_avg"));
  st->exp_avg_sq(moment("exp_avg_sq"));
  if (c.tensors.count(key + "max_exp_avg_sq")) st->max_exp_avg_sq(moment("max_exp_avg_sq"));
  return st;
}
}  // namespace

void Checkpoint::put_optimizer(const std::string& name, const torch::optim::Optimizer& opt) {
  // Adam / AdamW: the state of parameter i (in optimiser order) as "optim.<name>.<i>.exp_avg" etc.,
  // referenced like the weights (no serialised copy), readable from Python.
  int64_t i = 0;
  for (const auto& group : opt.param_groups())
    for (const auto& p : group.params()) {
      const std::string key = fmt::format("optim.{}.{}.", name, i++);
      auto it = opt.state().find(p.unsafeGetTensorImpl());
      if (it == opt.state().end()) continue;  // never stepped
      if (auto* a = dynamic_cast<const torch::optim::AdamParamState*>(it->second.get())) put_adam_state(tensors, key, *a);
      else if (auto* w = dynamic_cast<const torch::optim::AdamWParamState*>(it->second.get())) put_adam_state(tensors, key, *w);
      else fail("checkpoint: optimiser '{}' is not Adam or AdamW", name);
    }
  tensors["optim." + name + ".params"] = torch::tensor(i, torch::kLong);
}

void Checkpoint::load_optimizer(const std::string& name, torch::optim::Optimizer& opt, const torch::Device& device) const {
  if (tensors.count("optim." + name)) {  // meddiff 0.1 checkpoints: LibTorch's archive as bytes
    const auto& t = tensor("optim." + name);
    torch::serialize::InputArchive ar;
    auto c = t.contiguous();
    ar.load_from(reinterpret_cast<const char*>(c.data_ptr<uint8_t>()), static_cast<size_t>(c.numel()), device);
    opt.load(ar);
    return;
  }
  int64_t saved = tensor("optim." + name + ".params").item<int64_t>(), i = 0;
  const bool adamw = dynamic_cast<torch::optim::AdamW*>(&opt) != nullptr;
  for (auto& group : opt.param_groups())
    for (auto& p : group.params()) {
      const std::string key = fmt::format("optim.{}.{}.", name, i++);
      if (!tensors.count(key + "step")) continue;
      opt.state()[p.unsafeGetTensorImpl()] = adamw ? get_adam_state<torch::optim::AdamWParamState>(*this, key, p)
                                                   : get_adam_state<torch::optim::AdamParamState>(*this, key, p);
    }
  if (i != saved) fail("checkpoint: optimiser '{}' has {} parameters, the checkpoint {}", name, i, saved);
}

const torch::Tensor& Checkpoint::tensor(const std::string& name) const {
  auto it = tensors.find(name);
  if (it == tensors.end()) fail("checkpoint: no tensor '{}'", name);
  return it->second;
}

int64_t Checkpoint::parameter_count(const std::string& prefix) const {
  int64_t n = 0;
  for (const auto& [k, v] : tensors)
    if (k.rfind(prefix + ".", 0) == 0 && v.is_floating_point()) n += v.numel();
  return n;
}

void save_checkpoint(const Checkpoint& c, const std::filesystem::path& path) {
  c10::Dict<std::string, at::Tensor> sd;
  for (const auto& [k, v] : c.tensors) sd.insert(k, v);
  c10::impl::GenericDict top(c10::StringType::get(), c10::AnyType::get());
  top.insert("kind", c.kind);
  top.insert("step", c.step);
  top.insert("config", c.config.dump());
  top.insert("extra", c.extra.dump());
  top.insert("meddiff_version", version() + "+" + git_hash());
  top.insert("state_dict", sd);
  // As torch::pickle_save, but without the TorchScript type tags on dicts: Python's torch.load then
  // reads the file with its default weights_only=True (the tags need a non-allowlisted global).
  std::vector<char> pickled;
  torch::jit::Pickler pickler([&](const char* b, size_t n) { pickled.insert(pickled.end(), b, b + n); }, nullptr,
                              nullptr, nullptr, nullptr, /*tag_aggregates=*/false);
  pickler.protocol();
  pickler.pushIValue(top);
  pickler.stop();
  // The archive streams into the file as it is made (no copy of the tensors in memory). The write
  // callback never throws (the zip writer's destructor would call it again and terminate): it keeps
  // the first error and the error is raised once the writer is done.
  write_atomically(path, [&](const std::filesystem::path& tmp) {
    CheckedFile file(tmp, path.string());
    std::string error;
    {
      caffe2::serialize::PyTorchStreamWriter writer([&](const void* b, size_t n) -> size_t {
        if (error.empty()) {
          try {
            file.write(b, n);
          } catch (const std::exception& e) {
            error = e.what();
          }
        }
        return n;
      });
      torch::jit::writeArchiveAndTensors("data", pickled.data(), pickled.size(), pickler.tensorData(), writer);
      writer.writeEndOfFile();
    }
    if (!error.empty()) throw Error(error);
    file.finish();
  });
}

Checkpoint load_checkpoint(const std::filesystem::path& path) {
  std::vector<char> bytes;
  {
    std::ifstream in(path, std::ios::binary | std::ios::ate);
    if (!in) fail("{}: cannot open: {}", path.string(), std::filesystem::exists(path) ? "permission denied" : "no such file");
    bytes.resize(static_cast<size_t>(in.tellg()));
    in.seekg(0);
    if (!in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()))) fail("{}: read error", path.string());
  }
  c10::IValue v;
  try {
    v = torch::pickle_load(bytes);
  } catch (const std::exception& e) {
    fail("{}: not a meddiff checkpoint (cannot unpickle)", path.string());
  }
  if (!v.isGenericDict()) fail("{}: not a meddiff checkpoint (not a dict)", path.string());
  auto d = v.toGenericDict();
  for (const char* k : {"kind", "step", "config", "state_dict"})
    if (!d.contains(k)) fail("{}: not a meddiff checkpoint (no '{}')", path.string(), k);
  Checkpoint c;
  c.kind = d.at("kind").toStringRef();
  c.step = d.at("step").toInt();
  c.config = nlohmann::json::parse(d.at("config").toStringRef());
  if (c.config.is_object() && !c.config.empty()) upgrade_axis_order(c.config);  // a config of before the x,y,z order
  if (d.contains("extra")) c.extra = nlohmann::json::parse(d.at("extra").toStringRef());
  for (const auto& e : d.at("state_dict").toGenericDict()) c.tensors[e.key().toStringRef()] = e.value().toTensor();
  return c;
}

Checkpoint load_checkpoint_of_kind(const std::filesystem::path& path, const std::string& kind, const std::string& what) {
  Checkpoint c = load_checkpoint(path);
  if (c.kind != kind) fail("{}: is a '{}' checkpoint, not {}", path.string(), c.kind, what);
  return c;
}

}  // namespace meddiff
