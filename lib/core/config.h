#pragma once
// Configuration: JSON files + `--set key.path=value` overrides, checked strictly.
//
// Every params struct lists its keys once, in a visit() member:
//   template <typename V> void visit(V& v) {
//     v("n_codes", n_codes, "codebook size");
//   }
// and the same list drives reading (unknown keys and wrong types are errors naming the dotted key),
// writing (the fully resolved config) and the documentation of the keys.
//
// One axis order for users: every key that holds a shape, a spacing or a per-axis factor is typed
// x, y, z (the order of NIfTI/ITK headers, `meddiff info`, MONAI and MAISI). Shapes and factors are
// held in tensor order [D, H, W] = (z, y, x) in memory; such a key is listed as
//   v("shape", xyz(shape), "...")
// and reversed here, in reading, writing and documenting, and nowhere else. Spacings are held x, y, z.
#include "core/error.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <optional>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

namespace meddiff {

using json = nlohmann::json;

// A per-axis triple (or a list of them) held [D, H, W] and typed x, y, z: see above.
template <typename T>
struct XyzRef {
  T& value;  // std::array<U, 3> or std::vector<std::array<U, 3>>
};
template <typename T>
XyzRef<T> xyz(T& value) {
  return {value};
}
template <typename U>
void reverse_axes(std::array<U, 3>& a) {
  std::swap(a[0], a[2]);
}
template <typename U>
void reverse_axes(std::vector<std::array<U, 3>>& v) {
  for (auto& a : v) std::swap(a[0], a[2]);
}
template <typename T>
T reversed_axes(T v) {
  reverse_axes(v);
  return v;
}
// The position a user types for tensor axis a (0 = D) of a shape: 2 - a.
inline size_t typed_axis(size_t dhw_axis) { return 2 - dhw_axis; }

// The keys whose lists are per-axis ([D, H, W] in memory, x, y, z in files): their dotted paths with
// "[]" for a list of triples. Configs written before the axis order was fixed (no "axis_order" key)
// held them D, H, W; upgrade_axis_order() turns such a config (a checkpoint's) into today's.
const std::vector<std::string>& axis_keys();
inline constexpr const char* kAxisOrder = "xyz";
// A checkpoint's config without "axis_order": reverses the axis keys and adds the key.
void upgrade_axis_order(json& config);
// A user's config file without "axis_order": an error naming the file and key when an axis key holds a
// list that reads differently in the two orders (ambiguous); else nothing.
void check_axis_order(const json& file_config, const std::string& file);

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

  template <typename T>
  void operator()(const char* key, XyzRef<T> ref, const char* doc = "") {
    (*this)(key, ref.value, doc);  // typed x, y, z (errors name the typed position)
    if (j_.contains(key)) reverse_axes(ref.value);
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
  void operator()(const char* key, XyzRef<T> ref, const char* doc = "") {
    (*this)(key, reversed_axes(ref.value), doc);
  }
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
  void operator()(const char* key, XyzRef<T> ref, const char* doc = "") {
    (*this)(key, reversed_axes(ref.value), doc);
  }
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
