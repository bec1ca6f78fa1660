#pragma once
// Checkpoints: one file holding named tensors (weights, buffers, optimiser states as bytes), the
// step, the kind of model and the resolved config. The format is LibTorch's pickle of a plain dict,
//   {"kind": str, "step": int, "config": str (JSON), "extra": str (JSON), "meddiff_version": str,
//    "state_dict": {name: tensor}}
// which Python reads with torch.load(path) as a dict of named tensors. Written atomically.
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <filesystem>
#include <map>
#include <string>

namespace meddiff {

struct Checkpoint {
  std::string kind;   // "vqgan", "ldm"
  int64_t step = 0;
  nlohmann::json config = nlohmann::json::object();
  nlohmann::json extra = nlohmann::json::object();
  std::map<std::string, torch::Tensor> tensors;

  // Parameters and buffers of `m` as "prefix.name".
  void put_module(const std::string& prefix, const torch::nn::Module& m);
  // Copies "prefix.name" tensors into `m`; a missing or mis-shaped tensor is an error naming it.
  void load_module(const std::string& prefix, torch::nn::Module& m) const;
  // Optimiser state as a byte tensor "optim.<name>".
  void put_optimizer(const std::string& name, const torch::optim::Optimizer& opt);
  void load_optimizer(const std::string& name, torch::optim::Optimizer& opt, const torch::Device& device = torch::kCPU) const;
  const torch::Tensor& tensor(const std::string& name) const;  // error naming the key if absent
  int64_t parameter_count(const std::string& prefix) const;
};

void save_checkpoint(const Checkpoint& c, const std::filesystem::path& path);
Checkpoint load_checkpoint(const std::filesystem::path& path);
// The same, refusing another kind: "PATH: is a 'ldm' checkpoint, not <what>".
Checkpoint load_checkpoint_of_kind(const std::filesystem::path& path, const std::string& kind, const std::string& what);

}  // namespace meddiff
