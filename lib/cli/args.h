#pragma once
// Command-line parsing shared by the subcommands (cxxopts), with meddiff's error conventions:
// a bad flag or value is a UsageError naming it; --help prints the help and ends the command.
// Repeated flags collect one value each; a value is never split on commas ("--set a=[1,2,3]").
#define CXXOPTS_VECTOR_DELIMITER '\0'
#include <cxxopts.hpp>

#include <array>
#include <optional>
#include <string>
#include <vector>

namespace meddiff::cli {

// Thrown after --help has been printed; dispatch exits 0.
struct HelpShown {};

class Args {
 public:
  Args(const std::string& command, const std::string& summary, const std::string& positional_help = "");
  cxxopts::OptionAdder add() { return opts_.add_options(); }
  void positional(const std::vector<std::string>& names) { opts_.parse_positional(names); }
  // Parses args (without the program and command names). Prints help and throws HelpShown on --help.
  cxxopts::ParseResult parse(const std::vector<std::string>& args);
  std::string help() const { return opts_.help(); }

 private:
  std::string command_;
  cxxopts::Options opts_;
};

// "32,64,64" -> {32, 64, 64}; throws UsageError naming `flag`.
std::array<int64_t, 3> parse_int3(const std::string& text, const std::string& flag);
std::array<int64_t, 2> parse_int2(const std::string& text, const std::string& flag);
std::array<double, 3> parse_double3(const std::string& text, const std::string& flag);
std::array<double, 2> parse_double2(const std::string& text, const std::string& flag);
// "a,b,c" -> {"a", "b", "c"} (std::getline semantics: inner empty items kept, a trailing comma adds none).
std::vector<std::string> split_commas(const std::string& text);
// The value of a required positional/flag, or a UsageError naming it.
std::string required(const cxxopts::ParseResult& r, const std::string& name);

}  // namespace meddiff::cli
