#include "cli/run_options.h"

#include <nlohmann/json.hpp>

#include <iostream>

namespace meddiff::cli {

void add_run_options(Args& a, const std::string& default_out) {
  a.add()("config", "JSON config file (see configs/)", cxxopts::value<std::string>()->default_value(""))
      ("set", "Override a config key: key.path=value (repeatable)", cxxopts::value<std::vector<std::string>>())
      ("out", "Training folder", cxxopts::value<std::string>()->default_value(default_out))
      ("resume", "Continue the run in --out from last.pt (or, if a kill left none, its newest step-NNNNNNN.pt)")
      ("force", "Start a new run in --out, deleting the earlier run's checkpoints, logs and previews there")
      ("dry-run", "Validate the config, print it and what it builds, measure the training memory (seconds: steps on two "
                  "reduced shapes, extrapolated), and exit")
      ("measure-full", "With --dry-run: measure with real steps at the full training shape (minutes at clinical sizes; the "
                       "expected duration is printed first)")
      ("cache", "Preprocessed dataset cache folder (data.cache): cases are preprocessed once, in parallel, and mapped from it",
       cxxopts::value<std::string>())
      ("print-config", "Print the resolved config and exit");
}

RunStart run_start(const cxxopts::ParseResult& r) {
  if (r.count("resume") && r.count("force")) usage_fail("--resume continues the run in --out and --force replaces it: give one");
  return r.count("resume") ? RunStart::Resume : r.count("force") ? RunStart::Replace : RunStart::New;
}

std::vector<std::string> set_overrides(const cxxopts::ParseResult& r) {
  auto out = r.count("set") ? r["set"].as<std::vector<std::string>>() : std::vector<std::string>{};
  if (r.count("cache")) out.push_back("data.cache=" + nlohmann::json(r["cache"].as<std::string>()).dump());
  return out;
}

std::optional<RunConfig> resolve_run_config(const cxxopts::ParseResult& r) {
  RunConfig cfg = resolve_config(r["config"].as<std::string>(), set_overrides(r));
  if (r.count("print-config")) {
    std::cout << config_to_json(cfg).dump(2) << "\n";
    return std::nullopt;
  }
  return cfg;
}

}  // namespace meddiff::cli
