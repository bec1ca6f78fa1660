#pragma once
// The constructor arguments of a MONAI network as a MONAI bundle or NV-Generate-CTMR network config writes
// them: a JSON object with "_target_" (the class path) and arguments that may be "@name" references to the
// config's top-level keys. Errors name the definition (`where`) and the argument.
#include "core/error.h"

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace meddiff {

class MonaiArgs {
 public:
  MonaiArgs(const nlohmann::json& def, const nlohmann::json& root, std::string where);
  std::string target() const;  // "_target_", "" when absent
  // The argument with a "@name" reference resolved; null when absent.
  nlohmann::json arg(const std::string& key) const;
  template <typename T>
  T get(const std::string& key) const {
    auto v = arg(key);
    if (v.is_null()) fail("{}: '{}' is missing", where_, key);
    return as<T>(v, key);
  }
  template <typename T>
  T get_or(const std::string& key, const T& fallback) const {
    auto v = arg(key);
    return v.is_null() ? fallback : as<T>(v, key);
  }
  // A per-level argument given as one integer or as a list of `levels` integers, as a list.
  std::vector<int64_t> per_level(const std::string& key, size_t levels, const std::vector<int64_t>& fallback) const;
  // The indices of the true entries of a list of `levels` booleans (MONAI's attention_levels).
  std::vector<int64_t> true_levels(const std::string& key, size_t levels) const;
  const std::string& where() const { return where_; }

 private:
  template <typename T>
  T as(const nlohmann::json& v, const std::string& key) const {
    try {
      return v.get<T>();
    } catch (const nlohmann::json::exception&) {
      fail("{}: '{}' has the wrong type ({})", where_, key, v.dump());
    }
  }
  nlohmann::json def_, root_;
  std::string where_;
};

}  // namespace meddiff
