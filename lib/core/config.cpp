#include "core/config.h"

#include "core/fs.h"

namespace meddiff {

std::string config_detail::type_name(const json& j) {
  switch (j.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "an integer (" + j.dump() + ")";
    case json::value_t::number_float: return "a number (" + j.dump() + ")";
    case json::value_t::string: return "a string (" + j.dump() + ")";
    case json::value_t::array: return "a list";
    case json::value_t::object: return "an object";
    default: return "an unsupported value";
  }
}

void apply_override(json& j, const std::string& assignment) {
  auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0) fail("--set '{}': expected key.path=value", assignment);
  std::string key = assignment.substr(0, eq), text = assignment.substr(eq + 1);
  json* node = &j;
  size_t start = 0;
  while (true) {
    auto dot = key.find('.', start);
    std::string part = key.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (!node->is_object() || !node->contains(part)) fail("config: unknown key '{}' (in --set {})", key, assignment);
    node = &(*node)[part];
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  json value;
  try {
    value = json::parse(text);
  } catch (const json::parse_error&) {
    value = text;
  }
  if (node->is_object()) fail("config: '{}' is a section; set one of its keys", key);
  *node = value;
}

const std::vector<std::string>& axis_keys() {
  static const std::vector<std::string> keys = {"data.shape", "vqgan.downsample", "vqgan_train.patch", "ldm.unet.downsample[]"};
  return keys;
}

namespace {
// The node at a dotted path (without a trailing "[]"), or nullptr.
json* node_at(json& j, const std::string& path) {
  json* node = &j;
  size_t start = 0;
  while (true) {
    auto dot = path.find('.', start);
    std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (!node->is_object() || !node->contains(part)) return nullptr;
    node = &(*node)[part];
    if (dot == std::string::npos) return node;
    start = dot + 1;
  }
}

// Calls f(triple) for each 3-element list the axis key `path` holds in `j`.
template <typename F>
void for_each_triple(json& j, const std::string& path, F&& f) {
  const bool list = path.size() > 2 && path.compare(path.size() - 2, 2, "[]") == 0;
  json* node = node_at(j, list ? path.substr(0, path.size() - 2) : path);
  if (!node || !node->is_array()) return;
  if (!list) {
    if (node->size() == 3) f(*node);
    return;
  }
  for (auto& t : *node)
    if (t.is_array() && t.size() == 3) f(t);
}
}  // namespace

void upgrade_axis_order(json& config) {
  if (!config.is_object() || config.contains("axis_order")) return;
  for (const auto& k : axis_keys()) for_each_triple(config, k, [](json& t) { std::swap(t[0], t[2]); });
  config["axis_order"] = kAxisOrder;
}

void check_axis_order(const json& file_config, const std::string& file) {
  if (!file_config.is_object() || file_config.contains("axis_order")) return;
  json copy = file_config;
  for (const auto& k : axis_keys())
    for_each_triple(copy, k, [&](json& t) {
      if (t[0] != t[2])
        fail("{}: '{}' is {}, which reads differently as x,y,z and as z,y,x, and the file does not say its axis order: "
             "meddiff reads every shape and per-axis factor as x,y,z; write them so and add \"axis_order\": \"xyz\" to the file",
             file, k.substr(0, k.find('[')), t.dump());
    });
}

json load_json_file(const std::string& path) {
  std::string text = read_text(path);
  try {
    return json::parse(text, nullptr, true, /*ignore_comments=*/true);
  } catch (const json::parse_error& e) {
    // byte offset -> line number
    size_t line = 1;
    for (size_t i = 0; i < std::min(text.size(), e.byte); ++i)
      if (text[i] == '\n') ++line;
    fail("{}: not valid JSON (line {}): {}", path, line, e.what());
  }
}

}  // namespace meddiff
