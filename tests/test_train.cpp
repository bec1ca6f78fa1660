#include <doctest/doctest.h>

#include <thread>

#include "core/checkpoint.h"
#include "core/fs.h"
#include "core/sha256.h"
#include "data/metrics.h"
#include "data/phantom.h"
#include "models/autoencoder_kl.h"
#include "models/state_dict.h"
#include "models/sync_batch_norm.h"
#include "pipeline/latent_autoencoder.h"
#include "pipeline/loaded_models.h"
#include "train/augmented_copies.h"
#include "train/grad_sync.h"
#include "train/imported_ldm_trainer.h"
#include "train/launch_env.h"
#include "train/memory_probe.h"
#include "train/process_group.h"
#include "train/ldm_step.h"
#include "train/train_config.h"
#include "train/vqgan_step.h"
#include "train/vqgan_trainer.h"
#include "test_support.h"

using namespace meddiff;

namespace {
// Runs fn(collectives) on `world` threads of this process, joined as ranks by a Gloo process group on
// 127.0.0.1 (LibTorch's c10d, as a torchrun job uses it); rethrows the first rank's error.
void with_ranks(int world, const std::function<void(Collectives&)>& fn, int timeout_s = 30) {
  const int port = meddiff::test::free_port();
  std::vector<std::thread> threads;
  std::vector<std::exception_ptr> errors(static_cast<size_t>(world));
  for (int r = 0; r < world; ++r)
    threads.emplace_back([&, r] {
      try {
        LaunchEnv env;
        env.rank = r;
        env.world_size = world;
        env.master_addr = "127.0.0.1";
        env.master_port = port;
        env.launcher = "environment";
        DistOptions opt;
        opt.backend = "gloo";
        opt.timeout_s = timeout_s;
        auto pg = ProcessGroup::connect(env, opt, torch::kCPU);
        fn(*pg);
      } catch (...) {
        errors[static_cast<size_t>(r)] = std::current_exception();
      }
    });
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

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
  CHECK(c.data.shape[0] == 16);  // typed x,y,z: z = 16 is D
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
  auto full = train_vqgan(cfg, train, val, dir / "full", RunStart::New, hooks);
  CHECK(full.final_step == 6);
  auto half = cfg;
  half.vqgan_train.steps = 3;
  train_vqgan(half, train, val, dir / "split", RunStart::New, hooks);
  CHECK(fs::exists(dir / "split/step-0000003.pt"));
  test::check_error([&] { train_vqgan(cfg, train, val, dir / "split", RunStart::New, hooks); }, {"--resume"});
  train_vqgan(cfg, train, val, dir / "split", RunStart::Resume, hooks);
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
  auto weight = [&] { return st.model->module().named_parameters()["decoder.conv_last.conv.weight"]; };
  auto before = weight().clone();
  auto s = st.step(0, batch);
  CHECK(seen == std::vector<int64_t>{0, 1, 2});
  CHECK(s.finite);
  CHECK_FALSE(torch::equal(before, weight()));
}

TEST_CASE("stage-1 learning rate: constant - then a half cosine over the last lr_decay of the steps - on both optimisers") {
  VQGANTrainParams t;
  t.lr = 1e-3;
  t.steps = 100;
  CHECK(stage1_lr(t, 99) == 1e-3);  // lr_decay 0: constant, as the reference
  t.lr_decay = 0.2;                 // the last 20 steps, 80..99
  CHECK(stage1_lr(t, 79) == 1e-3);
  CHECK(stage1_lr(t, 80) == doctest::Approx(1e-3));
  CHECK(stage1_lr(t, 90) == doctest::Approx(0.5e-3));
  CHECK(stage1_lr(t, 99) == doctest::Approx(1e-3 * 0.5 * (1 + std::cos(M_PI * 19.0 / 20.0))));
  auto cfg = tiny_config();
  cfg.vqgan_train.lr_decay = 0.5;  // steps 3..5 of 6
  cfg.vqgan_train.batch_size = 1;
  VQGANStepper st(cfg, torch::kCPU);
  auto data = phantoms(1);
  auto batch = [&](int64_t) { return Batch{0, data[0].x.unsqueeze(0), torch::zeros({1}, torch::kLong), {}}; };
  st.step(4, batch);
  for (auto* opt : {st.opt_g.get(), st.opt_d.get()})
    CHECK(opt->param_groups()[0].options().get_lr() == doctest::Approx(cfg.vqgan_train.lr * 0.5 * (1 + std::cos(M_PI / 3))));
  test::check_error([&] { with_overrides(config_to_json(cfg), {"vqgan_train.lr_decay=1.5"}); }, {"vqgan_train.lr_decay", "[0, 1]"});
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

TEST_CASE("guidance dropout: the unconditional branch (no class and no label map) is trained at min(class, label dropout)") {
  // Sampling with guidance contrasts (class, labels) with (null class, no labels), so that pair must be
  // trained as often as configured, not at class_dropout x label_dropout (1 % for 0.1 / 0.1).
  auto shares = [](double pc, double pl) {
    const int64_t n = 40000;
    std::array<double, 4> count{};  // none, class only, labels only, both
    for (int64_t i = 0; i < n; ++i) {
      auto d = draw_sample(7, i / 8, i % 8, {1}, false, 1000, pc, pl);
      count[static_cast<size_t>((d.drop_class ? 1 : 0) + (d.drop_labels ? 2 : 0))] += 1.0 / static_cast<double>(n);
    }
    return count;
  };
  const double tol = 4 * std::sqrt(0.1 * 0.9 / 40000);  // 4 binomial standard deviations
  auto a = shares(0.1, 0.1);
  MESSAGE("0.1 / 0.1: both " << a[3] << ", class only " << a[1] << ", labels only " << a[2]);
  CHECK(std::abs(a[3] - 0.1) < tol);
  CHECK(a[1] == 0.0);
  CHECK(a[2] == 0.0);
  auto b = shares(0.2, 0.1);
  MESSAGE("0.2 / 0.1: both " << b[3] << ", class only " << b[1] << ", labels only " << b[2]);
  CHECK(std::abs(b[3] - 0.1) < tol);
  CHECK(std::abs(b[1] - 0.1) < tol);
  CHECK(b[2] == 0.0);
  auto c = shares(0.0, 0.3);
  CHECK(c[3] == 0.0);
  CHECK(std::abs(c[2] - 0.3) < 4 * std::sqrt(0.3 * 0.7 / 40000));
  // the same (seed, draw, index) gives the same draws; another index other noise
  auto d1 = draw_sample(3, 5, 2, {2, 2}, true, 1000, 0.1, 0.1), d2 = draw_sample(3, 5, 2, {2, 2}, true, 1000, 0.1, 0.1);
  CHECK(torch::equal(d1.noise, d2.noise));
  CHECK(torch::equal(d1.t, d2.t));
  CHECK_FALSE(torch::equal(d1.noise, draw_sample(3, 5, 3, {2, 2}, true, 1000, 0.1, 0.1).noise));
}

TEST_CASE("gradient averaging over 2 Gloo ranks: a parameter unused on one rank is averaged with its zeros, not a hang") {
  // rank 0 uses a and b, rank 1 only a; c is used nowhere. One process with both ranks' samples would
  // have grad a = x0 + x1, grad b = y0 (and none for c); the data-parallel mean is half of that.
  auto x = torch::tensor({{1.0f, 2.0f}, {3.0f, 5.0f}}), y = torch::tensor({7.0f, 11.0f});
  std::vector<torch::Tensor> ga(2), gb(2);
  std::vector<bool> c_has(2, true);
  with_ranks(2, [&](Collectives& comm) {
    const int r = comm.rank();
    auto a = torch::zeros({2}, torch::requires_grad()), b = torch::zeros({2}, torch::requires_grad()),
         c = torch::zeros({2}, torch::requires_grad());
    auto loss = (a * x[r]).sum();
    if (r == 0) loss = loss + (b * y).sum();
    loss.backward();
    average_gradients(comm, {a, b, c}, /*bucket_bytes=*/8);  // small buckets: several collectives in order
    ga[static_cast<size_t>(r)] = a.grad().clone();
    gb[static_cast<size_t>(r)] = b.grad().defined() ? b.grad().clone() : torch::Tensor();
    c_has[static_cast<size_t>(r)] = c.grad().defined();
  }, /*timeout_s=*/15);
  for (size_t r = 0; r < 2; ++r) {
    CHECK(torch::allclose(ga[r], (x[0] + x[1]) / 2));
    REQUIRE(gb[r].defined());
    CHECK(torch::allclose(gb[r], y / 2));
    CHECK_FALSE(c_has[r]);
  }
}

TEST_CASE("SyncBatchNorm over 2 Gloo ranks with batches 3 and 1 of 1000 + 0.01 randn equals batch norm of the whole batch") {
  const int64_t C = 2;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(13);
  auto x = 1000 + 0.01 * torch::randn({4, C, 3, 4, 5}, gen);  // float32
  auto g = torch::randn({4, C, 3, 4, 5}, gen);                // upstream gradient: loss = sum(y * g)
  // the reference: one process, the concatenated batch, in float64
  auto xd = x.to(torch::kDouble).requires_grad_(true);
  auto yd = torch::batch_norm(xd, {}, {}, {}, {}, true, 0.1, 1e-5, false);
  (yd * g.to(torch::kDouble)).sum().backward();
  const std::vector<std::pair<int64_t, int64_t>> rows{{0, 3}, {3, 4}};
  std::vector<torch::Tensor> ys(2), grads(2), rmean(2), rvar(2);
  with_ranks(2, [&](Collectives& comm) {
    const size_t r = static_cast<size_t>(comm.rank());
    SyncBatchNorm bn(C);
    bn->comm = &comm;
    bn->train();
    auto xr = x.slice(0, rows[r].first, rows[r].second).clone().requires_grad_(true);
    auto y = bn->forward(xr);
    (y * g.slice(0, rows[r].first, rows[r].second)).sum().backward();
    ys[r] = y.detach();
    grads[r] = xr.grad().clone();
    rmean[r] = bn->running_mean.clone();
    rvar[r] = bn->running_var.clone();
  });
  for (size_t r = 0; r < 2; ++r) {
    auto want = yd.detach().slice(0, rows[r].first, rows[r].second);
    const double err = (ys[r].to(torch::kDouble) - want).abs().max().item<double>();
    MESSAGE("rank " << r << ": largest difference from the float64 whole-batch batch norm " << err << " (output sd 1)");
    CHECK(err < 0.02);
    auto gw = xd.grad().slice(0, rows[r].first, rows[r].second);
    const double gerr = ((grads[r].to(torch::kDouble) - gw).abs().max() / gw.abs().max()).item<double>();
    MESSAGE("rank " << r << ": input gradient, largest difference relative to its largest value " << gerr);
    CHECK(gerr < 0.02);
    // running estimates: momentum 0.1 from (0, 1), the batch mean and the unbiased variance
    auto xdd = x.to(torch::kDouble).transpose(0, 1).reshape({C, -1});
    CHECK(torch::allclose(rmean[r].to(torch::kDouble), 0.1 * xdd.mean(1), 1e-6, 1e-3));
    CHECK(torch::allclose(rvar[r].to(torch::kDouble), 0.9 + 0.1 * xdd.var(1, /*unbiased=*/true), 1e-6, 1e-6));
  }
}

TEST_CASE("augmented copies for stage 2: image and label map warped by one draw - a flip exact and every voxel's image from its label's source") {
  // an image that is a function of its label map: label l has intensity 0.4 l - 0.8 everywhere
  TrainingVolume v;
  v.label = torch::zeros({16, 24, 28}, torch::kLong);
  using torch::indexing::Slice;
  v.label.index_put_({Slice(2, 14), Slice(3, 21), Slice(2, 24)}, 1);
  v.label.index_put_({Slice(4, 12), Slice(5, 13), Slice(4, 12)}, 2);
  v.label.index_put_({Slice(5, 11), Slice(12, 18), Slice(15, 21)}, 3);
  v.x = (v.label.to(torch::kFloat) * 0.4 - 0.8).unsqueeze(0);
  v.geometry.spacing = {1.0, 1.0, 1.5};
  v.class_label = 1;
  v.source = "case_3.nii.gz";
  // flips only: each copy is the case or its left-right mirror (x, the W axis), image and map alike
  LabelAugment flip;
  flip.rotate_deg = 0;
  flip.scale = 0;
  flip.elastic_mm = 0;
  int mirrored = 0;
  for (int64_t k = 0; k < 8; ++k) {
    auto c = augmented_copy(v, 3, k, 7, flip);
    const bool m = !torch::equal(c.label, v.label);
    mirrored += m ? 1 : 0;
    CHECK(torch::equal(c.label, m ? v.label.flip({2}) : v.label));
    CHECK(torch::allclose(c.x, m ? v.x.flip({3}) : v.x, 0, 1e-5));
  }
  CHECK(mirrored > 0);
  CHECK(mirrored < 8);
  // the full augmentation: deterministic per (seed, case, copy), the map alone equals the copy's, copies differ,
  // class and geometry kept, and the warped image has each label's intensity inside the warped map
  auto a = augmented_copy(v, 3, 1, 7), b = augmented_copy(v, 3, 1, 7), other = augmented_copy(v, 3, 2, 7);
  CHECK(torch::equal(a.x, b.x));
  CHECK(torch::equal(a.label, augmented_copy_label(v, 3, 1, 7)));
  CHECK_FALSE(torch::equal(a.label, other.label));
  CHECK_FALSE(torch::equal(a.label, augmented_copy(v, 4, 1, 7).label));
  CHECK(a.class_label == 1);
  CHECK(a.geometry.spacing == v.geometry.spacing);
  CHECK(a.source.find("case_3.nii.gz") != std::string::npos);
  for (int64_t l = 0; l < 4; ++l) {
    auto inside = a.x[0].masked_select(a.label == l);
    REQUIRE(inside.numel() > 100);
    INFO("label " << l);
    // image and map from the same input voxel: every voxel inside the warped label has that label's intensity
    CHECK((inside - (0.4 * static_cast<double>(l) - 0.8)).abs().max().item<double>() < 1e-6);
  }
  // a copy needs the map; the config refuses copies for a model without label maps
  TrainingVolume unlabelled = v;
  unlabelled.label = torch::Tensor();
  test::check_error([&] { augmented_copy(unlabelled, 0, 0, 7); }, {"case_3.nii.gz", "label map"});
  test::check_error([&] { with_overrides(config_to_json(RunConfig{}), {"ldm_train.augment_copies=2"}); },
                    {"ldm_train.augment_copies", "data.labels = condition"});
  test::check_error([&] { with_overrides(config_to_json(RunConfig{}), {"ldm_train.augment_copies=-1"}); }, {"ldm_train.augment_copies"});
}

TEST_CASE("label-balanced L1: each label's mean error weighs alike - 0 is the plain L1, no label maps the plain L1") {
  // 1 x 1 x 1 x 2 x 4 volume: label 1 on one voxel with error 4, label 0 on seven voxels with error 1
  auto x = torch::zeros({1, 1, 1, 2, 4});
  auto rec = torch::ones({1, 1, 1, 2, 4});
  rec[0][0][0][1][3] = 4.0;
  auto seg = torch::zeros({1, 1, 2, 4}, torch::kLong);
  seg[0][0][1][3] = 1;
  const double plain = (7 * 1.0 + 4.0) / 8, balanced = (1.0 + 4.0) / 2;
  CHECK(reconstruction_l1(rec, x, seg, 0.0).item<double>() == doctest::Approx(plain));
  CHECK(reconstruction_l1(rec, x, seg, 1.0).item<double>() == doctest::Approx(balanced));
  CHECK(reconstruction_l1(rec, x, seg, 0.25).item<double>() == doctest::Approx(0.75 * plain + 0.25 * balanced));
  CHECK(reconstruction_l1(rec, x, torch::Tensor(), 1.0).item<double>() == doctest::Approx(plain));
  // the label count given (as the trainer does, to avoid a device-to-host read per step): labels absent from the batch do not count
  CHECK(reconstruction_l1(rec, x, seg, 1.0, 9).item<double>() == doctest::Approx(balanced));
}

TEST_CASE("label-balanced diffusion loss: latent voxels weigh by label fraction - unlabelled samples count in the plain mean only") {
  // one sample, 2 channels, 1 x 1 x 4 latent voxels; errors 1, 1, 1, 3 in both channels
  auto target = torch::zeros({1, 2, 1, 1, 4});
  auto out = torch::ones({1, 2, 1, 1, 4});
  out.select(4, 3).fill_(3.0);
  // label 0 covers the first three voxels and half of the fourth, label 1 the other half
  auto frac = torch::zeros({1, 2, 1, 1, 4});
  frac[0][0].fill_(1.0);
  frac[0][0][0][0][3] = 0.5;
  frac[0][1][0][0][3] = 0.5;
  const double plain2 = (1 + 1 + 1 + 9) / 4.0, bal2 = ((1 + 1 + 1 + 0.5 * 9) / 3.5 + 9.0) / 2;
  const double plain1 = (1 + 1 + 1 + 3) / 4.0, bal1 = ((1 + 1 + 1 + 0.5 * 3) / 3.5 + 3.0) / 2;
  CHECK(diffusion_loss(out, target, "l2").item<double>() == doctest::Approx(torch::mse_loss(out, target).item<double>()));
  CHECK(diffusion_loss(out, target, "l2", frac, 0.0).item<double>() == doctest::Approx(plain2));
  CHECK(diffusion_loss(out, target, "l2", frac, 1.0).item<double>() == doctest::Approx(bal2));
  CHECK(diffusion_loss(out, target, "l2", frac, 0.5).item<double>() == doctest::Approx(0.5 * plain2 + 0.5 * bal2));
  CHECK(diffusion_loss(out, target, "l1", frac, 1.0).item<double>() == doctest::Approx(bal1));
  CHECK(diffusion_loss(out, target, "l1", frac, 0.0).item<double>() == doctest::Approx(plain1));
  // a second sample without a label map (zero fractions) and error 2 everywhere: plain mean over both, balanced over the first
  auto out2 = torch::cat({out, torch::full({1, 2, 1, 1, 4}, 2.0)});
  auto target2 = torch::zeros({2, 2, 1, 1, 4});
  auto frac2 = torch::cat({frac, torch::zeros({1, 2, 1, 1, 4})});
  const double plain_both = (12.0 + 16.0) / 8;
  CHECK(diffusion_loss(out2, target2, "l2", frac2, 0.5).item<double>() == doctest::Approx(0.5 * plain_both + 0.5 * bal2));
  // no label in the batch: the plain mean
  CHECK(diffusion_loss(out, target, "l2", torch::zeros_like(frac), 1.0).item<double>() == doctest::Approx(plain2));
  // the gradient flows to the output through both terms
  auto o = out.clone().requires_grad_(true);
  diffusion_loss(o, target, "l2", frac, 1.0).backward();
  REQUIRE(o.grad().defined());
  // d/d out (one channel of voxel 3): d e3 = 2 (out - t) / 2 channels = 3; label 1: weight 0.5 of mass 0.5,
  // label 0: 0.5 of mass 3.5; the two labels averaged
  const double g3 = 0.5 * (3.0 * 0.5 / 0.5 + 3.0 * 0.5 / 3.5);
  CHECK(o.grad()[0][0][0][0][3].item<double>() == doctest::Approx(g3));
}

TEST_CASE("axis order: a config file without axis_order whose lists read differently as x,y,z and z,y,x is refused - a checkpoint's is upgraded") {
  test::ScratchDir dir("axes");
  write_text_atomically(dir / "old.json", R"({"data": {"shape": [16, 32, 32]}})");
  test::check_error([&] { resolve_config((dir / "old.json").string(), {}); }, {"old.json", "data.shape", "axis_order"});
  // the same lists either way: nothing to misread
  write_text_atomically(dir / "cube.json", R"({"data": {"shape": [32, 32, 32], "spacing": [1.0, 1.0, 1.0]}})");
  CHECK(resolve_config((dir / "cube.json").string(), {}).data.shape == std::array<int64_t, 3>{32, 32, 32});
  // declared: x,y,z, held [D, H, W]
  write_text_atomically(dir / "new.json", R"({"axis_order": "xyz", "data": {"shape": [32, 32, 16], "spacing": [1.0, 1.0, 3.0]}})");
  auto c = resolve_config((dir / "new.json").string(), {});
  CHECK(c.data.shape == std::array<int64_t, 3>{16, 32, 32});
  CHECK(c.data.spacing[2] == 3.0);  // x,y,z: z is 3 mm
  // a checkpoint's config of before the axis order held [D, H, W]: upgraded to x,y,z on load
  nlohmann::json before = config_to_json(c);
  before.erase("axis_order");
  before["data"]["shape"] = {16, 32, 32};
  upgrade_axis_order(before);  // (data.spacing was x,y,z already)
  auto upgraded = config_from_json<RunConfig>(before);
  CHECK(upgraded.data.shape == c.data.shape);
  CHECK(upgraded.data.spacing == c.data.spacing);
}

TEST_CASE("dry run: the reduced probe shapes are multiples of the downsampling, small, growing, and none at demo sizes") {
  CHECK(reduced_probe_shapes({32, 32, 32}, {4, 4, 4}, 8).empty());
  CHECK(reduced_probe_shapes({64, 64, 64}, {4, 4, 4}, 8).empty());
  for (const auto& [full, unit] : std::vector<std::pair<std::array<int64_t, 3>, std::array<int64_t, 3>>>{
           {{32, 256, 256}, {8, 16, 16}}, {{128, 128, 128}, {16, 16, 16}}, {{144, 192, 192}, {8, 8, 8}}}) {
    auto s = reduced_probe_shapes(full, unit, 8);
    REQUIRE(s.size() == 2);
    auto vox = [](const std::array<int64_t, 3>& a) { return static_cast<double>(a[0] * a[1] * a[2]); };
    for (const auto& r : s)
      for (size_t a = 0; a < 3; ++a) {
        CHECK(r[a] % unit[a] == 0);
        CHECK(r[a] <= full[a]);
      }
    CHECK(vox(s[1]) >= 1.5 * vox(s[0]));
    CHECK(vox(s[1]) <= 0.5 * vox(full));
    CHECK(vox(s[0]) >= vox(full) / 200);
  }
}

TEST_CASE("a VQ-GAN on 3 MR sequences: batches of 3 channels - checkpoint holds 3-channel convolutions - per-channel previews") {
  test::ScratchDir dir("three-channels");
  auto cfg = tiny_config();
  cfg.data.channels = {"t1", "t2", "flair"};
  cfg.vqgan_train.steps = 2;
  cfg.vqgan_train.gan_start = 1;  // the discriminators see 3 channels too
  cfg.vqgan_train.val_every = 2;
  cfg.vqgan_train.perceptual_weight = 0;
  PhantomParams p;
  p.shape = {16, 16, 16};
  std::vector<TrainingVolume> data;
  for (int i = 0; i < 3; ++i)
    data.push_back(preprocess(make_phantom_sequences(p, i, i % 2, cfg.data.channels), cfg.data, i % 2, "phantom"));
  REQUIRE(data[0].x.size(0) == 3);
  std::vector<TrainingVolume> train(data.begin(), data.begin() + 2), val(data.begin() + 2, data.end());
  TrainHooks hooks;
  std::vector<int64_t> preview_rows;
  hooks.write_png = [&](const fs::path&, const torch::Tensor& img) { preview_rows.push_back(img.size(0)); };
  auto r = train_vqgan(cfg, train, val, dir / "run", RunStart::New, hooks);
  CHECK(r.final_step == 2);
  CHECK(std::isfinite(r.validations.back().psnr));
  auto ck = load_checkpoint(dir / "run/last.pt");
  CHECK(ck.tensor("model.encoder.conv_first.conv.weight").size(1) == 3);
  CHECK(ck.tensor("model.decoder.conv_last.conv.weight").size(0) == 3);
  // the preview holds input, reconstruction and error of each channel: 3 x the rows of one channel
  REQUIRE(preview_rows.size() == 1);
  auto one = tiny_config();
  one.vqgan_train.steps = 2;
  one.vqgan_train.val_every = 2;
  CHECK(train_vqgan(one, phantoms(3), phantoms(1), dir / "one", RunStart::New, hooks).final_step == 2);
  REQUIRE(preview_rows.size() == 2);
  // one channel: 3 panels and 2 gaps of 4 rows (h = 3P + 8); three: 9 panels and 8 gaps (9P + 32 = 3h + 8)
  CHECK(preview_rows[0] == 3 * preview_rows[1] + 8);
}

TEST_CASE("a label-conditioned decoder trains on the label maps - its checkpoint decodes with them - mismatched settings are named") {
  test::ScratchDir dir("decoder-labels");
  auto cfg = tiny_config();
  cfg.data.labels = "condition";
  cfg.ldm_train.augment_copies = 0;
  cfg.vqgan.decoder_labels = 5;  // the MR phantoms' labels 0..4
  cfg.vqgan.decoder_label_heads = true;
  cfg.vqgan_train.steps = 3;
  cfg.vqgan_train.val_every = 3;
  cfg.validate();
  auto train = phantoms(3), val = phantoms(1);
  REQUIRE(train[0].label.defined());
  auto r = train_vqgan(cfg, train, val, dir / "run", RunStart::New, {});
  CHECK(r.final_step == 3);
  auto ck = load_checkpoint(dir / "run/last.pt");
  auto w = ck.tensor("model.decoder.label_in.0.weight");  // the one (full-resolution) stage: [4 channels, 5 labels, 1, 1, 1]
  CHECK((w.sizes() == torch::IntArrayRef({4, 5, 1, 1, 1})));
  CHECK(w.abs().sum().item<double>() > 0);  // trained away from its zero start
  auto offsets = ck.tensor("model.decoder.label_in.1.weight");  // the output's: an intensity offset per label
  CHECK((offsets.sizes() == torch::IntArrayRef({1, 5, 1, 1, 1})));
  CHECK(offsets.abs().sum().item<double>() > 0);
  auto heads = ck.tensor("model.decoder.label_heads.conv.weight");  // one output head per label: [5 labels x 1 channel, 4, 3, 3, 3]
  CHECK((heads.sizes() == torch::IntArrayRef({5, 4, 3, 3, 3})));
  CHECK(heads.abs().sum().item<double>() > 0);
  auto ae = load_latent_autoencoder(dir / "run/last.pt", torch::kCPU);
  CHECK(ae->decoder_labels() == 5);
  auto x = val[0].x.unsqueeze(0);
  auto z = ae->encode(x, AutoencoderRun{});
  CHECK((ae->decode(z, AutoencoderRun{}, val[0].label.unsqueeze(0)) - ae->decode(z, AutoencoderRun{})).abs().max().item<double>() > 0);
  // labels beyond decoder_labels, cases without label maps, the KL autoencoder, unpaired data: one error each
  auto few = cfg;
  few.vqgan.decoder_labels = 3;
  test::check_error([&] { train_vqgan(few, train, val, dir / "few", RunStart::New, {}); }, {"vqgan.decoder_labels", "up to 4", "set it to 5"});
  auto unlabelled = train;
  unlabelled[1].label = torch::Tensor();
  test::check_error([&] { train_vqgan(cfg, unlabelled, val, dir / "unlabelled", RunStart::New, {}); }, {"phantom", "no label map"});
  test::check_error([&] { with_overrides(config_to_json(cfg), {"autoencoder.kind=\"kl\"", "ldm.latent_norm=\"channel_meanstd\""}); },
                    {"vqgan.decoder_labels", "autoencoder.kind = kl"});
  test::check_error([&] { with_overrides(config_to_json(cfg), {"data.labels=\"none\""}); }, {"vqgan.decoder_labels", "data.labels = condition"});
  test::check_error([&] { with_overrides(config_to_json(cfg), {"vqgan.decoder_labels=1"}); }, {"vqgan.decoder_labels", "at least 2"});
  test::check_error([&] { with_overrides(config_to_json(cfg), {"vqgan.decoder_labels=0"}); }, {"vqgan.decoder_label_heads", "vqgan.decoder_labels"});
}

namespace {
RunConfig tiny_kl_config() {
  auto c = tiny_config();
  c.autoencoder.kind = "kl";
  c.autoencoder.kl.channels = {8, 16};
  c.autoencoder.kl.num_res_blocks = {1};
  c.autoencoder.kl.norm_groups = 4;
  c.autoencoder.kl.latent_channels = 3;
  c.vqgan_train.kl_weight = 0.5;
  c.ldm.latent_norm = "channel_meanstd";
  c.validate();
  return c;
}
}  // namespace

TEST_CASE("KL autoencoder stage 1: the regulariser is kl_weight x KL(N(mu, sigma) || N(0, 1)) - it samples the posterior - evaluation decodes mu") {
  auto cfg = tiny_kl_config();
  auto m = make_stage1_model(cfg, 1);
  auto data = phantoms(2);
  auto x = torch::stack({data[0].x, data[1].x});  // [2, 1, 16, 16, 16]
  auto& kl = dynamic_cast<AutoencoderKLImpl&>(m->module());
  torch::NoGradGuard ng;
  auto post = kl.encode((x + 1) * 0.5);
  // closed form per sample: sum over the latent of -log sigma + (sigma^2 + mu^2) / 2 - 1/2, then the batch mean
  auto mu = post.mu.to(torch::kDouble), sg = post.sigma.to(torch::kDouble);
  double expect = 0;
  for (int64_t b = 0; b < 2; ++b)
    expect += (-sg[b].log() + (sg[b].pow(2) + mu[b].pow(2)) / 2 - 0.5).sum().item<double>() / 2;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(7);
  auto out = m->forward(x, gen);
  CHECK(out.regulariser.item<double>() == doctest::Approx(0.5 * expect).epsilon(1e-4));
  CHECK(m->regulariser_name() == "kl");
  CHECK_FALSE(m->has_codebook());
  // the training forward decodes mu + sigma * eps (eps from the generator), evaluation decodes mu
  auto gen2 = at::make_generator<at::CPUGeneratorImpl>(7);
  auto eps = torch::randn(post.mu.sizes(), gen2);
  CHECK(torch::allclose(out.reconstruction, kl.decode(post.mu + post.sigma * eps) * 2 - 1, 1e-5, 1e-6));
  auto det = m->reconstruct(x);
  CHECK(torch::allclose(det, kl.decode(post.mu) * 2 - 1, 1e-5, 1e-6));
  CHECK_FALSE(torch::allclose(det, out.reconstruction, 1e-5, 1e-6));
  // the inference view shares the weights: its encode is the posterior mean
  auto ae = m->inference();
  CHECK(torch::allclose(ae->encode(x, AutoencoderRun{}), post.mu, 1e-6, 1e-7));
  CHECK(ae->downsample() == std::array<int64_t, 3>{2, 2, 2});
}

TEST_CASE("KL autoencoder stage 1: a resumed run equals an uninterrupted one - the checkpoint is a kl-autoencoder that stage 2 and sampling load") {
  test::ScratchDir dir("kl-resume");
  auto data = phantoms(4);
  std::vector<TrainingVolume> train(data.begin(), data.begin() + 3), val(data.begin() + 3, data.end());
  auto cfg = tiny_kl_config();
  TrainHooks hooks;
  train_vqgan(cfg, train, val, dir / "full", RunStart::New, hooks);
  auto half = cfg;
  half.vqgan_train.steps = 3;
  train_vqgan(half, train, val, dir / "split", RunStart::New, hooks);
  train_vqgan(cfg, train, val, dir / "split", RunStart::Resume, hooks);
  auto a = load_checkpoint(dir / "full/last.pt"), b = load_checkpoint(dir / "split/last.pt");
  CHECK(a.kind == "kl-autoencoder");
  int differing = 0;
  for (const auto& [k, v] : a.tensors)
    if (k.rfind("optim.", 0) != 0 && !torch::equal(v, b.tensor(k))) ++differing;
  CHECK(differing == 0);
  CHECK(a.tensors.count("autoencoder.quant_conv_mu.conv.weight") == 1);  // MONAI's weight names
  std::string m = read_text(dir / "full/metrics.jsonl");
  CHECK(m.find("\"kl\":") != std::string::npos);
  CHECK(m.find("perplexity") == std::string::npos);
  // loaded for inference: the posterior mean and its decoding, as the trained module gives them
  auto loaded = load_autoencoder(dir / "full/last.pt");
  CHECK(loaded.kind() == "KL autoencoder");
  CHECK_FALSE(loaded.model);
  auto ae = load_latent_autoencoder(dir / "full/last.pt", torch::kCPU);
  CHECK(ae->family() == "kl");
  CHECK(ae->latent_channels() == 3);
  auto x = val[0].x.unsqueeze(0);
  auto z = ae->encode(x, AutoencoderRun{});
  CHECK(z.sizes() == torch::IntArrayRef({1, 3, 8, 8, 8}));
  CHECK(torch::allclose(loaded.ae->decode(z, AutoencoderRun{}), ae->decode(z, AutoencoderRun{})));
  // latent normalisation: codebook_minmax needs a codebook
  test::check_error([&] { fit_latent_norm("codebook_minmax", *ae, z); }, {"codebook_minmax", "channel_meanstd"});
  auto bad = config_to_json(cfg);
  bad["ldm"]["latent_norm"] = "codebook_minmax";
  test::check_error([&] { with_overrides(bad, {}); }, {"ldm.latent_norm", "autoencoder.kind = kl"});
  test::check_error([&] { with_overrides(config_to_json(cfg), {"autoencoder.kind=\"vae\""}); }, {"autoencoder.kind", "vqgan or kl"});
  test::check_error([&] { with_overrides(config_to_json(cfg), {"data.shape=[17,16,16]"}); }, {"data.shape", "KL autoencoder"});
}

TEST_CASE("train-vqgan --init: fine-tuning starts from the given weights and takes their architecture - other checkpoints are refused") {
  test::ScratchDir dir("kl-init");
  auto data = phantoms(3);
  std::vector<TrainingVolume> train(data.begin(), data.begin() + 2), val(data.begin() + 2, data.end());
  auto cfg = tiny_kl_config();
  cfg.vqgan_train.steps = 2;
  TrainHooks hooks;
  train_vqgan(cfg, train, val, dir / "a", RunStart::New, hooks);
  // a config with another architecture and a learning rate too small to move the weights
  auto other = cfg;
  other.autoencoder.kl.channels = {8, 8};
  other.vqgan_train.steps = 1;
  other.vqgan_train.lr = 1e-12;
  auto init = read_stage1_init(dir / "a/last.pt", other, 1);
  CHECK(other.autoencoder.kl.channels == std::vector<int64_t>{8, 16});
  train_vqgan(other, train, val, dir / "b", RunStart::New, hooks, nullptr, std::nullopt, &init);
  auto a = load_checkpoint(dir / "a/last.pt"), b = load_checkpoint(dir / "b/last.pt");
  int compared = 0;
  for (const auto& [k, v] : a.tensors)
    if (k.rfind("autoencoder.", 0) == 0) {
      CHECK(torch::allclose(v, b.tensor(k), 0, 1e-8));
      ++compared;
    }
  CHECK(compared > 10);
  CHECK(b.extra.at("init").at("sha256") == sha256_file(dir / "a/last.pt"));
  // without --init the same settings start elsewhere
  train_vqgan(other, train, val, dir / "c", RunStart::New, hooks);
  auto c = load_checkpoint(dir / "c/last.pt");
  CHECK_FALSE(torch::allclose(a.tensor("autoencoder.decoder.blocks.0.conv.weight"), c.tensor("autoencoder.decoder.blocks.0.conv.weight"), 0, 1e-6));
  // refused: another number of channels, a checkpoint that is not an autoencoder
  test::check_error([&] { auto x = cfg; read_stage1_init(dir / "a/last.pt", x, 3); }, {"--init", "1 image channel", "3"});
  Checkpoint ldm;
  ldm.kind = "ldm";
  save_checkpoint(ldm, dir / "ldm.pt");
  test::check_error([&] { auto x = cfg; read_stage1_init(dir / "ldm.pt", x, 1); }, {"--init", "ldm", "not an autoencoder"});
}

TEST_CASE("the spacing a MAISI U-Net sees is the case's spacing along RAS x y z whatever the file's axis order") {
  Geometry g;
  g.spacing = {0.5, 0.7, 2.0};  // index axes i, j, k
  CHECK(torch::equal(maisi_spacing_input(g), torch::tensor({0.5, 0.7, 2.0}, torch::kDouble)));
  // a sagittal-like grid: i runs superior (world z), j posterior (world y), k left (world x)
  g.direction = {0, 0, 1, 0, 1, 0, 1, 0, 0};
  CHECK(torch::equal(maisi_spacing_input(g), torch::tensor({2.0, 0.7, 0.5}, torch::kDouble)));
}

// One fine-tuning step of an imported U-Net against MONAI's: the fixture holds the loss and gradients of NV-Generate-CTMR's
// diff_model_train.py step (RFlowScheduler.sample_timesteps from recorded uniform draws, add_noise, velocity target,
// L1) on MONAI's MAISI U-Net, and of a bundle's step (DDPMScheduler.add_noise, noise target, MSE) on MONAI's
// DiffusionModelUNet, with the same weights and inputs (scripts/make_monai_fixtures.py).
TEST_CASE("train-ldm --init computes MONAI's loss and gradients for a MAISI and a bundle U-Net") {
  auto nets = nlohmann::json::parse(read_text(test::fixture("monai/networks.json")));
  auto io = read_state_dict(test::fixture("monai/train_step.pt"));
  auto close = [](const torch::Tensor& ours, const torch::Tensor& monai, const char* what) {
    INFO(what);
    const double scale = monai.abs().max().item<double>(), diff = (ours - monai).abs().max().item<double>();
    MESSAGE(std::string(what) << ": max |meddiff - MONAI| " << diff << " of " << scale);
    CHECK(scale > 0);
    CHECK(diff <= 1e-5 * scale);
  };
  {
    auto def = nets.at("unet_maisi");
    def["_target_"] = "DiffusionModelUNetMaisi";
    MonaiUNet net(monai_unet_from_json(def, nets, "unet_maisi"));
    load_state_dict(*net, read_state_dict(test::fixture("monai/unet_maisi.pt"), "unet_state_dict"), "unet");
    LoadedLDM l;
    l.maisi = MaisiRFlowParams{};
    l.maisi->transform_scale = 1.4;  // sampling's setting: MONAI's training transform ignores it
    CHECK((maisi_rflow_train_timesteps(*l.maisi, io.at("maisi_u"), 8 * 16 * 8) - io.at("maisi_t")).abs().max().item<double>() < 1e-3);
    l.maisi->discrete = true;  // u T truncated before the transform
    CHECK((maisi_rflow_train_timesteps(*l.maisi, io.at("maisi_u"), 8 * 16 * 8) - io.at("maisi_t_discrete")).abs().max().item<double>() < 1e-3);
    l.maisi->discrete = false;
    MonaiUNetInputs in;
    in.class_labels = io.at("maisi_class");
    in.spacing = io.at("maisi_spacing");
    net->zero_grad();
    auto loss = imported_ldm_loss(l, net, io.at("maisi_x0"), io.at("maisi_noise"), io.at("maisi_u"), in);
    loss.backward();
    close(loss, io.at("maisi_loss"), "MAISI L1 loss");
    close(net->conv_in->conv->weight.grad(), io.at("maisi_grad_conv_in"), "MAISI conv_in gradient");
    close(net->out_conv->conv->weight.grad(), io.at("maisi_grad_out"), "MAISI output convolution gradient");
  }
  {
    auto def = nets.at("unet_monai");
    def["_target_"] = "monai.networks.nets.diffusion_model_unet.DiffusionModelUNet";
    MonaiUNet net(monai_unet_from_json(def, nets, "unet_monai"));
    load_state_dict(*net, read_state_dict(test::fixture("monai/unet_monai.pt")), "unet");
    LoadedLDM l;
    l.prediction = Prediction::Eps;
    const auto schedule = make_monai_schedule("scaled_linear_beta", 1000, 0.0015, 0.0195);
    net->zero_grad();
    auto loss = imported_ldm_loss(l, net, io.at("monai_x0"), io.at("monai_noise"), io.at("monai_t").to(torch::kFloat), {},
                                  schedule.alphas_cumprod);
    loss.backward();
    close(loss, io.at("monai_loss"), "bundle MSE loss");
    close(net->conv_in->conv->weight.grad(), io.at("monai_grad_conv_in"), "bundle conv_in gradient");
  }
}
