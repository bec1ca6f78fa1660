#pragma once
// Loading weights written by other tools (a PyTorch state dict saved with torch.save) into a module by
// parameter name, with every problem in one error: missing keys, unexpected keys, mis-shaped tensors.
#include "core/torch_file.h"

#include <torch/torch.h>

#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace meddiff {

using TensorMap = std::map<std::string, torch::Tensor>;

// The name -> tensor dict of a torch.save file (a state dict, an OrderedDict included), or of the dict under
// `key` when the file holds a dict of entries (e.g. {"unet_state_dict": ...}); without `key`, a file whose top level
// holds no tensors (a training checkpoint: {"model": ..., "optimizer": ..., "epoch": ...}) gives its one entry that is a
// dict of tensors (several are an error naming them). One error naming the file otherwise.
// A prefix every key shares because the network was saved wrapped ("module." of DistributedDataParallel or
// DataParallel, "_orig_mod." of torch.compile, nested in any order) is removed, as the unwrapped network names them.
TensorMap read_state_dict(const std::filesystem::path& path, const std::string& key = "");
// The same from a file already read (core/torch_file.h's read_torch_file of `path`).
TensorMap state_dict_of(const PyValue& file, const std::filesystem::path& path, const std::string& key = "");

using KeyRename = std::function<std::string(const std::string&)>;

// Copies `sd` into `m`'s parameters and buffers by name after renaming each key with `rename` (identity when
// empty). Throws one error naming `what` and listing every missing, unexpected and mis-shaped key. Unexpected keys
// for which `unused(key)` holds (weights the source network carries but never uses) are skipped and returned.
std::vector<std::string> load_state_dict(torch::nn::Module& m, const TensorMap& sd, const std::string& what,
                                         const KeyRename& rename = {},
                                         const std::function<bool(const std::string&)>& unused = {});

// The names of MONAI Generative (the GenerativeModels package older MONAI bundles were trained with) in MONAI's
// current naming: attention "<block>.to_q" -> "<block>.attn.to_q" (k, v alike), "<block>.proj_attn" ->
// "<block>.attn.out_proj", and the upsampling convolution "conv" -> "postconv" (the KL decoder's
// "decoder.blocks.N.conv.conv", the U-Net's "upsampler.conv.conv"). Current names pass unchanged.
std::string monai_generative_key(const std::string& key);

// The name in models/autoencoder_kl.h of a parameter of MAISI's AutoencoderKlMaisi, whose convolutions sit one
// level deeper ("encoder.blocks.0.conv.conv.weight", the upsampling convolution
// "decoder.blocks.N.conv.conv.conv.weight"); every other name (GroupNorms, the quant convolutions) is MONAI's.
std::string maisi_autoencoder_key(const std::string& key);

}  // namespace meddiff
