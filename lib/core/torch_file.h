#pragma once
// Reading files written by Python's torch.save (the zip format of PyTorch >= 1.6): the weights users
// download (a MAISI autoencoder state dict, a MONAI bundle's model.pt, {"unet_state_dict", "scale_factor",
// ...}) without Python. LibTorch's own unpickler takes only the plain containers LibTorch writes; a state
// dict is a collections.OrderedDict with a `_metadata` attribute, so this is a small pickle machine of its
// own: dicts (OrderedDict included; attributes set by BUILD are dropped), lists, tuples, sets, strings,
// bytes, numbers, booleans, None, tensors and parameters (typed storages read from the archive's
// data/ records, views of one storage kept apart by copying). Any other Python object becomes an opaque
// value naming its class, so the tensors around it still load.
#include <torch/torch.h>

#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace meddiff {

struct PyValue;
using PyRef = std::shared_ptr<PyValue>;

struct PyValue {
  enum class Kind { None, Bool, Int, Float, Str, Bytes, Tuple, List, Set, Dict, Tensor, Object };
  Kind kind = Kind::None;
  bool b = false;
  int64_t i = 0;
  double f = 0;
  std::string s;                                // Str, Bytes; Object: its class ("module.name")
  std::vector<PyRef> items;                     // Tuple, List, Set; Object: its constructor arguments
  std::vector<std::pair<PyRef, PyRef>> dict;    // Dict, in insertion order
  torch::Tensor tensor;                         // Tensor (on the CPU)

  // The value under string key `key` of a Dict (nullptr when absent or not a Dict).
  PyRef get(const std::string& key) const;
  std::string type_name() const;                // "dict", "tensor", "str", "object numpy.ndarray", ...
};

// The object a torch.save file holds. One error naming the file when it is missing, not a zip archive
// written by torch.save (the legacy pre-1.6 format included: re-save it with a current PyTorch), or
// uses pickle features such files do not use.
PyRef read_torch_file(const std::filesystem::path& path);

}  // namespace meddiff
