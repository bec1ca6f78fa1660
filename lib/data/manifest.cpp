#include "data/manifest.h"

#include "core/error.h"
#include "core/fs.h"
#include "core/text.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <sstream>

namespace meddiff {
namespace {

std::string trim(const std::string& s) {
  auto b = s.find_first_not_of(" \t\r\n\"");
  auto e = s.find_last_not_of(" \t\r\n\"");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

std::vector<std::string> split_csv_line(const std::string& line) {
  std::vector<std::string> out;
  std::string cell;
  bool quoted = false;
  for (char c : line) {
    if (c == '"') quoted = !quoted;
    else if (c == ',' && !quoted) { out.push_back(trim(cell)); cell.clear(); }
    else cell += c;
  }
  out.push_back(trim(cell));
  return out;
}

bool parse_int(const std::string& s, int64_t& v) {
  try {
    size_t pos = 0;
    v = std::stoll(s, &pos);
    return pos == s.size();
  } catch (...) {
    return false;
  }
}

fs::path resolve(const fs::path& base, const std::string& p) {
  fs::path path(p);
  return path.is_absolute() ? path : base / path;
}

// What is wrong with an input path of a manifest entry ("" when it is a readable regular file, or a
// folder where folders are allowed): missing, a FIFO or device, or unreadable (a symbolic-link loop).
std::string path_problem(const fs::path& p, bool folder_ok) {
  std::error_code ec;
  auto st = fs::status(p, ec);
  if (ec && ec != std::errc::no_such_file_or_directory) return fmt::format("{}: cannot be read ({})", p.string(), ec.message());
  if (!fs::exists(st)) return fmt::format("{}: no such file", p.string());
  if (fs::is_regular_file(st) || (folder_ok && fs::is_directory(st))) return "";
  if (fs::is_directory(st)) return fmt::format("{}: is a folder, not a file", p.string());
  return fmt::format("{}: not a regular file (a FIFO, socket or device)", p.string());
}

}  // namespace

std::vector<std::string> entry_problems(const std::vector<ManifestEntry>& entries, const std::vector<std::string>& where) {
  std::vector<std::string> problems;
  const size_t channels = entries.empty() ? 1 : entries.front().channel_files().size();
  for (size_t i = 0; i < entries.size(); ++i) {
    const auto& e = entries[i];
    const auto files = e.channel_files();
    if (!e.image.empty() || files.size() > 1)
      for (const auto& c : files)
        if (auto p = path_problem(c.path, /*folder_ok=*/true); !p.empty()) problems.push_back(fmt::format("{}: {}", where[i], p));
    if (files.size() != channels)
      problems.push_back(fmt::format("{}: {} channel(s), the first case has {}", where[i], files.size(), channels));
    if (e.label)
      if (auto p = path_problem(*e.label, false); !p.empty()) problems.push_back(fmt::format("{}: label {}", where[i], p));
    if (e.class_label < 0) problems.push_back(fmt::format("{}: class {} is negative", where[i], e.class_label));
    if (e.class_label >= kMaxClasses)
      problems.push_back(fmt::format("{}: class {} is beyond the largest class id meddiff takes ({}; classes are numbered "
                                     "0, 1, ..., K-1)", where[i], e.class_label, kMaxClasses - 1));
  }
  return problems;
}

std::vector<ChannelFile> ManifestEntry::channel_files() const {
  if (!channels.empty()) return channels;
  return {ChannelFile{image, -1, ""}};
}

int64_t Manifest::num_channels() const {
  if (!channel_names.empty()) return static_cast<int64_t>(channel_names.size());
  return entries.empty() ? 1 : static_cast<int64_t>(entries.front().channel_files().size());
}

std::vector<size_t> select_channels(const Manifest& m, const std::vector<std::string>& wanted, const std::string& key) {
  const auto n = static_cast<size_t>(m.num_channels());
  std::vector<std::string> names = m.channel_names;
  for (size_t c = names.size(); c < n; ++c) names.push_back(n == 1 ? "image" : fmt::format("channel_{}", c));
  std::vector<size_t> out;
  if (wanted.empty()) {
    for (size_t c = 0; c < n; ++c) out.push_back(c);
    return out;
  }
  for (const auto& w : wanted) {
    auto it = std::find_if(names.begin(), names.end(), [&](const std::string& x) { return to_lower(x) == to_lower(w); });
    if (it == names.end())
      fail("{}: no channel '{}' in {} (its channels: {})", key, w, m.source, fmt::join(names, ", "));
    auto idx = static_cast<size_t>(it - names.begin());
    if (std::find(out.begin(), out.end(), idx) != out.end()) fail("{}: channel '{}' named twice", key, w);
    out.push_back(idx);
  }
  return out;
}

bool wildcard_match(const std::string& pat, const std::string& s) {
  size_t p = 0, i = 0, star = std::string::npos, mark = 0;
  while (i < s.size()) {
    if (p < pat.size() && (pat[p] == '?' || pat[p] == s[i])) { ++p; ++i; }
    else if (p < pat.size() && pat[p] == '*') { star = p++; mark = i; }
    else if (star != std::string::npos) { p = star + 1; i = ++mark; }
    else return false;
  }
  while (p < pat.size() && pat[p] == '*') ++p;
  return p == pat.size();
}

bool has_image_extension(const fs::path& p) {
  static const char* exts[] = {"nii", "nii.gz", "nrrd", "nhdr", "mha", "mhd"};
  std::string e = full_extension(p);
  return std::any_of(std::begin(exts), std::end(exts), [&](const char* x) { return e == x; });
}

std::vector<int64_t> Manifest::classes_used() const {
  std::vector<int64_t> c;
  for (const auto& e : entries) c.push_back(e.class_label);
  std::sort(c.begin(), c.end());
  c.erase(std::unique(c.begin(), c.end()), c.end());
  return c;
}

int64_t Manifest::num_classes() const {
  int64_t n = 0;
  for (const auto& e : entries) n = std::max(n, e.class_label + 1);
  return n;
}

Manifest load_manifest(const std::string& source, ManifestKind kind) {
  const bool labels = kind == ManifestKind::LabelMaps;
  Manifest m;
  m.source = source;
  std::vector<std::string> where, problems;
  fs::path src(source);
  std::string ext = full_extension(src);
  // label maps may also be one file: a list of one
  const bool one_map = labels && fs::is_regular_file(src) && has_image_extension(src);
  if (fs::is_directory(src) || one_map || source.find_first_of("*?") != std::string::npos) {
    fs::path dir = fs::is_directory(src) ? src : src.parent_path();
    std::string pattern = fs::is_directory(src) ? "*" : src.filename().string();
    if (dir.empty()) dir = ".";
    if (!fs::is_directory(dir)) fail("{}: no such folder", dir.string());
    std::vector<fs::path> files;
    if (one_map)
      files.push_back(src);
    else
      for (const auto& f : fs::directory_iterator(dir))
        if (f.is_regular_file() && has_image_extension(f.path()) && wildcard_match(pattern, f.path().filename().string()))
          files.push_back(f.path());
    std::sort(files.begin(), files.end());
    if (files.empty()) fail("{}: no image files (nii, nii.gz, nrrd, mha, mhd) match", source);
    for (auto& f : files) {
      m.entries.push_back(ManifestEntry{f, 0, std::nullopt, "", {}, ""});
      where.push_back(f.filename().string());
    }
  } else if (ext == "csv") {
    std::string text = read_text(src);
    std::istringstream in(text);
    std::string line;
    if (!std::getline(in, line)) fail("{}: empty CSV (expected a header image,class[,label])", source);
    auto header = split_csv_line(line);
    int col_img = -1, col_cls = -1, col_label = -1;
    for (int c = 0; c < static_cast<int>(header.size()); ++c) {
      const auto& h = header[static_cast<size_t>(c)];
      if (h == "image") col_img = c;
      else if (h == "class") col_cls = c;
      else if (h == "label" || h == "mask") col_label = c;
      else fail("{}: unknown column '{}' (expected image, class, label)", source, h);
    }
    if (col_img < 0 && !(labels && col_label >= 0))
      fail("{}: no '{}' column in the header", source, labels ? "label' (or 'image" : "image");
    int lineno = 1;
    while (std::getline(in, line)) {
      ++lineno;
      if (trim(line).empty()) continue;
      auto cells = split_csv_line(line);
      std::string w = fmt::format("line {}", lineno);
      if (cells.size() != header.size()) {
        problems.push_back(fmt::format("{}: {} cells, header has {}", w, cells.size(), header.size()));
        continue;
      }
      ManifestEntry e;
      if (col_img >= 0) e.image = resolve(src.parent_path(), cells[static_cast<size_t>(col_img)]);
      if (col_cls >= 0 && !parse_int(cells[static_cast<size_t>(col_cls)], e.class_label)) {
        problems.push_back(fmt::format("{}: class '{}' is not an integer", w, cells[static_cast<size_t>(col_cls)]));
        continue;
      }
      if (col_label >= 0 && !cells[static_cast<size_t>(col_label)].empty())
        e.label = resolve(src.parent_path(), cells[static_cast<size_t>(col_label)]);
      if (e.image.empty() && !e.label) {
        problems.push_back(fmt::format("{}: no label map named", w));
        continue;
      }
      m.entries.push_back(e);
      where.push_back(w);
    }
  } else if (ext == "json") {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(read_text(src));
    } catch (const nlohmann::json::parse_error& e) {
      fail("{}: not valid JSON: {}", source, e.what());
    }
    const nlohmann::json* cases = &j;
    if (j.is_object()) {
      auto names = [&](const char* key) {
        std::vector<std::string> out;
        if (!j.contains(key)) return out;
        if (!j[key].is_array()) fail("{}: '{}' must be a list of names", source, key);
        for (const auto& n : j[key]) {
          if (!n.is_string()) fail("{}: '{}' must be a list of names", source, key);
          out.push_back(n.get<std::string>());
        }
        return out;
      };
      for (auto it = j.begin(); it != j.end(); ++it)
        if (it.key() != "cases" && it.key() != "description" && it.key() != "layout" && it.key() != "channel_names" &&
            it.key() != "label_names" && it.key() != "source")
          fail("{}: unknown key '{}' (expected cases, channel_names, label_names, layout, source, description)", source, it.key());
      if (!j.contains("cases")) fail("{}: no 'cases' list", source);
      cases = &j["cases"];
      m.channel_names = names("channel_names");
      m.label_names = names("label_names");
      if (j.contains("layout") && j["layout"].is_string()) m.layout = j["layout"].get<std::string>();
    }
    if (!cases->is_array()) fail("{}: 'cases' must be a list", source);
    for (size_t i = 0; i < cases->size(); ++i) {
      const auto& c = (*cases)[i];
      std::string w = fmt::format("cases[{}]", i);
      const bool named = c.is_object() && ((c.contains("image") && c["image"].is_string()) ||
                                           (!labels && c.contains("channels") && c["channels"].is_array() && !c["channels"].empty()) ||
                                           (labels && ((c.contains("label") && c["label"].is_string()) ||
                                                       (c.contains("mask") && c["mask"].is_string()))));
      if (!named) {
        problems.push_back(w + (labels ? ": needs a 'label' (or 'image') path" : ": needs an 'image' path"));
        continue;
      }
      ManifestEntry e;
      bool ok = true;
      for (auto it = c.begin(); it != c.end(); ++it) {
        if (it.key() == "image") e.image = resolve(src.parent_path(), it->get<std::string>());
        else if (it.key() == "class") {
          if (!it->is_number_integer()) { problems.push_back(w + ".class: must be an integer"); ok = false; }
          else e.class_label = it->get<int64_t>();
        } else if (it.key() == "label" || it.key() == "mask") {
          if (!it->is_string()) { problems.push_back(w + "." + it.key() + ": must be a path"); ok = false; }
          else e.label = resolve(src.parent_path(), it->get<std::string>());
        } else if (it.key() == "channels") {
          for (size_t k = 0; k < it->size() && ok; ++k) {
            const auto& ch = (*it)[k];
            ChannelFile f;
            if (ch.is_string()) f.path = resolve(src.parent_path(), ch.get<std::string>());
            else if (ch.is_object() && ch.contains("file") && ch["file"].is_string()) {
              f.path = resolve(src.parent_path(), ch["file"].get<std::string>());
              for (auto kt = ch.begin(); kt != ch.end() && ok; ++kt) {
                if (kt.key() == "component" && kt->is_number_integer() && kt->get<int64_t>() >= 0) f.component = kt->get<int64_t>();
                else if (kt.key() == "series_uid" && kt->is_string()) f.series_uid = kt->get<std::string>();
                else if (kt.key() != "file") {
                  problems.push_back(fmt::format("{}.channels[{}].{}: unknown key or wrong type (component: an integer >= 0, "
                                                 "series_uid: a string)", w, k, kt.key()));
                  ok = false;
                }
              }
            } else {
              problems.push_back(fmt::format("{}.channels[{}]: a path or {{\"file\": path, \"component\": k}}", w, k));
              ok = false;
            }
            e.channels.push_back(f);
          }
          if (ok && !e.channels.empty()) e.image = e.channels.front().path;
        } else if (it.key() == "series_uid") {
          if (!it->is_string()) { problems.push_back(w + ".series_uid: must be a string"); ok = false; }
          else e.channels = {ChannelFile{e.image, -1, it->get<std::string>()}};
        } else if (it.key() == "id" || it.key() == "info") {
          if (it->is_string()) (it.key() == "id" ? e.id : e.info) = it->get<std::string>();
        } else {
          problems.push_back(fmt::format("{}: unknown key '{}'", w, it.key()));
          ok = false;
        }
      }
      if (!ok) continue;
      m.entries.push_back(e);
      where.push_back(w);
    }
  } else {
    if (!fs::exists(src)) fail("{}: no such file or folder", source);
    fail("{}: a manifest is a folder, a glob, a .csv or a .json file", source);
  }
  // "series_uid" names a series of the "image" folder; the two keys may come in either order
  for (auto& e : m.entries)
    if (e.channels.size() == 1 && e.channels.front().path.empty()) e.channels.front().path = e.image;
  for (auto& p : entry_problems(m.entries, where)) problems.push_back(p);
  if (!m.channel_names.empty() && !m.entries.empty() &&
      m.entries.front().channel_files().size() != m.channel_names.size())
    problems.push_back(fmt::format("channel_names lists {} channels, the cases have {}", m.channel_names.size(),
                                   m.entries.front().channel_files().size()));
  if (!problems.empty()) {
    std::string all;
    for (size_t i = 0; i < problems.size(); ++i) all += (i ? "; " : "") + problems[i];
    fail("{}: {} bad entr{}: {}", source, problems.size(), problems.size() == 1 ? "y" : "ies", all);
  }
  if (m.entries.empty()) fail("{}: no cases", source);
  return m;
}

nlohmann::json manifest_json(const Manifest& m, const fs::path& base) {
  nlohmann::json cases = nlohmann::json::array();
  auto rel = [&](const fs::path& p) { return base.empty() ? p.string() : fs::absolute(p).lexically_relative(base).string(); };
  for (const auto& e : m.entries) {
    nlohmann::json c = nlohmann::json::object();
    if (!e.id.empty()) c["id"] = e.id;
    const auto files = e.channel_files();
    if (files.size() == 1 && files.front().component < 0) {
      c["image"] = rel(files.front().path);
      if (!files.front().series_uid.empty()) c["series_uid"] = files.front().series_uid;
    } else {
      nlohmann::json chans = nlohmann::json::array();
      for (const auto& f : files) {
        if (f.component < 0 && f.series_uid.empty()) { chans.push_back(rel(f.path)); continue; }
        nlohmann::json o = {{"file", rel(f.path)}};
        if (f.component >= 0) o["component"] = f.component;
        if (!f.series_uid.empty()) o["series_uid"] = f.series_uid;
        chans.push_back(o);
      }
      c["channels"] = chans;
    }
    c["class"] = e.class_label;
    if (e.label) c["label"] = rel(*e.label);
    if (!e.info.empty()) c["info"] = e.info;
    cases.push_back(c);
  }
  nlohmann::json j = nlohmann::json::object();
  if (m.layout != "list") j["layout"] = m.layout;
  if (!m.channel_names.empty()) j["channel_names"] = m.channel_names;
  if (!m.label_names.empty()) j["label_names"] = m.label_names;
  j["cases"] = cases;
  return j;
}

void save_manifest_json(const Manifest& m, const fs::path& path) {
  write_text_atomically(path, manifest_json(m, fs::absolute(path).parent_path()).dump(2) + "\n");
}

}  // namespace meddiff
