#include <doctest/doctest.h>

#include "core/checkpoint.h"
#include "core/fs.h"
#include "data/metrics.h"
#include "data/phantom.h"
#include "train/launch_env.h"
#include "train/train_config.h"
#include "train/vqgan_step.h"
#include "train/vqgan_trainer.h"
#include "test_support.h"

using namespace meddiff;

namespace {
RunConfig tiny_config() {
  RunConfig c;
  c.data.shape = {16, 16, 16};
  c.vqgan.n_hiddens = 4;
  c.vqgan.downsample = {2, 2, 2};
  c.vqgan.embedding_dim = 3;
  c.vqgan.n_codes = 32;
  c.vqgan.disc_channels = 4;
  c.vqgan.disc_layers = 2;
  c.vqgan_train.steps = 6;
  c.vqgan_train.batch_size = 2;
  c.vqgan_train.gan_start = 3;
  c.vqgan_train.device = "cpu";
  c.vqgan_train.val_every = 3;
  c.vqgan_train.ckpt_every = 3;
  c.vqgan_train.log_every = 1;
  return c;
}

std::vector<TrainingVolume> phantoms(int n) {
  PhantomParams p;
  p.shape = {16, 16, 16};
  std::vector<TrainingVolume> out;
  for (int i = 0; i < n; ++i) out.push_back(preprocess(make_phantom(p, i, i % 2), tiny_config().data, i % 2, "phantom"));
  return out;
}
}  // namespace

TEST_CASE("config: defaults / file / --set overrides - unknown keys and wrong types are named") {
  test::ScratchDir dir("cfg");
  write_text_atomically(dir / "c.json", R"({"vqgan": {"n_codes": 64}, "vqgan_train": {"steps": 5}})");
  auto c = resolve_config((dir / "c.json").string(), {"vqgan_train.lr=0.01", "data.shape=[32,32,16]"});
  CHECK(c.vqgan.n_codes == 64);
  CHECK(c.vqgan_train.steps == 5);
  CHECK(c.vqgan_train.lr == doctest::Approx(0.01));
  CHECK(c.data.shape[2] == 16);
  CHECK(c.vqgan.n_hiddens == 16);  // default kept
  test::check_error([&] { resolve_config((dir / "c.json").string(), {"vqgan.n_code=3"}); }, {"vqgan.n_code"});
  test::check_error([&] { resolve_config("", {"vqgan.n_codes=many"}); }, {"vqgan.n_codes", "integer"});
  write_text_atomically(dir / "typo.json", R"({"vqgan": {"n_hidens": 8}})");
  test::check_error([&] { resolve_config((dir / "typo.json").string(), {}); }, {"unknown key 'vqgan.n_hidens'"});
  write_text_atomically(dir / "bad.json", "{\"vqgan\": {\n  \"n_codes\": 4,,\n}}");
  test::check_error([&] { resolve_config((dir / "bad.json").string(), {}); }, {"bad.json", "line 2"});
  test::check_error([&] { resolve_config("", {"data.shape=[30,32,32]"}); }, {"data.shape[0]", "vqgan.downsample[0]"});
  test::check_error([&] { resolve_config("", {"vqgan.ema_decay=1.5"}); }, {"vqgan.ema_decay"});
  test::check_error([&] { resolve_config("", {"vqgan_train.optimizer=\"sgd\""}); }, {"vqgan_train.optimizer"});
}

TEST_CASE("metrics: PSNR and SSIM against closed forms") {
  auto a = torch::zeros({8, 8, 8});
  auto b = torch::full({8, 8, 8}, 0.2);
  CHECK(psnr(a, b) == doctest::Approx(10 * std::log10(4.0 / 0.04)));  // range 2, MSE 0.04 -> 20 dB
  auto x = torch::rand({12, 12, 12});
  CHECK(ssim3d(x, x) == doctest::Approx(1.0));
  CHECK(ssim3d(x, torch::rand({12, 12, 12})) < 0.5);
}

TEST_CASE("a run stopped after N steps and resumed equals an uninterrupted run") {
  for (int64_t accum : {int64_t{1}, int64_t{2}}) {
  INFO("grad_accum " << accum);
  test::ScratchDir dir("resume-" + std::to_string(accum));
  auto data = phantoms(4);
  std::vector<TrainingVolume> train(data.begin(), data.begin() + 3), val(data.begin() + 3, data.end());
  auto cfg = tiny_config();
  cfg.vqgan_train.grad_accum = accum;
  cfg.vqgan_train.batch_size = 2 / accum;  // the same effective batch
  TrainHooks hooks;
  auto full = train_vqgan(cfg, train, val, dir / "full", false, hooks);
  CHECK(full.final_step == 6);
  auto half = cfg;
  half.vqgan_train.steps = 3;
  train_vqgan(half, train, val, dir / "split", false, hooks);
  CHECK(fs::exists(dir / "split/step-0000003.pt"));
  test::check_error([&] { train_vqgan(cfg, train, val, dir / "split", false, hooks); }, {"--resume"});
  train_vqgan(cfg, train, val, dir / "split", true, hooks);
  auto a = load_checkpoint(dir / "full/last.pt"), b = load_checkpoint(dir / "split/last.pt");
  CHECK(a.step == 6);
  CHECK(b.step == 6);
  REQUIRE(a.tensors.size() == b.tensors.size());
  int differing = 0;
  for (const auto& [k, v] : a.tensors) {
    if (k.rfind("optim.", 0) == 0) continue;
    if (!torch::equal(v, b.tensor(k))) {
      ++differing;
      MESSAGE("differs: " << k);
    }
  }
  CHECK(differing == 0);
  // metrics.jsonl: one line per step and per validation, appended across the resume
  std::string m = read_text(dir / "split/metrics.jsonl");
  CHECK(std::count(m.begin(), m.end(), '\n') == 6 + 2);
  }
}

TEST_CASE("gradient accumulation: each step takes grad_accum micro-batches, in order, then updates") {
  auto cfg = tiny_config();
  cfg.vqgan_train.grad_accum = 3;
  cfg.vqgan_train.batch_size = 1;
  VQGANStepper st(cfg, torch::kCPU);
  auto data = phantoms(3);
  std::vector<int64_t> seen;
  auto batch = [&](int64_t micro) {
    seen.push_back(micro);
    return Batch{0, data[static_cast<size_t>(micro)].x.unsqueeze(0), torch::zeros({1}, torch::kLong), {}};
  };
  auto before = st.vqgan->decoder->conv_last->conv->weight.clone();
  auto s = st.step(0, batch);
  CHECK(seen == std::vector<int64_t>{0, 1, 2});
  CHECK(s.finite);
  CHECK_FALSE(torch::equal(before, st.vqgan->decoder->conv_last->conv->weight));
}

TEST_CASE("launch environment: torchrun and Slurm variables - partial or out-of-range ones are named") {
  auto env = [](std::map<std::string, std::string> m) {
    return launch_env_from([m](const char* n) -> const char* {
      auto it = m.find(n);
      return it == m.end() ? nullptr : it->second.c_str();
    });
  };
  LaunchEnv none = env({});
  CHECK_FALSE(none.distributed());
  CHECK(none.rank == 0);
  LaunchEnv t = env({{"RANK", "3"}, {"WORLD_SIZE", "8"}, {"LOCAL_RANK", "1"}, {"MASTER_ADDR", "node7"}, {"MASTER_PORT", "29500"},
                     {"TORCHELASTIC_RUN_ID", "x"}});
  CHECK(t.distributed());
  CHECK(t.rank == 3);
  CHECK(t.world_size == 8);
  CHECK(t.local_rank == 1);
  CHECK(t.master_addr == "node7");
  CHECK(t.master_port == 29500);
  CHECK(t.launcher == "torchrun");
  meddiff::test::check_error([&] { env({{"WORLD_SIZE", "2"}}); }, {"WORLD_SIZE is set but RANK is not"});
  meddiff::test::check_error([&] { env({{"RANK", "2"}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", "0"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "1"}}); },
              {"RANK='2'", "[0, 1]"});
  meddiff::test::check_error([&] { env({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", "0"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "x1"}}); },
              {"MASTER_PORT='x1'"});
  LaunchEnv s = env({{"SLURM_PROCID", "5"}, {"SLURM_NTASKS", "8"}, {"SLURM_LOCALID", "1"}, {"SLURM_JOB_NODELIST", "gpu[07-09,12],cpu1"},
                     {"SLURM_JOB_ID", "123456"}});
  CHECK(s.launcher == "slurm");
  CHECK(s.rank == 5);
  CHECK(s.world_size == 8);
  CHECK(s.local_rank == 1);
  CHECK(s.master_addr == "gpu07");
  CHECK(s.master_port == 20000 + 123456 % 20000);
  CHECK_FALSE(env({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "1"}}).distributed());  // one task: one process
  CHECK(first_slurm_host("n1,n2") == "n1");
  CHECK(first_slurm_host("rack-[001-004]-ib") == "rack-001-ib");
  CHECK(first_slurm_host("a[3]") == "a3");
  meddiff::test::check_error([] { first_slurm_host("gpu[01-02"); }, {"unclosed"});
}
