#include "cli/run_options.h"

#include <iostream>

namespace meddiff::cli {

void add_run_options(Args& a, const std::string& default_out) {
  a.add()("config", "JSON config file (see configs/)", cxxopts::value<std::string>()->default_value(""))
      ("set", "Override a config key: key.path=value (repeatable)", cxxopts::value<std::vector<std::string>>())
      ("out", "Training folder", cxxopts::value<std::string>()->default_value(default_out))
      ("resume", "Continue the run in --out from last.pt")
      ("dry-run", "Validate the config, print it and what it builds, and exit")
      ("print-config", "Print the resolved config and exit");
}

std::vector<std::string> set_overrides(const cxxopts::ParseResult& r) {
  return r.count("set") ? r["set"].as<std::vector<std::string>>() : std::vector<std::string>{};
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
