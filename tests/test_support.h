#pragma once
// Helpers for the tests: a fresh scratch folder per test case, fixture paths.
#include <filesystem>
#include <string>
#include <vector>

namespace meddiff::test {

// An empty folder under the build tree, removed on destruction.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& name);
  ~ScratchDir();
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& p) const { return path_ / p; }

 private:
  std::filesystem::path path_;
};

std::filesystem::path fixture(const std::string& name);  // tests/fixtures/<name>

// A TCP port on 127.0.0.1 that was free a moment ago (rendezvous of data-parallel tests).
int free_port();

// Leaves the temporary a killed writer of `target` would: a child process creates it and ends.
void leave_stale_temp(const std::filesystem::path& target);

// --set arguments of the tiny models the end-to-end tests train (CT phantoms 16^3, a few steps on the CPU).
std::vector<std::string> tiny_model_args(const std::filesystem::path& manifest);

}  // namespace meddiff::test

#include <doctest/doctest.h>

#include "core/error.h"

namespace meddiff::test {

// `f` throws meddiff::Error with a one-line message containing every part.
template <typename F>
void check_error(F&& f, std::initializer_list<std::string> parts) {
  try {
    f();
    FAIL("no error was thrown; expected one mentioning " << *parts.begin());
  } catch (const meddiff::Error& e) {
    std::string m = e.what();
    for (const auto& p : parts) CHECK_MESSAGE(m.find(p) != std::string::npos, "'" << m << "' does not mention '" << p << "'");
    CHECK_MESSAGE(m.find('\n') == std::string::npos, "message is not one line: " << m);
  }
}

}  // namespace meddiff::test
