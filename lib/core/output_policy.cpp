#include "core/output_policy.h"

#include "core/error.h"

namespace meddiff {
namespace fs = std::filesystem;

namespace {
fs::path resolved(const fs::path& p) {
  std::error_code ec;
  fs::path a = fs::absolute(p, ec);
  if (ec) a = p;
  fs::path c = fs::weakly_canonical(a, ec);
  return (ec ? a : c).lexically_normal();
}

// Component-wise prefix test on resolved paths ("/a/bc" is not within "/a/b").
bool prefix_of(const fs::path& outer, const fs::path& inner) {
  auto o = outer.begin(), i = inner.begin();
  for (; o != outer.end(); ++o, ++i) {
    if (o->empty()) continue;  // trailing separator
    if (i == inner.end() || *o != *i) return false;
  }
  return true;
}
}  // namespace

bool is_within(const fs::path& inner, const fs::path& outer) {
  std::error_code ec;
  if (fs::exists(inner, ec) && fs::exists(outer, ec) && fs::equivalent(inner, outer, ec)) return true;
  return prefix_of(resolved(outer), resolved(inner));
}

bool same_or_nested(const fs::path& a, const fs::path& b) { return is_within(a, b) || is_within(b, a); }

void check_output(const fs::path& out_in, const OutputRules& rules) {
  fs::path out = out_in;
  if (out.filename().empty() && out.has_parent_path()) out = out.parent_path();  // "dir/" -> "dir"
  const std::string name = out_in.string();
  if (out.empty()) fail("output path is empty");
  for (const auto& in : rules.inputs) {
    if (in.empty()) continue;
    if (is_within(out, in)) {
      std::error_code ec;
      bool same = fs::exists(out, ec) && fs::exists(in, ec) && fs::equivalent(out, in, ec);
      fail("{}: is {} the input {}; write the output somewhere else", name,
           same || resolved(out) == resolved(in) ? "the same as" : "inside", in.string());
    }
    if (is_within(in, out)) fail("{}: holds the input {}; write the output somewhere else", name, in.string());
  }
  std::error_code ec;
  const bool exists = fs::exists(fs::symlink_status(out, ec)) && fs::exists(out, ec);
  if (rules.folder) {
    std::error_code cwd_ec;
    fs::path cwd = fs::current_path(cwd_ec);
    if (!cwd_ec && is_within(cwd, out))
      fail("{}: is the current folder or one of its parents; give a new or empty folder", name);
    if (!exists) return;
    if (!fs::is_directory(out, ec)) fail("{}: exists and is not a folder (not replacing it)", name);
    if (fs::is_empty(out, ec)) return;
    std::string foreign = rules.foreign_entry ? rules.foreign_entry(out) : "its contents";
    if (!foreign.empty())
      fail("{}: folder exists and holds {} that meddiff did not write; not replacing it (give a new or empty folder)",
           name, foreign);
    if (!rules.force) fail("{}: folder exists (holds {}); pass --force to replace it", name, rules.owned_what);
    return;
  }
  if (!exists) return;
  if (fs::is_directory(out, ec)) fail("{}: is a folder; give a file name", name);
  if (!rules.force) fail("{}: exists; pass --force to replace it", name);
}

}  // namespace meddiff
