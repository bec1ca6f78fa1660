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
