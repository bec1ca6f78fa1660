#include "core/checkpoint.h"

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
  for (const auto& p : m.named_parameters(true)) tensors[prefix + "." + p.key()] = p.value().detach().cpu().clone();
  for (const auto& b : m.named_buffers(true)) tensors[prefix + "." + b.key()] = b.value().detach().cpu().clone();
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

void Checkpoint::put_optimizer(const std::string& name, const torch::optim::Optimizer& opt) {
  torch::serialize::OutputArchive ar;
  opt.save(ar);
  std::ostringstream os;
  ar.save_to(os);
  std::string bytes = os.str();
  auto t = torch::empty({static_cast<int64_t>(bytes.size())}, torch::kUInt8);
  std::memcpy(t.data_ptr<uint8_t>(), bytes.data(), bytes.size());
  tensors["optim." + name] = t;
}

void Checkpoint::load_optimizer(const std::string& name, torch::optim::Optimizer& opt, const torch::Device& device) const {
  const auto& t = tensor("optim." + name);
  torch::serialize::InputArchive ar;
  auto c = t.contiguous();
  ar.load_from(reinterpret_cast<const char*>(c.data_ptr<uint8_t>()), static_cast<size_t>(c.numel()), device);
  opt.load(ar);
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
  std::vector<char> bytes;
  {
    caffe2::serialize::PyTorchStreamWriter writer([&](const void* b, size_t n) {
      bytes.insert(bytes.end(), static_cast<const char*>(b), static_cast<const char*>(b) + n);
      return n;
    });
    torch::jit::writeArchiveAndTensors("data", pickled.data(), pickled.size(), pickler.tensorData(), writer);
    writer.writeEndOfFile();
  }
  write_atomically(path, [&](const std::filesystem::path& tmp) { write_file_checked(tmp, bytes.data(), bytes.size(), path.string()); });
}

Checkpoint load_checkpoint(const std::filesystem::path& path) {
  std::string bytes = read_text(path);
  c10::IValue v;
  try {
    v = torch::pickle_load(std::vector<char>(bytes.begin(), bytes.end()));
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
