#include "models/state_dict.h"
#include "core/error.h"
#include "core/torch_file.h"

#include <fmt/format.h>

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

}  // namespace

TensorMap read_state_dict(const std::filesystem::path& path, const std::string& key) {
  PyRef v = read_torch_file(path);
  if (v->kind != PyValue::Kind::Dict) fail("{}: holds a {}, not a dict of tensors", path.string(), v->type_name());
  if (!key.empty()) {
    auto sub = v->get(key);
    if (!sub) fail("{}: has no '{}' entry", path.string(), key);
    if (sub->kind != PyValue::Kind::Dict) fail("{}: '{}' is a {}, not a dict of tensors", path.string(), key, sub->type_name());
    v = sub;
  }
  TensorMap out;
  for (const auto& [k, t] : v->dict) {
    if (k->kind != PyValue::Kind::Str) fail("{}: a key that is not a string ({})", path.string(), k->type_name());
    if (t->kind != PyValue::Kind::Tensor) fail("{}: '{}' is a {}, not a tensor", path.string(), k->s, t->type_name());
    out[k->s] = t->tensor;
  }
  return out;
}

void load_state_dict(torch::nn::Module& m, const TensorMap& sd, const std::string& what,
                     const std::function<std::string(const std::string&)>& rename) {
  std::map<std::string, torch::Tensor> targets;
  for (auto& p : m.named_parameters()) targets[p.key()] = p.value();
  for (auto& b : m.named_buffers()) targets[b.key()] = b.value();
  std::vector<std::string> unexpected, misshaped, missing;
  std::set<std::string> seen;
  for (const auto& [k, t] : sd) {
    auto name = rename ? rename(k) : k;
    auto it = targets.find(name);
    if (it == targets.end()) {
      unexpected.push_back(k);
      continue;
    }
    seen.insert(name);
    if (!t.sizes().equals(it->second.sizes()))
      misshaped.push_back(fmt::format("{} {} (expected {})", k, shape_text(t), shape_text(it->second)));
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
  for (const auto& [k, t] : sd) {
    auto& dst = targets.at(rename ? rename(k) : k);
    dst.copy_(t.to(dst.device(), dst.scalar_type()));
  }
}

}  // namespace meddiff
