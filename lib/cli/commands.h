#pragma once
// Every subcommand is a library function taking its arguments (without "meddiff CMD"), returning the
// exit status, and throwing meddiff::Error / UsageError on failure; tests call them directly.
#include <string>
#include <vector>

namespace meddiff::cli {

using Args_t = std::vector<std::string>;

int run_info(const Args_t& args);
int run_convert(const Args_t& args);
int run_preview(const Args_t& args);
int run_phantoms(const Args_t& args);
int run_train_vqgan(const Args_t& args);
int run_reconstruct(const Args_t& args);
int run_train_ldm(const Args_t& args);
int run_sample(const Args_t& args);
int run_eval(const Args_t& args);
int run_bench(const Args_t& args);
int run_demo(const Args_t& args);
int run_config(const Args_t& args);
int run_index(const Args_t& args);
int run_import(const Args_t& args);
std::string config_keys_markdown();

struct Command {
  const char* name;
  const char* summary;
  int (*run)(const Args_t&);
};

// Runs argv[1] from `table` with meddiff's conventions: --help / --version, an unknown command lists
// the commands and returns 2, errors print one line "meddiff CMD: error: ..." and return 1 (2 for
// usage errors).
int dispatch(const std::vector<Command>& table, int argc, const char* const* argv);

}  // namespace meddiff::cli
