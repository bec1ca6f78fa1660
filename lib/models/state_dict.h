#pragma once
// Loading weights written by other tools (a PyTorch state dict saved with torch.save) into a module by
// parameter name, with every problem in one error: missing keys, unexpected keys, mis-shaped tensors.
#include <torch/torch.h>

#include <filesystem>
#include <functional>
#include <map>
#include <string>

namespace meddiff {

using TensorMap = std::map<std::string, torch::Tensor>;

// The name -> tensor dict of a torch.save file (a state dict, an OrderedDict included), or of the dict under
// `key` when the file holds a dict of entries (e.g. {"unet_state_dict": ...}); one error naming the file otherwise.
TensorMap read_state_dict(const std::filesystem::path& path, const std::string& key = "");

// Copies `sd` into `m`'s parameters and buffers by name after renaming each key with `rename` (identity when
// empty). Throws one error naming `what` and listing every missing, unexpected and mis-shaped key.
void load_state_dict(torch::nn::Module& m, const TensorMap& sd, const std::string& what,
                     const std::function<std::string(const std::string&)>& rename = {});

}  // namespace meddiff
