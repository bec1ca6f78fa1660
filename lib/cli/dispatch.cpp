#include "cli/args.h"
#include "cli/commands.h"
#include "core/crash_report.h"
#include "core/error.h"
#include "core/version.h"

#include <c10/util/Exception.h>
#include <fmt/format.h>

#include <cstdio>
#include <filesystem>
#include <iostream>

namespace meddiff::cli {
namespace {

void print_usage(const std::vector<Command>& table, std::FILE* out) {
  std::string text =
      "meddiff: 3D VQ-GAN + latent diffusion for MRI and CT: train, sample, export NIfTI and DICOM\n\n"
      "usage: meddiff <command> [options]    (meddiff <command> --help for its options)\n\ncommands:\n";
  for (const auto& c : table) text += fmt::format("  {:<14} {}\n", c.name, c.summary);
  text += "\n  --version      versions, git hash, CUDA support\n  --help         this list\n";
  std::fputs(text.c_str(), out);
}

std::string first_line(const std::string& s) {
  auto nl = s.find('\n');
  return nl == std::string::npos ? s : s.substr(0, nl);
}

}  // namespace

int dispatch(const std::vector<Command>& table, int argc, const char* const* argv) {
  if (argc < 2) {
    print_usage(table, stderr);
    return 2;
  }
  std::string name = argv[1];
  if (name == "--help" || name == "-h" || name == "help") {
    print_usage(table, stdout);
    return 0;
  }
  if (name == "--version" || name == "version") {
    std::cout << version_text() << std::flush;
    return 0;
  }
  const Command* cmd = nullptr;
  for (const auto& c : table)
    if (name == c.name) cmd = &c;
  if (!cmd) {
    std::fprintf(stderr, "meddiff: unknown command '%s'\n\n", name.c_str());
    print_usage(table, stderr);
    return 2;
  }
  std::vector<std::string> args(argv + 2, argv + argc);
  install_crash_report();
  CrashStep step(fmt::format("running meddiff {}", cmd->name));
  try {
    return cmd->run(args);
  } catch (const HelpShown&) {
    return 0;
  } catch (const UsageError& e) {
    std::fprintf(stderr, "meddiff %s: error: %s (see meddiff %s --help)\n", cmd->name, e.what(), cmd->name);
    return 2;
  } catch (const c10::Error& e) {
    std::fprintf(stderr, "meddiff %s: error: %s\n", cmd->name, first_line(e.what_without_backtrace()).c_str());
    return 1;
  } catch (const std::filesystem::filesystem_error& e) {
    // "filesystem error: cannot create directories: Permission denied [/proc/x]" -> "/proc/x: cannot
    // create directories (Permission denied)": the path first, as every other meddiff error
    std::string what = first_line(e.what()), op;
    const std::string head = "filesystem error: ";
    if (what.rfind(head, 0) == 0) what = what.substr(head.size());
    const auto colon = what.find(": ");
    op = colon == std::string::npos ? what : what.substr(0, colon);
    std::string where = e.path1().empty() ? std::string() : e.path1().string() + ": ";
    std::fprintf(stderr, "meddiff %s: error: %s%s (%s)\n", cmd->name, where.c_str(), op.c_str(), e.code().message().c_str());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "meddiff %s: error: %s\n", cmd->name, first_line(e.what()).c_str());
    return 1;
  }
}

}  // namespace meddiff::cli
