// Data-parallel training end to end: the meddiff binary started as 2 processes on localhost (Gloo),
// as torchrun would start it (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), against one
// process with the global batch.
#include "cli/commands.h"
#include "core/checkpoint.h"
#include "test_support.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

extern char** environ;

namespace fs = std::filesystem;
using namespace meddiff;
using namespace meddiff::test;

namespace {

struct Proc {
  pid_t pid = -1;
  fs::path log;
};

// Starts the meddiff binary in `cwd` with the test's environment minus any launcher variables, plus `env`.
Proc spawn(const std::vector<std::string>& args, const std::map<std::string, std::string>& env, const fs::path& cwd,
           const fs::path& log) {
  std::vector<std::string> envs;
  for (char** e = environ; *e; ++e) {
    std::string kv = *e, k = kv.substr(0, kv.find('='));
    if (k == "RANK" || k == "WORLD_SIZE" || k == "LOCAL_RANK" || k == "MASTER_ADDR" || k == "MASTER_PORT" ||
        k.rfind("SLURM_", 0) == 0 || k.rfind("TORCHELASTIC", 0) == 0)
      continue;
    envs.push_back(kv);
  }
  for (const auto& [k, v] : env) envs.push_back(k + "=" + v);
  envs.push_back("OMP_NUM_THREADS=1");
  std::vector<std::string> argv_s{MEDDIFF_EXE};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv, envp;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (auto& e : envs) envp.push_back(e.data());
  envp.push_back(nullptr);
  fs::create_directories(cwd);
  // Between fork and exec the child of this multithreaded process may only make async-signal-safe calls
  // (open, dup2, chdir, execve): stdio's freopen there crashed or hung the child now and then.
  const std::string cwd_s = cwd.string(), log_s = log.string();
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    int fd = ::open(log_s.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || ::dup2(fd, STDOUT_FILENO) < 0 || ::dup2(fd, STDERR_FILENO) < 0 || ::chdir(cwd_s.c_str()) != 0) ::_exit(126);
    ::execve(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }
  return {pid, log};
}

// Exit code, or -1 after killing it when it ran past `timeout_s`.
int wait_for(Proc& p, double timeout_s, double* seconds = nullptr) {
  auto t0 = std::chrono::steady_clock::now();
  for (;;) {
    int st = 0;
    pid_t r = ::waitpid(p.pid, &st, WNOHANG);
    double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (seconds) *seconds = el;
    if (r == p.pid) return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    if (el > timeout_s) {
      ::kill(p.pid, SIGKILL);
      ::waitpid(p.pid, &st, 0);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::map<std::string, std::string> rank_env(int rank, int world, int port) {
  return {{"RANK", std::to_string(rank)}, {"WORLD_SIZE", std::to_string(world)}, {"LOCAL_RANK", std::to_string(rank)},
          {"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", std::to_string(port)}};
}

// Runs `args` as 2 ranks in `dir`/rank0 and `dir`/rank1 (working folders); both must succeed in time.
void run_two_ranks(const std::vector<std::string>& args, const fs::path& dir) {
  int port = free_port();
  std::vector<Proc> ps;
  for (int r = 0; r < 2; ++r)
    ps.push_back(spawn(args, rank_env(r, 2, port), dir / ("rank" + std::to_string(r)), dir / ("rank" + std::to_string(r) + ".log")));
  for (int r = 0; r < 2; ++r) {
    int rc = wait_for(ps[static_cast<size_t>(r)], 240);
    INFO("rank " << r << " log:\n" << read_text(ps[static_cast<size_t>(r)].log));
    REQUIRE(rc == 0);
  }
}

std::vector<std::string> tiny_args(const fs::path& data) {
  auto a = tiny_model_args(data / "manifest.json");
  // GAN phase from step 2 of 4; BatchNorm discriminators (the reference's), synchronised across ranks.
  a.insert(a.end(), {"--set", "vqgan_train.steps=4", "--set", "vqgan_train.gan_start=2", "--set", "vqgan.disc_norm=\"batch\"",
                     "--set", "vqgan_train.val_every=100", "--set", "ldm_train.steps=4", "--set", "ldm_train.lr=1e-3",
                     "--set", "ldm_train.warmup=1"});
  return a;
}

std::vector<std::string> with(std::vector<std::string> a, const std::vector<std::string>& more) {
  a.insert(a.end(), more.begin(), more.end());
  return a;
}

// Largest difference of any float tensor of the two checkpoints (optimiser states aside).
double max_difference(const fs::path& a, const fs::path& b, std::string* worst, const std::string& prefix = "") {
  Checkpoint ca = load_checkpoint(a), cb = load_checkpoint(b);
  double m = 0;
  int compared = 0;
  for (const auto& [k, v] : ca.tensors) {
    if (k.rfind("optim", 0) == 0 || !v.is_floating_point() || k.rfind(prefix, 0) != 0) continue;
    ++compared;
    double d = (v - cb.tensor(k)).abs().max().item<double>();
    if (d > m) {
      m = d;
      *worst = k;
    }
  }
  REQUIRE(compared > 0);
  return m;
}

std::set<std::string> entries(const fs::path& d) {
  std::set<std::string> s;
  for (const auto& e : fs::recursive_directory_iterator(d)) s.insert(fs::relative(e.path(), d).string());
  return s;
}

void make_phantoms(const fs::path& d) {
  REQUIRE(cli::run_phantoms({"--modality", "ct", "--count", "6", "--shape", "16,16,16", "--spacing", "1.5,1.5,2", "--out", d.string()}) == 0);
}

}  // namespace

// The 2-rank run's folder holds the same entries as the 1-process run's (folder locks aside), and the
// folder rank 1 ran in stayed empty: only rank 0 wrote.
static void check_rank0_wrote(const fs::path& dir) {
  auto a = entries(dir / "one"), b = entries(dir / "two");
  a.erase(".meddiff.lock");
  b.erase(".meddiff.lock");
  CHECK(a == b);
  CHECK(entries(dir / "rank1").empty());
}

TEST_CASE("data-parallel train-vqgan: 2 Gloo ranks of batch 1 train the weights and codebook of 1 process of batch 2") {
  ScratchDir dir("dist-vqgan");
  make_phantoms(dir / "data");
  auto args = with({"train-vqgan"}, tiny_args(dir / "data"));
  Proc one = spawn(with(args, {"--set", "vqgan_train.batch_size=2", "--out", (dir / "one").string()}), {}, dir / "cwd1", dir / "one.log");
  REQUIRE(wait_for(one, 240) == 0);
  run_two_ranks(with(args, {"--set", "vqgan_train.batch_size=1", "--out", (dir / "two").string()}), dir.path());
  std::string worst;
  double d = max_difference(dir / "one/last.pt", dir / "two/last.pt", &worst);
  INFO("largest difference " << d << " in " << worst);
  CHECK(d < 1e-5);  // the order of float sums differs; 1e-2 and more when a draw or a statistic is per rank
  CHECK(max_difference(dir / "one/last.pt", dir / "two/last.pt", &worst, "model.codebook") < 1e-5);
  // The ranks compared their state at the checkpoint: identical replicas, codebook included.
  std::string m = read_text(dir / "two/metrics.jsonl");
  CHECK(m.find("\"codebook_spread\":0.0") != std::string::npos);
  CHECK(m.find("\"replica_spread\":0.0") != std::string::npos);
  // Only rank 0 wrote: the folder holds what one process writes, and nothing appeared where the ranks ran.
  check_rank0_wrote(dir.path());
  CHECK(entries(dir / "rank0").empty());
  std::string log1 = read_text(dir / "rank1.log");
  CHECK(log1.find("train-vqgan x2") == std::string::npos);  // rank 1 shows no progress of its own
}

TEST_CASE("data-parallel train-ldm: 2 Gloo ranks of batch 2 train the weights of 1 process of batch 4") {
  ScratchDir dir("dist-ldm");
  make_phantoms(dir / "data");
  auto common = tiny_args(dir / "data");
  REQUIRE(cli::run_train_vqgan(with(common, {"--set", "vqgan_train.steps=2", "--out", (dir / "vq").string()})) == 0);
  auto args = with(with({"train-ldm"}, common), {"--vqgan", (dir / "vq/last.pt").string()});
  Proc one = spawn(with(args, {"--set", "ldm_train.batch_size=4", "--out", (dir / "one").string()}), {}, dir / "cwd1", dir / "one.log");
  REQUIRE(wait_for(one, 240) == 0);
  run_two_ranks(with(args, {"--set", "ldm_train.batch_size=2", "--out", (dir / "two").string()}), dir.path());
  std::string worst;
  double d = max_difference(dir / "one/last.pt", dir / "two/last.pt", &worst);
  INFO("largest difference " << d << " in " << worst);
  CHECK(d < 1e-5);
  CHECK(max_difference(dir / "one/last.pt", dir / "two/last.pt", &worst, "ema.") < 1e-5);
  CHECK(read_text(dir / "two/metrics.jsonl").find("\"replica_spread\":0.0") != std::string::npos);
  check_rank0_wrote(dir.path());  // latents.pt once, by rank 0
}

TEST_CASE("data-parallel: a rank that exits or hangs ends the other with a clear error within --dist-timeout") {
  ScratchDir dir("dist-fail");
  make_phantoms(dir / "data");
  auto args = with({"train-vqgan"}, tiny_args(dir / "data"));
  args = with(args, {"--set", "vqgan_train.steps=100000", "--set", "vqgan_train.batch_size=1", "--dist-timeout", "6"});
  for (int sig : {SIGKILL, SIGSTOP}) {
    CAPTURE(sig);
    int port = free_port();
    std::string out = (dir / ("run" + std::to_string(sig))).string();
    Proc r0 = spawn(with(args, {"--out", out}), rank_env(0, 2, port), dir / "cwd", dir / "r0.log");
    Proc r1 = spawn(with(args, {"--out", out}), rank_env(1, 2, port), dir / "cwd", dir / "r1.log");
    // Wait until the two train (rank 0 has written its first metrics), then take rank 1 away.
    auto t0 = std::chrono::steady_clock::now();
    while (!fs::exists(fs::path(out) / "metrics.jsonl") &&
           std::chrono::steady_clock::now() - t0 < std::chrono::seconds(120))
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    std::this_thread::sleep_for(std::chrono::seconds(1));
    ::kill(r1.pid, sig);
    double secs = 0;
    int rc = wait_for(r0, 60, &secs);
    ::kill(r1.pid, SIGKILL);
    wait_for(r1, 10);
    std::string log = read_text(r0.log);
    INFO("rank 0 log:\n" << log);
    CHECK(rc == 1);
    CHECK(secs < 6 + 10);
    CHECK(log.find("error: rank 0 of 2:") != std::string::npos);
    CHECK(log.find("--dist-timeout 6 s") != std::string::npos);
  }
}

TEST_CASE("data-parallel: no rendezvous within --dist-timeout and a partial launch environment are one-line errors") {
  ScratchDir dir("dist-env");
  make_phantoms(dir / "data");
  auto args = with(with({"train-vqgan"}, tiny_args(dir / "data")), {"--dist-timeout", "2", "--out", (dir / "o").string()});
  // Each run must end with its one-line error and exit 1: a crash at exit (Debian's ITK 5.2 aborting in its
  // static destructors, before meddiff ended with _Exit) shows here as 134 or 139.
  auto run = [&](const std::map<std::string, std::string>& env, const fs::path& log, double* secs) {
    Proc pr = spawn(args, env, dir / "cwd", log);
    return wait_for(pr, 60, secs);
  };
  // rank 1 of 2 with nobody serving the rendezvous
  double secs = 0;
  const fs::path p_log = dir / "p.log", q_log = dir / "q.log";
  const int rc_p = run(rank_env(1, 2, free_port()), p_log, &secs);
  std::string log = read_text(p_log);
  INFO(log);
  CHECK(rc_p == 1);
  CHECK(log.find("no rendezvous at 127.0.0.1:") != std::string::npos);
  CHECK(secs < 30);
  CHECK_FALSE(fs::exists(dir / "o"));
  const int rc = run({{"WORLD_SIZE", "2"}}, q_log, nullptr);
  INFO("partial environment: " << read_text(q_log));
  CHECK(rc == 1);
  CHECK(read_text(q_log).find("WORLD_SIZE is set but RANK is not") != std::string::npos);
}
