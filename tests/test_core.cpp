#include <doctest/doctest.h>

#include "core/crash_report.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/progress.h"
#include "core/sha256.h"
#include "core/torch_file.h"
#include "test_support.h"

#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <fstream>

using namespace meddiff;

TEST_CASE("sha256 matches the FIPS 180-4 test vectors") {
  CHECK(sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  CHECK(sha256_hex(std::string(1000000, 'a')) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  test::ScratchDir dir("sha");
  write_text_atomically(dir / "f.txt", "abc");
  CHECK(sha256_file(dir / "f.txt") == sha256_hex("abc"));
  CHECK_THROWS_WITH_AS(sha256_file(dir / "missing"), doctest::Contains("missing"), Error);
}

TEST_CASE("full_extension knows double extensions and is case-insensitive") {
  CHECK(full_extension("a/b.nii.gz") == "nii.gz");
  CHECK(full_extension("B.NII.GZ") == "nii.gz");
  CHECK(full_extension("x.mha") == "mha");
  CHECK(full_extension("folder/") == "");
  CHECK(full_extension(".hidden") == "");
}

TEST_CASE("write_atomically leaves the old file in place when the writer fails") {
  test::ScratchDir dir("atomic");
  write_text_atomically(dir / "out.txt", "old");
  CHECK_THROWS_AS(write_atomically(dir / "out.txt",
                                   [](const fs::path& tmp) {
                                     std::ofstream(tmp) << "half";
                                     fail("writer died");
                                   }),
                  Error);
  CHECK(read_text(dir / "out.txt") == "old");
  int files = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir.path())) ++files;
  CHECK(files == 1);  // no temporary left behind
  write_text_atomically(dir / "sub/new.txt", "new");
  CHECK(read_text(dir / "sub/new.txt") == "new");
}

TEST_CASE("TempPath keeps the extension so format-by-extension writers work") {
  TempPath t("/tmp/x/case.nii.gz");
  CHECK(full_extension(t.path()) == "nii.gz");
  CHECK(t.path().parent_path() == fs::path("/tmp/x"));
  CHECK(t.path().filename().string().rfind(".case.tmp-", 0) == 0);
}

TEST_CASE("format_duration") {
  CHECK(format_duration(5) == "5s");
  CHECK(format_duration(65) == "1m05s");
  CHECK(format_duration(3725) == "1h02m");
  CHECK(format_duration(-1) == "?");
}

// A file torch.save wrote (scripts/make_monai_fixtures.py): the values Python put in, read without Python.
TEST_CASE("torch.save files: state dicts as OrderedDict with metadata - numbers - strings - views - dtypes - opaque objects") {
  using K = PyValue::Kind;
  auto v = read_torch_file(test::fixture("monai/torch_save_types.pt"));
  REQUIRE(v->kind == K::Dict);
  CHECK(v->get("epoch")->i == 7);
  CHECK(v->get("num_train_timesteps")->i == 1000);
  CHECK(v->get("big")->i == (int64_t{1} << 40));
  CHECK(v->get("negative")->i == -3);
  CHECK(v->get("loss")->f == 0.125);
  CHECK(v->get("name")->s == "rflow-ct");
  CHECK(v->get("flag")->b);
  CHECK(v->get("nothing")->kind == K::None);
  CHECK(v->get("missing") == nullptr);
  auto steps = v->get("steps");
  REQUIRE(steps->items.size() == 3);
  CHECK(steps->items[1]->f == 2.5);
  CHECK(steps->items[2]->s == "x");
  CHECK(v->get("shape")->kind == K::Tuple);
  CHECK(v->get("shape")->items[2]->i == 64);
  CHECK(v->get("codes")->kind == K::Set);
  CHECK(v->get("codes")->items.size() == 2);
  CHECK(v->get("numpy")->type_name().rfind("object numpy.", 0) == 0);  // numpy.core or numpy._core (numpy 2)
  auto sf = v->get("scale_factor")->tensor;
  CHECK(sf.dim() == 0);
  CHECK(sf.item<float>() == doctest::Approx(1.0549f));
  auto sd = v->get("unet_state_dict");
  REQUIRE(sd->kind == K::Dict);
  REQUIRE(sd->dict.size() == 7);
  CHECK(sd->dict[0].first->s == "conv.weight");  // insertion order
  auto w = sd->get("conv.weight")->tensor;
  CHECK(w.sizes() == torch::IntArrayRef({2, 3, 4}));
  CHECK(torch::equal(w, torch::arange(24, torch::kFloat32).reshape({2, 3, 4}) / 8));
  auto b = sd->get("conv.bias")->tensor;
  CHECK((b.scalar_type() == torch::kHalf));
  CHECK(b[1].item<float>() == -2.25f);
  auto base = torch::arange(12, torch::kInt64).reshape({3, 4});
  CHECK(torch::equal(sd->get("base")->tensor, base));
  CHECK(torch::equal(sd->get("view.t")->tensor, base.t()));
  CHECK(torch::equal(sd->get("mask")->tensor, torch::tensor({true, false, true})));
  auto p = sd->get("param")->tensor;
  CHECK((p.scalar_type() == torch::kBFloat16));
  CHECK(p.sum().item<float>() == 2.0f);
  auto u16 = sd->get("u16")->tensor;  // _rebuild_tensor_v3: untyped storage + dtype
  CHECK((u16.scalar_type() == torch::kUInt16));
  CHECK(u16.to(torch::kLong)[1].item<int64_t>() == 60000);

  CHECK_THROWS_WITH_AS(read_torch_file(test::fixture("monai/torch_save_legacy.pt")),
                       doctest::Contains("legacy format of PyTorch < 1.6"), Error);
  CHECK_THROWS_WITH_AS(read_torch_file(test::fixture("monai/networks.json")),
                       doctest::Contains("networks.json: not a file written by torch.save (not a zip archive)"), Error);
  CHECK_THROWS_WITH_AS(read_torch_file("/nonexistent/unet.pt"), "/nonexistent/unet.pt: cannot open: no such file", Error);
  // A truncated archive: one line naming the file.
  test::ScratchDir dir("torch_file");
  auto bytes = read_text(test::fixture("monai/torch_save_types.pt"));
  write_text_atomically(dir / "cut.pt", bytes.substr(0, bytes.size() / 2));
  CHECK_THROWS_WITH_AS(read_torch_file(dir / "cut.pt"), doctest::Contains("cut.pt: not a file written by torch.save"), Error);
}

namespace {
// Runs `crash` in a child process whose stderr comes back; `signal_out` is the signal that ended it (0: none).
std::string crashed_child_stderr(void (*crash)(), int& signal_out) {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  std::fflush(nullptr);
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(fds[0]);
    ::dup2(fds[1], STDERR_FILENO);
    crash();
    ::_exit(0);
  }
  ::close(fds[1]);
  std::string text;
  char buf[4096];
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;) text.append(buf, static_cast<size_t>(n));
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  signal_out = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
  return text;
}
}  // namespace

TEST_CASE("a fatal signal names the step it hit and ends the process by that signal") {
  int sig = 0;
  std::string err = crashed_child_stderr(
      [] {
        install_crash_report();
        CrashStep outer("reading the manifest");
        {
          CrashStep inner("connecting the gloo process group (rank 0 of 2)");
        }
        volatile int* nowhere = nullptr;
        *nowhere = 1;
      },
      sig);
  CHECK(sig == SIGSEGV);
  CHECK(err.rfind("meddiff: fatal signal SIGSEGV (invalid memory access) while reading the manifest; backtrace follows\n", 0) == 0);
  CHECK(std::count(err.begin(), err.end(), '\n') >= 3);  // the line and at least two frames

  err = crashed_child_stderr(
      [] {
        install_crash_report();
        std::abort();
      },
      sig);
  CHECK(sig == SIGABRT);
  CHECK(err.rfind("meddiff: fatal signal SIGABRT (aborted); backtrace follows\n", 0) == 0);
}
