#include "train/listener_probe.h"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <thread>

namespace meddiff {

namespace {

// One non-blocking connect to `ai`, given at most `left` to complete. Empty on success.
std::string try_connect(const addrinfo* ai, std::chrono::milliseconds left) {
  int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
  if (fd < 0) return std::strerror(errno);
  std::string why;
  if (::connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
    if (errno != EINPROGRESS) {
      why = std::strerror(errno);
    } else {
      pollfd p{fd, POLLOUT, 0};
      int r = ::poll(&p, 1, static_cast<int>(std::max<long long>(1, left.count())));
      int err = 0;
      socklen_t len = sizeof err;
      if (r == 0) why = "connect timed out";
      else if (r < 0) why = std::strerror(errno);
      else if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) why = std::strerror(errno);
      else if (err != 0) why = std::strerror(err);
    }
  }
  ::close(fd);
  return why;
}

}  // namespace

std::string wait_for_listener(const std::string& host, int port, std::chrono::milliseconds timeout) {
  using clock = std::chrono::steady_clock;
  const auto deadline = clock::now() + timeout;
  std::string why = "no attempt";
  for (;;) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    int g = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res);
    if (g != 0) {
      why = std::string("cannot resolve the host: ") + ::gai_strerror(g);
    } else {
      for (addrinfo* ai = res; ai; ai = ai->ai_next) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now());
        why = try_connect(ai, std::max(left, std::chrono::milliseconds(1)));
        if (why.empty()) break;
      }
      ::freeaddrinfo(res);
      if (why.empty()) return {};
    }
    if (clock::now() >= deadline) return why;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now());
    std::this_thread::sleep_for(std::min(left, std::chrono::milliseconds(100)));
  }
}

}  // namespace meddiff
