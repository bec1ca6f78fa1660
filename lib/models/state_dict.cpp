#include "models/state_dict.h"
#include "core/error.h"

#include <fmt/format.h>

#include <algorithm>
#include <optional>
#include <set>
#include <vector>

namespace meddiff {
namespace {

std::string shape_text(const torch::Tensor& t) { return fmt::format("[{}]", fmt::join(t.sizes(), ",")); }

std::string listed(const std::vector<std::string>& v, size_t max = 12) {
  std::string s;
  for (size_t i = 0; i < v.size() && i < max; ++i) s += (i ? ", " : "") + v[i];
  if (v.size() > max) s += fmt::format(" and {} more", v.size() - max);
  return s;
}

// `s` with the first `from` replaced by `to`; nothing when `from` does not occur.
std::optional<std::string> replace_first(const std::string& s, const std::string& from, const std::string& to) {
  auto at = s.find(from);
  if (at == std::string::npos) return std::nullopt;
  return s.substr(0, at) + to + s.substr(at + from.size());
}

// `sd` without a wrapper's prefix that every key carries (DistributedDataParallel's "module.", torch.compile's
// "_orig_mod.", in any nesting).
TensorMap unwrapped(TensorMap sd) {
  for (bool again = !sd.empty(); again;) {
    again = false;
    for (const std::string prefix : {"module.", "_orig_mod."}) {
      bool all = true;
      for (const auto& kv : sd) all = all && kv.first.size() > prefix.size() && kv.first.compare(0, prefix.size(), prefix) == 0;
      if (!all) continue;
      TensorMap inner;
      for (auto& [k, t] : sd) inner[k.substr(prefix.size())] = t;
      sd = std::move(inner);
      again = true;
    }
  }
  return sd;
}

// Whether a dict entry's value is a tensor.
bool holds_tensor(const std::pair<PyRef, PyRef>& entry) { return entry.second->kind == PyValue::Kind::Tensor; }

}  // namespace

TensorMap read_state_dict(const std::filesystem::path& path, const std::string& key) {
  return state_dict_of(*read_torch_file(path), path, key);
}

TensorMap state_dict_of(const PyValue& file, const std::filesystem::path& path, const std::string& key) {
  const PyValue* v = &file;
  if (v->kind != PyValue::Kind::Dict) fail("{}: holds a {}, not a dict of tensors", path.string(), v->type_name());
  if (!key.empty()) {
    auto sub = v->get(key);
    if (!sub) fail("{}: has no '{}' entry", path.string(), key);
    if (sub->kind != PyValue::Kind::Dict) fail("{}: '{}' is a {}, not a dict of tensors", path.string(), key, sub->type_name());
    v = sub.get();
  } else if (!v->dict.empty() && std::none_of(v->dict.begin(), v->dict.end(), holds_tensor)) {
    // A training checkpoint ({"model": state dict, "optimizer": ..., "epoch": ...}): the one entry that is a dict of tensors
    std::vector<std::string> names;
    const PyValue* found = nullptr;
    for (const auto& [k, sub] : v->dict) {
      if (sub->kind != PyValue::Kind::Dict || sub->dict.empty() || !std::all_of(sub->dict.begin(), sub->dict.end(), holds_tensor)) continue;
      names.push_back(k->kind == PyValue::Kind::Str ? "'" + k->s + "'" : k->type_name());
      found = sub.get();
    }
    if (names.empty()) fail("{}: holds no weights (no tensors, and no entry that is a dict of tensors)", path.string());
    if (names.size() > 1) fail("{}: holds {} state dicts ({}); save the one to import on its own", path.string(), names.size(), listed(names));
    v = found;
  }
  TensorMap out;
  for (const auto& [k, t] : v->dict) {
    if (k->kind != PyValue::Kind::Str) fail("{}: a key that is not a string ({})", path.string(), k->type_name());
    if (t->kind != PyValue::Kind::Tensor) fail("{}: '{}' is a {}, not a tensor", path.string(), k->s, t->type_name());
    out[k->s] = t->tensor;
  }
  return unwrapped(std::move(out));
}

std::vector<std::string> load_state_dict(torch::nn::Module& m, const TensorMap& sd, const std::string& what,
                                         const KeyRename& rename, const std::function<bool(const std::string&)>& unused) {
  std::map<std::string, torch::Tensor> targets;
  for (auto& p : m.named_parameters()) targets[p.key()] = p.value();
  for (auto& b : m.named_buffers()) targets[b.key()] = b.value();
  std::vector<std::string> unexpected, misshaped, missing, skipped;
  std::set<std::string> seen;
  std::vector<std::pair<torch::Tensor, torch::Tensor>> copies;  // (parameter or buffer, its weight)
  for (const auto& [k, t] : sd) {
    auto name = rename ? rename(k) : k;
    auto it = targets.find(name);
    if (it == targets.end()) {
      if (unused && unused(name)) skipped.push_back(k);
      else unexpected.push_back(k);
      continue;
    }
    seen.insert(name);
    if (!t.sizes().equals(it->second.sizes()))
      misshaped.push_back(fmt::format("{} {} (expected {})", k, shape_text(t), shape_text(it->second)));
    copies.emplace_back(it->second, t);
  }
  for (const auto& [name, t] : targets)
    if (!seen.count(name)) missing.push_back(name);
  if (!unexpected.empty() || !misshaped.empty() || !missing.empty()) {
    std::string msg = fmt::format("{}: the weights do not fit the network:", what);
    if (!missing.empty()) msg += fmt::format(" {} missing ({});", missing.size(), listed(missing));
    if (!unexpected.empty()) msg += fmt::format(" {} unexpected ({});", unexpected.size(), listed(unexpected));
    if (!misshaped.empty()) msg += fmt::format(" {} mis-shaped ({});", misshaped.size(), listed(misshaped));
    msg.pop_back();
    fail("{}", msg);
  }
  torch::NoGradGuard ng;
  for (auto& [dst, t] : copies) dst.copy_(t.to(dst.device(), dst.scalar_type()));
  return skipped;
}

std::string monai_generative_key(const std::string& key) {
  for (const char* proj : {".to_q.", ".to_k.", ".to_v."}) {
    auto at = key.find(proj);
    if (at != std::string::npos && !(at >= 5 && key.compare(at - 5, 5, ".attn") == 0)) return key.substr(0, at) + ".attn" + key.substr(at);
  }
  if (auto r = replace_first(key, ".proj_attn.", ".attn.out_proj.")) return *r;
  if (key.rfind("decoder.blocks.", 0) == 0)
    if (auto r = replace_first(key, ".conv.conv.", ".postconv.conv.")) return *r;
  if (auto r = replace_first(key, ".upsampler.conv.conv.", ".upsampler.postconv.conv.")) return *r;
  return key;
}

std::string maisi_autoencoder_key(const std::string& key) {
  const bool decoder = key.rfind("decoder.", 0) == 0;
  if (!decoder && key.rfind("encoder.", 0) != 0) return key;
  if (decoder)
    if (auto r = replace_first(key, ".conv.conv.conv.", ".postconv.conv.")) return *r;
  return replace_first(key, ".conv.conv.", ".conv.").value_or(key);
}

}  // namespace meddiff
