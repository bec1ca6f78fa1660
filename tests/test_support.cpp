#include "test_support.h"

#include <unistd.h>

namespace meddiff::test {

ScratchDir::ScratchDir(const std::string& name)
    : path_(std::filesystem::path(MEDDIFF_BINARY_DIR) / "test-scratch" / (name + "-" + std::to_string(getpid()))) {
  std::filesystem::remove_all(path_);
  std::filesystem::create_directories(path_);
}

ScratchDir::~ScratchDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::filesystem::path fixture(const std::string& name) {
  return std::filesystem::path(MEDDIFF_SOURCE_DIR) / "tests" / "fixtures" / name;
}

}  // namespace meddiff::test
