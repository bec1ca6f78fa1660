#include "models/monai_args.h"

namespace meddiff {

MonaiArgs::MonaiArgs(const nlohmann::json& def, const nlohmann::json& root, std::string where)
    : def_(def), root_(root), where_(std::move(where)) {
  if (!def_.is_object()) fail("{}: not an object", where_);
  auto sd = arg("spatial_dims");
  if (!sd.is_null() && sd != 3) fail("{}: 'spatial_dims' is {}; only 3-D networks are supported", where_, sd.dump());
}

std::string MonaiArgs::target() const { return def_.contains("_target_") && def_["_target_"].is_string() ? def_["_target_"].get<std::string>() : ""; }

nlohmann::json MonaiArgs::arg(const std::string& key) const {
  if (!def_.contains(key)) return nullptr;
  nlohmann::json v = def_.at(key);
  if (v.is_string() && !v.get<std::string>().empty() && v.get<std::string>()[0] == '@') {
    auto ref = v.get<std::string>().substr(1);
    if (!root_.is_object() || !root_.contains(ref)) fail("{}: '{}' refers to '@{}', which the config does not define", where_, key, ref);
    v = root_.at(ref);
  }
  return v;
}

std::vector<int64_t> MonaiArgs::per_level(const std::string& key, size_t levels, const std::vector<int64_t>& fallback) const {
  auto v = arg(key);
  if (v.is_null()) return fallback;
  if (v.is_number_integer()) return std::vector<int64_t>(levels, v.get<int64_t>());
  auto list = as<std::vector<int64_t>>(v, key);
  if (list.size() != levels) fail("{}: '{}' has {} values for {} levels", where_, key, list.size(), levels);
  return list;
}

std::vector<int64_t> MonaiArgs::true_levels(const std::string& key, size_t levels) const {
  auto flags = get<std::vector<bool>>(key);
  if (flags.size() != levels) fail("{}: '{}' has {} values for {} levels", where_, key, flags.size(), levels);
  std::vector<int64_t> out;
  for (size_t i = 0; i < flags.size(); ++i)
    if (flags[i]) out.push_back(static_cast<int64_t>(i));
  return out;
}

}  // namespace meddiff
