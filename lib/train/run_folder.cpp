#include "train/run_folder.h"

#include "core/config.h"
#include "core/error.h"
#include "core/fs.h"

#include <fstream>
#include <regex>

namespace meddiff {
namespace fs = std::filesystem;

namespace {
bool trainer_entry(const std::string& n) {
  static const std::regex step_ckpt(R"(step-\d+\.pt)");
  return n == "last.pt" || n == "config.json" || n == "metrics.jsonl" || n == "previews" || n == "latents.pt" || n == "mask_bank.pt" ||
         n == ".meddiff.lock" || is_temp_name(n) || std::regex_match(n, step_ckpt);
}
}  // namespace

RunFolder::RunFolder(const fs::path& out, const std::string& command, bool resume) : out_(out) {
  if (out_.filename().empty() && out_.has_parent_path()) out_ = out_.parent_path();
  std::error_code ec;
  if (fs::exists(out_, ec)) {
    if (!fs::is_directory(out_, ec)) fail("{}: exists and is not a folder", out_.string());
    for (const auto& e : fs::directory_iterator(out_)) {
      std::string n = e.path().filename().string();
      if (!trainer_entry(n))
        fail("{}: holds '{}', which a meddiff trainer did not write; give a new or empty --out", out_.string(), n);
    }
  }
  fs::create_directories(out_ / "previews");
  lock_.emplace(FileLock::acquire(out_ / ".meddiff.lock", command, out_.string()));
  remove_stale_temps(out_, /*all=*/true);
  remove_stale_temps(out_ / "previews", /*all=*/true);
  if (!resume && fs::exists(last()))
    fail("{}: a training run is already here; use --resume to continue it or another --out", out_.string());
  if (resume && !fs::exists(last())) fail("{}: nothing to resume (no last.pt)", out_.string());
}

std::unique_ptr<JsonlWriter> RunFolder::metrics(int64_t start_step, bool resume) const {
  fs::path p = out_ / "metrics.jsonl";
  if (!resume) return std::make_unique<JsonlWriter>(p.string(), /*append=*/false);
  // Keep what was logged up to the checkpoint; later lines belong to steps that will run again.
  std::string kept;
  if (fs::exists(p)) {
    std::ifstream in(p);
    std::string line;
    while (std::getline(in, line)) {
      auto j = nlohmann::json::parse(line, nullptr, false);
      if (j.is_object() && j.contains("step") && j["step"].is_number_integer() && j["step"].get<int64_t>() <= start_step)
        kept += line + "\n";
    }
  }
  write_text_atomically(p, kept);
  return std::make_unique<JsonlWriter>(p.string(), /*append=*/true);
}

nlohmann::json data_fingerprint(const DataParams& p, const std::vector<TrainingVolume>& cases) {
  nlohmann::json params = config_to_json(p);
  params.erase("manifest");  // the data may move; its content is what counts
  nlohmann::json list = nlohmann::json::array();
  for (const auto& c : cases) {
    std::error_code ec;
    auto size = fs::file_size(c.source, ec);
    nlohmann::json item = {fs::path(c.source).filename().string(), ec ? -1 : static_cast<int64_t>(size), c.class_label};
    if (p.label_conditioned()) {  // the label maps condition the model: they are part of the data
      auto label_size = fs::file_size(c.label_source, ec);
      item.push_back(fs::path(c.label_source).filename().string());
      item.push_back(ec ? -1 : static_cast<int64_t>(label_size));
    }
    list.push_back(item);
  }
  std::sort(list.begin(), list.end());
  return {{"params", params}, {"cases", list}};
}

std::string data_difference(const nlohmann::json& recorded, const nlohmann::json& now) {
  if (!recorded.is_object() || !recorded.contains("params")) return "";  // an older checkpoint: nothing recorded
  for (const auto& [k, v] : now["params"].items())
    if (!recorded["params"].contains(k) || recorded["params"][k] != v)
      return fmt::format("data.{}: {} (checkpoint) vs {} (now)", k,
                         recorded["params"].contains(k) ? recorded["params"][k].dump() : "absent", v.dump());
  const auto& a = recorded["cases"];
  const auto& b = now["cases"];
  if (a == b) return "";
  if (a.size() != b.size()) return fmt::format("the checkpoint was trained on {} cases, the data now has {}", a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i] != b[i]) return fmt::format("case {} (file, bytes, class) vs {} now", a[i].dump(), b[i].dump());
  return "";
}

}  // namespace meddiff
