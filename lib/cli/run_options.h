#pragma once
// Options and config resolution shared by the config-driven commands (train-vqgan, train-ldm, config).
#include "cli/args.h"
#include "train/run_folder.h"
#include "train/train_config.h"

#include <optional>

namespace meddiff::cli {

// --config FILE, --set k=v (repeatable), --out DIR, --resume, --force, --dry-run, --cache DIR, --print-config.
void add_run_options(Args& a, const std::string& default_out);
// --resume, --force (a new run replacing an earlier one in --out) or neither; both together are a usage error.
RunStart run_start(const cxxopts::ParseResult& r);
// --set values given on the command line (and --cache DIR as data.cache).
std::vector<std::string> set_overrides(const cxxopts::ParseResult& r);
// defaults <- --config <- --set, validated. With --print-config the config is printed and nullopt returned.
std::optional<RunConfig> resolve_run_config(const cxxopts::ParseResult& r);

}  // namespace meddiff::cli
