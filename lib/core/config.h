#pragma once
// Configuration: JSON files + `--set key.path=value` overrides, checked strictly.
//
// Every params struct lists its keys once, in a visit() member:
//   template <typename V> void visit(V& v) {
//     v("n_codes", n_codes, "codebook size");
//   }
// and the same list drives reading (unknown keys and wrong types are errors naming the dotted key),
// writing (the fully resolved config) and the documentation of the keys.
#include "core/error.h"

#include <nlohmann/json.hpp>

#include <array>
#include <optional>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

namespace meddiff {

using json = nlohmann::json;

namespace config_detail {
template <typename T> struct is_vector : std::false_type {};
template <typename T> struct is_vector<std::vector<T>> : std::true_type {};
template <typename T> struct is_array : std::false_type {};
template <typename T, size_t N> struct is_array<std::array<T, N>> : std::true_type {};

std::string type_name(const json& j);
}  // namespace config_detail

// Reads a JSON object into a struct through its visit(); records which keys were consumed.
class ConfigReader {
 public:
  ConfigReader(const json& j, std::string path) : j_(j), path_(std::move(path)) {
    if (!j_.is_object()) fail("config: '{}' must be an object, got {}", path_.empty() ? "<root>" : path_, config_detail::type_name(j_));
  }

  template <typename T>
  void operator()(const char* key, T& out, const char* /*doc*/ = "") {
    seen_.insert(key);
    if (!j_.contains(key)) return;  // keep the default
    read_value(j_.at(key), out, join(key));
  }

  // Every key of the object must have been read: unknown keys are errors.
  void finish() const {
    for (auto it = j_.begin(); it != j_.end(); ++it)
      if (!seen_.count(it.key())) fail("config: unknown key '{}'", join(it.key()));
  }

  template <typename T>
  static void read_value(const json& j, T& out, const std::string& where) {
    using config_detail::type_name;
    if constexpr (std::is_same_v<T, bool>) {
      if (!j.is_boolean()) fail("config: '{}' must be true or false, got {}", where, type_name(j));
      out = j.get<bool>();
    } else if constexpr (std::is_integral_v<T>) {
      if (!j.is_number_integer()) fail("config: '{}' must be an integer, got {}", where, type_name(j));
      out = j.get<T>();
    } else if constexpr (std::is_floating_point_v<T>) {
      if (!j.is_number()) fail("config: '{}' must be a number, got {}", where, type_name(j));
      out = j.get<T>();
    } else if constexpr (std::is_same_v<T, std::string>) {
      if (!j.is_string()) fail("config: '{}' must be a string, got {}", where, type_name(j));
      out = j.get<std::string>();
    } else if constexpr (config_detail::is_array<T>::value) {
      if (!j.is_array() || j.size() != out.size())
        fail("config: '{}' must be a list of {} values, got {}", where, out.size(), type_name(j));
      for (size_t i = 0; i < out.size(); ++i) read_value(j[i], out[i], where + "[" + std::to_string(i) + "]");
    } else if constexpr (config_detail::is_vector<T>::value) {
      if (!j.is_array()) fail("config: '{}' must be a list, got {}", where, type_name(j));
      out.resize(j.size());
      for (size_t i = 0; i < out.size(); ++i) read_value(j[i], out[i], where + "[" + std::to_string(i) + "]");
    } else {
      ConfigReader sub(j, where);
      out.visit(sub);
      sub.finish();
    }
  }

 private:
  std::string join(const std::string& key) const { return path_.empty() ? key : path_ + "." + key; }
  const json& j_;
  std::string path_;
  std::set<std::string> seen_;
};

// Writes a struct's keys to JSON through its visit().
class ConfigWriter {
 public:
  template <typename T>
  void operator()(const char* key, const T& value, const char* /*doc*/ = "") {
    j_[key] = to_value(value);
  }
  template <typename T>
  static json to_value(const T& v) {
    if constexpr (std::is_arithmetic_v<T> || std::is_same_v<T, std::string>) {
      return json(v);
    } else if constexpr (config_detail::is_array<T>::value || config_detail::is_vector<T>::value) {
      json a = json::array();
      for (const auto& x : v) a.push_back(to_value(x));
      return a;
    } else {
      ConfigWriter w;
      const_cast<T&>(v).visit(w);
      return w.result();
    }
  }
  json result() const { return j_.is_null() ? json::object() : j_; }

 private:
  json j_;
};

// Lists keys with their documentation: "section.key  default  doc".
class ConfigDoc {
 public:
  explicit ConfigDoc(std::string prefix = "") : prefix_(std::move(prefix)) {}
  template <typename T>
  void operator()(const char* key, const T& value, const char* doc = "") {
    std::string path = prefix_.empty() ? key : prefix_ + "." + key;
    if constexpr (std::is_arithmetic_v<T> || std::is_same_v<T, std::string> || config_detail::is_array<T>::value ||
                  config_detail::is_vector<T>::value) {
      rows_.push_back({path, ConfigWriter::to_value(value).dump(), doc});
    } else {
      ConfigDoc sub(path);
      const_cast<T&>(value).visit(sub);
      rows_.insert(rows_.end(), sub.rows_.begin(), sub.rows_.end());
    }
  }
  struct Row {
    std::string key, default_value, doc;
  };
  std::vector<Row> rows_;

 private:
  std::string prefix_;
};

template <typename T>
T config_from_json(const json& j, const std::string& path = "") {
  T out;
  ConfigReader::read_value(j, out, path);
  return out;
}
template <typename T>
json config_to_json(const T& v) {
  return ConfigWriter::to_value(v);
}

// Applies "a.b.c=value" to `j`: the value is parsed as JSON when it parses (numbers, true/false,
// [lists], "strings"), else taken as a plain string. The key must already exist in `j` (the resolved
// defaults hold every key), so a misspelt key is an error naming it.
void apply_override(json& j, const std::string& assignment);
// Reads a JSON config file (a clear error naming the file and line on a parse error).
json load_json_file(const std::string& path);

}  // namespace meddiff
