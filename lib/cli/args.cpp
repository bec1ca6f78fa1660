#include "cli/args.h"

#include "core/error.h"
#include "core/threads.h"

#include <iostream>
#include <sstream>

namespace meddiff::cli {

Args::Args(const std::string& command, const std::string& summary, const std::string& positional_help)
    : command_(command), opts_("meddiff " + command, summary) {
  opts_.positional_help(positional_help).show_positional_help();
  opts_.add_options()("h,help", "Show this help")
      ("threads", "CPU threads (default: every core, or OMP_NUM_THREADS)", cxxopts::value<int>());
}

cxxopts::ParseResult Args::parse(const std::vector<std::string>& args) {
  std::vector<const char*> argv{command_.c_str()};
  for (const auto& a : args) argv.push_back(a.c_str());
  try {
    auto r = opts_.parse(static_cast<int>(argv.size()), argv.data());
    if (r.count("help")) {
      std::cout << opts_.help() << std::flush;
      throw HelpShown{};
    }
    if (!r.unmatched().empty()) usage_fail("unexpected argument '{}'", r.unmatched().front());
    if (r.count("threads")) {
      int n = r["threads"].as<int>();
      if (n < 1 || n > 4096) usage_fail("--threads must be within 1..4096 (got {})", n);
      set_cpu_threads(n);
    }
    return r;
  } catch (const cxxopts::exceptions::exception& e) {
    usage_fail("{}", e.what());
  }
}

std::vector<std::string> split_commas(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(item);
  return out;
}

namespace {
template <typename T, size_t N>
std::array<T, N> parse_list(const std::string& text, const std::string& flag) {
  std::array<T, N> out{};
  size_t i = 0;
  for (const auto& item : split_commas(text)) {
    if (i >= N) usage_fail("{} takes {} comma-separated numbers (got '{}')", flag, N, text);
    try {
      size_t pos = 0;
      if constexpr (std::is_integral_v<T>) out[i] = static_cast<T>(std::stoll(item, &pos));
      else out[i] = static_cast<T>(std::stod(item, &pos));
      if (pos != item.size()) throw std::invalid_argument(item);
    } catch (const std::exception&) {
      usage_fail("{}: '{}' is not a number", flag, item);
    }
    ++i;
  }
  if (i != N) usage_fail("{} takes {} comma-separated numbers (got '{}')", flag, N, text);
  return out;
}
}  // namespace

std::array<int64_t, 3> parse_int3(const std::string& t, const std::string& f) { return parse_list<int64_t, 3>(t, f); }
std::array<int64_t, 2> parse_int2(const std::string& t, const std::string& f) { return parse_list<int64_t, 2>(t, f); }
std::array<double, 3> parse_double3(const std::string& t, const std::string& f) { return parse_list<double, 3>(t, f); }
std::array<double, 2> parse_double2(const std::string& t, const std::string& f) { return parse_list<double, 2>(t, f); }

std::string required(const cxxopts::ParseResult& r, const std::string& name) {
  if (!r.count(name)) usage_fail("missing {}", name);
  return r[name].as<std::string>();
}

}  // namespace meddiff::cli
