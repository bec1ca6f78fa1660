#include "test_support.h"

#include "core/fs.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>

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

int free_port() {
  int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  if (s < 0 || ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) throw std::runtime_error("free_port: no socket");
  socklen_t len = sizeof a;
  ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(s);
  return ntohs(a.sin_port);
}

void leave_stale_temp(const std::filesystem::path& target) {
  pid_t child = fork();
  if (child == 0) {
    meddiff::TempPath t(target);
    std::ofstream(t.path()) << "half a file";
    _exit(0);  // no destructors: the temporary stays, its process is gone
  }
  int status = 0;
  waitpid(child, &status, 0);
}

std::filesystem::path fixture(const std::string& name) {
  return std::filesystem::path(MEDDIFF_SOURCE_DIR) / "tests" / "fixtures" / name;
}

std::vector<std::string> tiny_model_args(const std::filesystem::path& manifest) {
  return {"--set", "data.manifest=" + manifest.string(), "--set", "data.modality=\"ct\"", "--set", "data.shape=[16,16,16]",
          "--set", "vqgan.n_hiddens=4", "--set", "vqgan.downsample=[2,2,2]", "--set", "vqgan.n_codes=32",
          "--set", "vqgan.disc_channels=4", "--set", "vqgan.disc_layers=2", "--set", "vqgan_train.device=\"cpu\"",
          "--set", "ldm_train.device=\"cpu\"", "--set", "ldm.timesteps=50", "--set", "ldm.unet.base_channels=8",
          "--set", "ldm.unet.channel_mults=[1,2]", "--set", "ldm.unet.downsample=[[2,2,2]]",
          "--set", "ldm.unet.attention_levels=[1]", "--set", "ldm.unet.attention_heads=2", "--set", "ldm_train.batch_size=2"};
}

}  // namespace meddiff::test
