#include "data/manifest.h"

#include "core/error.h"
#include "core/fs.h"

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

// Appends "where: problem" for every missing or unusable file and every class out of range.
void check_files(const Manifest& m, std::vector<std::string>& problems, const std::vector<std::string>& where) {
  for (size_t i = 0; i < m.entries.size(); ++i) {
    const auto& e = m.entries[i];
    if (!e.image.empty())
      if (auto p = path_problem(e.image, /*folder_ok=*/true); !p.empty()) problems.push_back(fmt::format("{}: {}", where[i], p));
    if (e.label)
      if (auto p = path_problem(*e.label, false); !p.empty()) problems.push_back(fmt::format("{}: label {}", where[i], p));
    if (e.class_label < 0) problems.push_back(fmt::format("{}: class {} is negative", where[i], e.class_label));
    if (e.class_label >= kMaxClasses)
      problems.push_back(fmt::format("{}: class {} is beyond the largest class id meddiff takes ({}; classes are numbered "
                                     "0, 1, ..., K-1)", where[i], e.class_label, kMaxClasses - 1));
  }
}

}  // namespace

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
  if (fs::is_directory(src) || source.find_first_of("*?") != std::string::npos) {
    fs::path dir = fs::is_directory(src) ? src : src.parent_path();
    std::string pattern = fs::is_directory(src) ? "*" : src.filename().string();
    if (dir.empty()) dir = ".";
    if (!fs::is_directory(dir)) fail("{}: no such folder", dir.string());
    std::vector<fs::path> files;
    for (const auto& f : fs::directory_iterator(dir))
      if (f.is_regular_file() && has_image_extension(f.path()) && wildcard_match(pattern, f.path().filename().string()))
        files.push_back(f.path());
    std::sort(files.begin(), files.end());
    if (files.empty()) fail("{}: no image files (nii, nii.gz, nrrd, mha, mhd) match", source);
    for (auto& f : files) {
      m.entries.push_back({f, 0, std::nullopt});
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
      for (auto it = j.begin(); it != j.end(); ++it)
        if (it.key() != "cases" && it.key() != "description") fail("{}: unknown key '{}' (expected cases)", source, it.key());
      if (!j.contains("cases")) fail("{}: no 'cases' list", source);
      cases = &j["cases"];
    }
    if (!cases->is_array()) fail("{}: 'cases' must be a list", source);
    for (size_t i = 0; i < cases->size(); ++i) {
      const auto& c = (*cases)[i];
      std::string w = fmt::format("cases[{}]", i);
      const bool named = c.is_object() && ((c.contains("image") && c["image"].is_string()) ||
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
        } else if (it.key() != "id") {
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
  check_files(m, problems, where);
  if (!problems.empty()) {
    std::string all;
    for (size_t i = 0; i < problems.size(); ++i) all += (i ? "; " : "") + problems[i];
    fail("{}: {} bad entr{}: {}", source, problems.size(), problems.size() == 1 ? "y" : "ies", all);
  }
  if (m.entries.empty()) fail("{}: no cases", source);
  return m;
}

void save_manifest_json(const Manifest& m, const fs::path& path) {
  nlohmann::json cases = nlohmann::json::array();
  fs::path base = path.parent_path();
  for (const auto& e : m.entries) {
    nlohmann::json c = {{"image", fs::relative(e.image, base).string()}, {"class", e.class_label}};
    if (e.label) c["label"] = fs::relative(*e.label, base).string();
    cases.push_back(c);
  }
  write_text_atomically(path, nlohmann::json{{"cases", cases}}.dump(2) + "\n");
}

}  // namespace meddiff
