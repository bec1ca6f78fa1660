// meddiff config: the config keys and resolved configs.
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/run_options.h"
#include "train/train_config.h"

#include <iostream>

namespace meddiff::cli {

std::string config_keys_markdown() {
  ConfigDoc doc;
  RunConfig defaults;
  defaults.visit(doc);
  std::string out = "| key | default | meaning |\n|---|---|---|\n";
  for (const auto& row : doc.rows_) out += fmt::format("| `{}` | `{}` | {} |\n", row.key, row.default_value, row.doc);
  return out;
}

int run_config(const Args_t& args) {
  Args a("config",
         "Show the config keys (--keys, a Markdown table of every key with its default) or a resolved config "
         "(defaults <- FILE <- --set overrides), validated.",
         "[FILE]");
  a.add()("file", "Config file", cxxopts::value<std::string>()->default_value(""))
      ("set", "Override a key: key.path=value (repeatable)", cxxopts::value<std::vector<std::string>>())
      ("keys", "Print every key with its default and meaning");
  a.positional({"file"});
  auto r = a.parse(args);
  if (r.count("keys")) {
    std::cout << config_keys_markdown();
    return 0;
  }
  std::cout << config_to_json(resolve_config(r["file"].as<std::string>(), set_overrides(r))).dump(2) << "\n";
  return 0;
}

}  // namespace meddiff::cli
