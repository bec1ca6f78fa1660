#include "core/log.h"

#include "core/error.h"

#include <atomic>
#include <cstdio>
#include <mutex>

namespace meddiff {
namespace {
std::atomic<int> g_level{static_cast<int>(LogLevel::Info)};
std::mutex g_mutex;
std::string g_tag;  // guarded by g_mutex
}  // namespace

void set_log_level(LogLevel level) { g_level = static_cast<int>(level); }
LogLevel log_level() { return static_cast<LogLevel>(g_level.load()); }

void set_log_tag(const std::string& tag) {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_tag = tag;
}

void log_line(LogLevel level, const std::string& msg) {
  static const char* prefix[] = {"debug: ", "", "warning: ", "error: ", ""};
  std::lock_guard<std::mutex> lock(g_mutex);
  std::fprintf(stderr, "%s%s%s\n", g_tag.c_str(), prefix[static_cast<int>(level)], msg.c_str());
  std::fflush(stderr);
}

JsonlWriter::JsonlWriter(const std::string& path, bool append)
    : out_(path, append ? std::ios::app : std::ios::trunc), path_(path) {
  if (!out_) fail("{}: cannot open for writing", path);
}

void JsonlWriter::write(const nlohmann::json& record) {
  out_ << record.dump() << '\n';
  out_.flush();
  if (!out_) fail("{}: write failed", path_);
}

}  // namespace meddiff
