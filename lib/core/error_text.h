#pragma once
// The one-line message of any exception a worker caught (meddiff's own, LibTorch's without its backtrace, the
// standard library's), for errors that gather several cases' failures into one line.
#include <exception>
#include <string>

namespace meddiff {

std::string error_text(const std::exception& e);

}  // namespace meddiff
