// End-to-end on tiny models: train a VQ-GAN and a conditional LDM for a few steps on phantoms, then
// check the sampling job's guarantees (batch and shard invariance, resume, layouts, provenance).
#include <doctest/doctest.h>

#include "cli/commands.h"
#include "core/checkpoint.h"
#include "core/fs.h"
#include "core/lock.h"
#include "core/sha256.h"
#include "data/phantom.h"
#include "io/volume_reader.h"
#include "io/volume_writer.h"
#include "data/manifest.h"
#include "test_support.h"
#include "tiny_models.h"

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>

using namespace meddiff;

namespace {

// Trains once per test binary run: folder with data/, vqgan/last.pt, ldm/last.pt.
const fs::path& trained() {
  static test::ScratchDir* dir = nullptr;
  if (!dir) {
    dir = new test::ScratchDir("sample-models");
    test::train_tiny_models(dir->path(), 4, {"--set", "sample.steps=5"});
  }
  return dir->path();
}

std::string voxels(const fs::path& p) {
  auto v = io::read_volume(p);
  auto t = v.image.contiguous();
  return std::string(reinterpret_cast<const char*>(t.data_ptr<float>()), static_cast<size_t>(t.numel()) * sizeof(float));
}

int sample(const fs::path& out, std::vector<std::string> extra) {
  std::vector<std::string> args = {"--ldm", (trained() / "ldm/last.pt").string(), "--out", out.string()};
  args.insert(args.end(), extra.begin(), extra.end());
  return cli::run_sample(args);
}

// What `f` writes to stderr (file descriptor 2), via a temporary file.
std::string stderr_of(const fs::path& file, const std::function<void()>& f) {
  std::fflush(stderr);
  int saved = dup(2);
  int fd = open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  REQUIRE(fd >= 0);
  dup2(fd, 2);
  close(fd);
  f();
  std::fflush(stderr);
  dup2(saved, 2);
  close(saved);
  return read_text(file);
}

}  // namespace

TEST_CASE("sampling: an eps model on a schedule ending at alpha_bar ~ 0 warns for ddim but not for ddpm") {
  test::ScratchDir dir("sample-eps-warning");
  // The tiny model predicts eps (the default) on the cosine schedule (alpha_bar(T-1) ~ 1e-5).
  std::string ddim = stderr_of(dir / "ddim.txt", [&] { CHECK(sample(dir / "ddim", {"-n", "1", "--sampler", "ddim"}) == 0); });
  CHECK(ddim.find("warning: this model predicts eps") != std::string::npos);
  CHECK(ddim.find("ldm.prediction = v") != std::string::npos);
  std::string ddpm = stderr_of(dir / "ddpm.txt", [&] { CHECK(sample(dir / "ddpm", {"-n", "1", "--sampler", "ddpm"}) == 0); });
  CHECK(ddpm.find("predicts eps") == std::string::npos);
  CHECK(fs::exists(dir / "ddpm/synth_000000.nii.gz"));
}

TEST_CASE("sampling: batch 1 and batch 4 give identical volumes for every sampler") {
  test::ScratchDir dir("sample-batch");
  for (const char* sampler : {"ddpm", "ddim", "dpmpp2m"}) {
    std::string s(sampler);
    REQUIRE(sample(dir / ("b1" + s), {"-n", "4", "--batch", "1", "--sampler", s, "--eta", "0.5", "--seed", "7"}) == 0);
    REQUIRE(sample(dir / ("b4" + s), {"-n", "4", "--batch", "4", "--sampler", s, "--eta", "0.5", "--seed", "7"}) == 0);
    for (int i = 0; i < 4; ++i) {
      auto name = fmt::format("synth_{:06d}.nii.gz", i);
      INFO(sampler << " volume " << i);
      CHECK(voxels(dir / ("b1" + s) / name) == voxels(dir / ("b4" + s) / name));
    }
  }
  // another seed gives other volumes
  REQUIRE(sample(dir / "seed8", {"-n", "1", "--seed", "8"}) == 0);
  REQUIRE(sample(dir / "seed7", {"-n", "1", "--seed", "7"}) == 0);
  CHECK(voxels(dir / "seed8/synth_000000.nii.gz") != voxels(dir / "seed7/synth_000000.nii.gz"));
}

TEST_CASE("sampling: a rectified-flow model trains and samples with euler and heun, batch-invariant, and refuses diffusion samplers") {
  test::ScratchDir dir("sample-rflow");
  // train-ldm on the tiny VQ-GAN with the rectified-flow objective
  auto args = test::tiny_model_args(trained() / "data/manifest.json");
  args.insert(args.end(), {"--set", "ldm_train.steps=3", "--set", "ldm.objective=\"rflow\"", "--set", "sample.sampler=\"euler\"",
                           "--set", "sample.steps=4", "--vqgan", (trained() / "vqgan/last.pt").string(), "--out", (dir / "ldm").string()});
  REQUIRE(cli::run_train_ldm(args) == 0);
  auto ck = load_checkpoint(dir / "ldm/last.pt");
  CHECK(ck.config["ldm"]["objective"] == "rflow");
  auto rf = [&](const std::string& out, std::vector<std::string> extra) {
    std::vector<std::string> a = {"--ldm", (dir / "ldm/last.pt").string(), "--out", (dir / out).string(), "--seed", "3"};
    a.insert(a.end(), extra.begin(), extra.end());
    return cli::run_sample(a);
  };
  for (const char* s : {"euler", "heun"}) {
    std::string m(s);
    REQUIRE(rf("b1" + m, {"-n", "2", "--batch", "1", "--sampler", m}) == 0);
    REQUIRE(rf("b2" + m, {"-n", "2", "--batch", "2", "--sampler", m}) == 0);
    for (int i = 0; i < 2; ++i) {
      auto name = fmt::format("synth_{:06d}.nii.gz", i);
      INFO(s << " volume " << i);
      CHECK(voxels(dir / ("b1" + m) / name) == voxels(dir / ("b2" + m) / name));
    }
  }
  CHECK(voxels(dir / "b1euler/synth_000000.nii.gz") != voxels(dir / "b1heun/synth_000000.nii.gz"));
  auto line = nlohmann::json::parse(read_text(dir / "b1heun/synth_000000.json"));
  CHECK(line["sampler"] == "heun");
  test::check_error([&] { rf("bad", {"--sampler", "ddim"}); }, {"euler or heun"});
  CHECK_FALSE(fs::exists(dir / "bad"));
  // and a diffusion model refuses the flow samplers
  test::check_error([&] { sample(dir / "bad2", {"--sampler", "euler"}); }, {"ddpm, ddim or dpmpp2m"});
  // timestep grids: for the diffusion samplers, recorded in the job; refused for rectified flow
  REQUIRE(sample(dir / "grid", {"-n", "1", "--sampler", "dpmpp2m", "--grid", "logsnr"}) == 0);
  CHECK(nlohmann::json::parse(read_text(dir / "grid/synth_000000.json"))["grid"] == "logsnr");
  test::check_error([&] { sample(dir / "bad3", {"--grid", "cosine"}); }, {"grid", "logsnr"});
  test::check_error([&] { rf("bad4", {"--grid", "logsnr"}); }, {"rectified flow"});
  CHECK_FALSE(fs::exists(dir / "bad3"));
  // a config that pairs rflow with a diffusion sampler is refused before any work
  auto bad = test::tiny_model_args(trained() / "data/manifest.json");
  bad.insert(bad.end(), {"--set", "ldm.objective=\"rflow\"", "--vqgan", (trained() / "vqgan/last.pt").string(), "--out",
                         (dir / "ldm2").string()});
  test::check_error([&] { cli::run_train_ldm(bad); }, {"sample.sampler", "euler or heun"});
}

TEST_CASE("sampling: two shards equal one run / a re-run skips finished volumes") {
  test::ScratchDir dir("sample-shard");
  REQUIRE(sample(dir / "all", {"-n", "5", "--batch", "2"}) == 0);
  REQUIRE(sample(dir / "sharded", {"-n", "5", "--shard", "2/2", "--batch", "3"}) == 0);
  CHECK_FALSE(fs::exists(dir / "sharded/synth_000000.nii.gz"));
  CHECK(fs::exists(dir / "sharded/synth_000001.nii.gz"));
  REQUIRE(sample(dir / "sharded", {"-n", "5", "--shard", "1/2"}) == 0);
  for (int i = 0; i < 5; ++i) {
    auto name = fmt::format("synth_{:06d}.nii.gz", i);
    CHECK(voxels(dir / "all" / name) == voxels(dir / "sharded" / name));
  }
  auto count_lines = [](const fs::path& p) {
    std::string t = read_text(p);
    return std::count(t.begin(), t.end(), '\n');
  };
  CHECK(count_lines(dir / "sharded/manifest.jsonl") == 5);
  // a killed job: remove one volume's completion record and file, re-run: only that one is made again
  fs::remove(dir / "all/synth_000003.json");
  fs::remove(dir / "all/synth_000003.nii.gz");
  auto before = fs::last_write_time(dir / "all/synth_000001.nii.gz");
  REQUIRE(sample(dir / "all", {"-n", "5", "--batch", "2"}) == 0);
  CHECK(fs::exists(dir / "all/synth_000003.nii.gz"));
  CHECK(fs::last_write_time(dir / "all/synth_000001.nii.gz") == before);
  CHECK(count_lines(dir / "all/manifest.jsonl") == 5);  // one line per volume, never doubled
  for (const auto& e : fs::directory_iterator(dir / "all")) CHECK(e.path().filename().string().find(".tmp-") == std::string::npos);
}

TEST_CASE("sampling: provenance / CT in HU / synthetic DICOM / nnU-Net layout") {
  test::ScratchDir dir("sample-out");
  REQUIRE(sample(dir / "flat", {"-n", "2", "--class", "1", "--format", "nifti,dicom,png", "--guidance", "2"}) == 0);
  auto rec = nlohmann::json::parse(read_text(dir / "flat/synth_000001.json"));
  CHECK(rec["class"] == 1);
  CHECK(rec["guidance"] == 2.0);
  CHECK(rec["synthetic"] == true);
  CHECK(rec["ldm_sha256"].get<std::string>().size() == 64);
  CHECK(rec["vqgan_sha256"].get<std::string>().size() == 64);
  auto v = io::read_volume(dir / "flat/synth_000001.nii.gz");
  CHECK(v.modality == Modality::CT);
  CHECK((v.image == v.image.round()).all().item<bool>());
  CHECK(v.image.min().item<float>() >= -1024);
  CHECK(v.geometry.spacing[2] == doctest::Approx(2.0));  // the training data's spacing
  CHECK(v.geometry.spacing[0] == doctest::Approx(1.5));
  auto dcm = io::read_volume(dir / "flat/synth_000001_dicom");
  CHECK(torch::equal(dcm.image, v.image));
  CHECK(fs::exists(dir / "flat/synth_000001.png"));
  REQUIRE(sample(dir / "nn", {"-n", "3", "--layout", "nnunet", "--name", "SynthCT"}) == 0);
  CHECK(fs::exists(dir / "nn/imagesTr/SynthCT_0002_0000.nii.gz"));
  auto ds = nlohmann::json::parse(read_text(dir / "nn/dataset.json"));
  CHECK(ds["numTraining"] == 3);
  CHECK(ds["file_ending"] == ".nii.gz");
  CHECK(ds["channel_names"]["0"] == "CT");
  CHECK(ds["labels"]["background"] == 0);
  test::check_error([&] { sample(dir / "bad", {"-n", "1", "--class", "5"}); }, {"--class"});
  test::check_error([&] { sample(dir / "bad", {"-n", "1", "--shard", "3/2"}); }, {"--shard"});
  test::check_error([&] { sample(dir / "bad", {"-n", "1", "--sampler", "euler"}); }, {"sampler"});
}

TEST_CASE("train-ldm: checkpoint is an ldm and resumes") {
  auto d = trained();
  auto c = load_checkpoint(d / "ldm/last.pt");
  CHECK(c.kind == "ldm");
  CHECK(c.step == 3);
  CHECK(c.extra["num_classes"] == 2);
  CHECK(c.tensors.count("ema.conv_out.weight") == 1);
  CHECK(fs::exists(d / "ldm/latents.pt"));
  CHECK(fs::exists(d / "ldm/metrics.jsonl"));
}

namespace {
std::vector<nlohmann::json> manifest_lines(const fs::path& dir) {
  std::vector<nlohmann::json> out;
  std::istringstream in(read_text(dir / "manifest.jsonl"));
  std::string line;
  while (std::getline(in, line)) out.push_back(nlohmann::json::parse(line));
  return out;
}
std::vector<int64_t> manifest_indices(const fs::path& dir) {
  std::vector<int64_t> idx;
  for (const auto& j : manifest_lines(dir)) idx.push_back(j["index"].get<int64_t>());
  return idx;
}
}  // namespace

TEST_CASE("sampling jobs: a re-run with other settings is refused naming them and --force starts again") {
  test::ScratchDir dir("sample-settings");
  auto job = dir / "job";
  REQUIRE(sample(job, {"-n", "2", "--seed", "1", "--format", "nifti,png"}) == 0);
  auto first = voxels(job / "synth_000001.nii.gz");
  const std::vector<std::pair<std::vector<std::string>, std::string>> changes = {
      {{"--seed", "2"}, "seed"},          {{"--class", "1"}, "class_rule"}, {{"--guidance", "3"}, "guidance"},
      {{"--sampler", "ddpm"}, "sampler"}, {{"--steps", "4"}, "steps"},      {{"--eta", "0.5"}, "eta"},
      {{"--format", "nifti"}, "formats"}};
  for (const auto& [flags, key] : changes) {
    std::vector<std::string> a = {"-n", "2", "--seed", "1", "--format", "nifti,png"};
    for (size_t i = 0; i < flags.size(); i += 2) {
      auto it = std::find(a.begin(), a.end(), flags[i]);
      if (it != a.end()) *(it + 1) = flags[i + 1];
      else a.insert(a.end(), {flags[i], flags[i + 1]});
    }
    INFO(key);
    test::check_error([&] { sample(job, a); }, {job.string(), key, "--force"});
  }
  CHECK(voxels(job / "synth_000001.nii.gz") == first);  // nothing was touched
  // the same settings resume (nothing to do); --force with other settings starts the folder afresh
  REQUIRE(sample(job, {"-n", "2", "--seed", "1", "--format", "nifti,png"}) == 0);
  REQUIRE(sample(job, {"-n", "1", "--seed", "2", "--force"}) == 0);
  CHECK(manifest_indices(job) == std::vector<int64_t>{0});
  CHECK(manifest_lines(job)[0]["seed"] == 2);
  CHECK_FALSE(fs::exists(job / "synth_000001.nii.gz"));
  CHECK_FALSE(fs::exists(job / "synth_000000.png"));
  // a folder with files meddiff did not write is never used
  write_text_atomically(dir / "mine/notes.txt", "x");
  test::check_error([&] { sample(dir / "mine", {"-n", "1", "--force"}); }, {"notes.txt", "did not write"});
  CHECK(read_text(dir / "mine/notes.txt") == "x");
}

TEST_CASE("sampling jobs: a manifest line lost to a kill comes back and --finalize rebuilds") {
  test::ScratchDir dir("sample-manifest");
  auto job = dir / "job";
  REQUIRE(sample(job, {"-n", "3"}) == 0);
  CHECK(manifest_indices(job) == std::vector<int64_t>{0, 1, 2});
  // the state a kill between sidecar and manifest line leaves: index 1's line is missing, and a
  // half-written line at the end
  auto lines = manifest_lines(job);
  write_text_atomically(job / "manifest.jsonl", lines[0].dump() + "\n" + lines[2].dump() + "\n{\"index\": 1, \"fi");
  REQUIRE(sample(job, {"-n", "3"}) == 0);  // nothing left to sample; the manifest is rebuilt
  CHECK(manifest_indices(job) == std::vector<int64_t>{0, 1, 2});
  fs::remove(job / "manifest.jsonl");
  CHECK(cli::run_sample({"--out", job.string(), "--finalize"}) == 0);
  CHECK(manifest_indices(job) == std::vector<int64_t>{0, 1, 2});
  // a volume whose file is gone is not finished: sampled again
  fs::remove(job / "synth_000002.nii.gz");
  REQUIRE(sample(job, {"-n", "3"}) == 0);
  CHECK(fs::exists(job / "synth_000002.nii.gz"));
  CHECK(manifest_indices(job) == std::vector<int64_t>{0, 1, 2});
}

TEST_CASE("sampling jobs: a second identical job is refused while the first runs") {
  test::ScratchDir dir("sample-lock");
  auto job = dir / "job";
  fs::create_directories(job);
  {
    auto held = FileLock::acquire(job / ".meddiff-shard-1-of-2.lock", "sample --shard 1/2", "test");
    test::check_error([&] { sample(job, {"-n", "2", "--shard", "1/2"}); }, {job.string(), "in use", "shard 1/2"});
    REQUIRE(sample(job, {"-n", "2", "--shard", "2/2"}) == 0);  // another shard is fine
  }
  REQUIRE(sample(job, {"-n", "2", "--shard", "1/2"}) == 0);
  CHECK(manifest_indices(job) == std::vector<int64_t>{0, 1});
}

TEST_CASE("sampling jobs: names and ranges are checked") {
  test::ScratchDir dir("sample-args");
  for (const char* name : {"../../x", "a/b", ".hidden", "", "x.y"})
    CHECK_THROWS_AS(sample(dir / "nn", {"--layout", "nnunet", "--name", name}), UsageError);
  CHECK_THROWS_WITH_AS(sample(dir / "a", {"-n", "1000000000000"}), doctest::Contains("-n"), UsageError);
  CHECK_THROWS_WITH_AS(sample(dir / "a", {"-n", "0"}), doctest::Contains("-n"), UsageError);
  CHECK_THROWS_WITH_AS(sample(dir / "a", {"--shard", "1/2/3"}), doctest::Contains("--shard"), UsageError);
  CHECK_THROWS_WITH_AS(sample(dir / "a", {"--shard", "x/2"}), doctest::Contains("--shard"), UsageError);
  CHECK_THROWS_WITH_AS(sample(dir / "a", {"--steps", "0"}), doctest::Contains("steps"), UsageError);
  CHECK_THROWS_WITH_AS(sample(dir / "a", {"--steps", "100000"}), doctest::Contains("steps"), UsageError);
  CHECK_THROWS_WITH_AS(sample(dir / "a", {"--precision", "fp16"}), doctest::Contains("--precision"), UsageError);
  CHECK_THROWS_WITH_AS(sample(dir / "a", {"--precision", "bf16", "--device", "cpu"}), doctest::Contains("CUDA"), UsageError);
  CHECK_FALSE(fs::exists(dir / "a"));
  CHECK_FALSE(fs::exists(dir / "nn"));
  CHECK_FALSE(fs::exists(dir.path().parent_path().parent_path() / "x"));
  // --dry-run reports and writes nothing
  CHECK(sample(dir / "dry", {"-n", "3", "--dry-run"}) == 0);
  CHECK_FALSE(fs::exists(dir / "dry"));
}

TEST_CASE("training: --resume refuses another autoencoder or other data, a second trainer, and keeps metrics honest") {
  auto d = trained();
  test::ScratchDir dir("train-resume");
  auto common = test::tiny_model_args(d / "data/manifest.json");
  auto with = [&](std::vector<std::string> extra) {
    auto a = common;
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  };
  // Another VQ-GAN (another seed), then an LDM on the first one.
  REQUIRE(cli::run_train_vqgan(with({"--set", "vqgan_train.steps=2", "--set", "vqgan_train.seed=5", "--out", (dir / "vq2").string()})) == 0);
  auto ldm = dir / "ldm";
  REQUIRE(cli::run_train_ldm(with({"--set", "ldm_train.steps=2", "--set", "ldm_train.ckpt_every=1", "--set", "ldm_train.log_every=1",
                                   "--vqgan", (d / "vqgan/last.pt").string(), "--out", ldm.string()})) == 0);
  auto sha1 = sha256_file(d / "vqgan/last.pt"), sha2 = sha256_file(dir / "vq2/last.pt");
  test::check_error([&] {
    cli::run_train_ldm(with({"--set", "ldm_train.steps=4", "--vqgan", (dir / "vq2/last.pt").string(), "--out", ldm.string(), "--resume"}));
  }, {"another autoencoder", sha1.substr(0, 16), sha2.substr(0, 16)});
  // other data: the same files with other classes
  auto m = load_manifest((d / "data/manifest.json").string());
  for (auto& e : m.entries) e.class_label = 1 - e.class_label;
  save_manifest_json(m, dir / "swapped.json");
  test::check_error([&] {
    cli::run_train_ldm(with({"--set", "ldm_train.steps=4", "--set", "data.manifest=" + (dir / "swapped.json").string(),
                             "--vqgan", (d / "vqgan/last.pt").string(), "--out", ldm.string(), "--resume"}));
  }, {"other data", "class"});
  // a second trainer in the same folder
  {
    auto held = FileLock::acquire(ldm / ".meddiff.lock", "train-ldm", "test");
    test::check_error([&] {
      cli::run_train_ldm(with({"--set", "ldm_train.steps=4", "--vqgan", (d / "vqgan/last.pt").string(), "--out", ldm.string(), "--resume"}));
    }, {ldm.string(), "in use"});
  }
  // resume from step 1 after a run that reached step 2: metrics keep steps 1..4 once each, and a
  // temporary a killed save left behind is gone
  fs::copy_file(ldm / "step-0000001.pt", ldm / "last.pt", fs::copy_options::overwrite_existing);
  test::leave_stale_temp(ldm / "last.pt");
  REQUIRE(cli::run_train_ldm(with({"--set", "ldm_train.steps=4", "--set", "ldm_train.log_every=1", "--vqgan",
                                   (d / "vqgan/last.pt").string(), "--out", ldm.string(), "--resume"})) == 0);
  std::vector<int64_t> steps;
  std::istringstream in(read_text(ldm / "metrics.jsonl"));
  std::string line;
  while (std::getline(in, line)) steps.push_back(nlohmann::json::parse(line)["step"].get<int64_t>());
  CHECK(steps == std::vector<int64_t>{1, 2, 3, 4});
  for (const auto& e : fs::directory_iterator(ldm)) CHECK_FALSE(is_temp_name(e.path().filename().string()));
  // a folder of someone else's files is not a training folder
  write_text_atomically(dir / "notes/thesis.tex", "x");
  test::check_error([&] { cli::run_train_ldm(with({"--vqgan", (d / "vqgan/last.pt").string(), "--out", (dir / "notes").string()})); },
                    {"thesis.tex", "did not write"});
}

TEST_CASE("training: a new run never replaces an earlier one without --force, and --resume takes the newest complete checkpoint") {
  auto d = trained();
  test::ScratchDir dir("train-takeover");
  auto args = [&](const fs::path& out, std::vector<std::string> extra) {
    auto a = test::tiny_model_args(d / "data/manifest.json");
    a.insert(a.end(), {"--set", "ldm_train.ckpt_every=2", "--vqgan", (d / "vqgan/last.pt").string(), "--out", out.string()});
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  };
  // an uninterrupted 4-step run, and a run killed while writing its first last.pt (step 2): config.json,
  // latents.pt, metrics.jsonl and step-0000002.pt, no last.pt
  REQUIRE(cli::run_train_ldm(args(dir / "full", {"--set", "ldm_train.steps=4"})) == 0);
  auto run = dir / "killed";
  REQUIRE(cli::run_train_ldm(args(run, {"--set", "ldm_train.steps=2"})) == 0);
  fs::remove(run / "last.pt");
  const auto step2 = sha256_file(run / "step-0000002.pt"), config = sha256_file(run / "config.json");
  // a new run into it is refused, naming what is there; nothing is touched
  test::check_error([&] { cli::run_train_ldm(args(run, {"--set", "ldm_train.steps=4", "--set", "ldm_train.lr=0.01"})); },
                    {run.string(), "step-0000002.pt", "--resume", "--force"});
  CHECK(sha256_file(run / "step-0000002.pt") == step2);
  CHECK(sha256_file(run / "config.json") == config);
  CHECK_THROWS_WITH_AS(cli::run_train_ldm(args(run, {"--resume", "--force"})), doctest::Contains("give one"), UsageError);
  // --resume continues from step-0000002.pt and ends equal to the uninterrupted run
  REQUIRE(cli::run_train_ldm(args(run, {"--set", "ldm_train.steps=4", "--resume"})) == 0);
  auto a = load_checkpoint(dir / "full/last.pt"), b = load_checkpoint(run / "last.pt");
  CHECK(b.step == 4);
  int64_t differing = 0;
  for (const auto& [k, t] : a.tensors)
    if (k.rfind("optim.", 0) != 0 && !torch::equal(t, b.tensor(k))) ++differing;
  CHECK(differing == 0);
  // --force starts again: the earlier checkpoints are gone, the new run's are there
  REQUIRE(cli::run_train_ldm(args(run, {"--set", "ldm_train.steps=1", "--force"})) == 0);
  CHECK_FALSE(fs::exists(run / "step-0000004.pt"));
  CHECK(load_checkpoint(run / "last.pt").step == 1);
  // an empty folder (or one with only a lock left behind) has nothing to resume
  fs::create_directories(dir / "empty");
  test::check_error([&] { cli::run_train_ldm(args(dir / "empty", {"--resume"})); }, {"nothing to resume"});
}

TEST_CASE("latent cache: rebuilt when the cases or their classes change") {
  auto d = trained();
  test::ScratchDir dir("latent-cache");
  fs::create_directories(dir / "ldm");
  fs::copy_file(d / "ldm/latents.pt", dir / "ldm/latents.pt");  // a run that stopped before its first checkpoint
  auto m = load_manifest((d / "data/manifest.json").string());
  for (auto& e : m.entries) e.class_label = 0;
  save_manifest_json(m, dir / "one_class.json");
  auto a = test::tiny_model_args(dir / "one_class.json");
  a.insert(a.end(), {"--set", "ldm_train.steps=1", "--vqgan", (d / "vqgan/last.pt").string(), "--out", (dir / "ldm").string()});
  auto before = load_checkpoint(d / "ldm/latents.pt").tensor("classes");
  CHECK(before.max().item<int64_t>() == 1);
  std::string err = stderr_of(dir / "err.txt", [&] { REQUIRE(cli::run_train_ldm(a) == 0); });
  CHECK(err.find("latents.pt is stale") != std::string::npos);
  CHECK(load_checkpoint(dir / "ldm/latents.pt").tensor("classes").max().item<int64_t>() == 0);
}

TEST_CASE("reconstruct: never replaces a folder of the user's files or its input and needs --force for an existing file") {
  auto d = trained();
  test::ScratchDir dir("reconstruct-safety");
  const std::string vq = (d / "vqgan/last.pt").string();
  fs::copy_file(load_manifest((d / "data/manifest.json").string()).entries.front().image, dir / "scan.nii.gz");
  const std::string in = (dir / "scan.nii.gz").string();
  const auto before = read_text(dir / "scan.nii.gz");
  // r/ holds the user's files: an output without an image extension is a DICOM folder, never replaced
  fs::create_directories(dir / "r");
  write_text_atomically(dir / "r/thesis.tex", "years of work");
  for (bool force : {false, true}) {
    std::vector<std::string> a{"--vqgan", vq, in, (dir / "r").string()};
    if (force) a.push_back("--force");
    CHECK_THROWS_WITH(cli::run_reconstruct(a), doctest::Contains("thesis.tex"));
  }
  CHECK(read_text(dir / "r/thesis.tex") == "years of work");
  // OUT == IN, also with --force
  CHECK_THROWS_WITH(cli::run_reconstruct({"--vqgan", vq, in, in, "--force"}), doctest::Contains("the same as the input"));
  CHECK(read_text(dir / "scan.nii.gz") == before);
  // an existing file needs --force; a DICOM input series is never the output
  write_text_atomically(dir / "out.nii.gz", "precious");
  CHECK_THROWS_WITH(cli::run_reconstruct({"--vqgan", vq, in, (dir / "out.nii.gz").string()}), doctest::Contains("--force"));
  CHECK(read_text(dir / "out.nii.gz") == "precious");
  CHECK(cli::run_reconstruct({"--vqgan", vq, in, (dir / "series").string()}) == 0);
  CHECK_THROWS(cli::run_reconstruct({"--vqgan", vq, (dir / "series").string(), (dir / "series").string(), "--force"}));
  CHECK(io::read_volume(dir / "series").image.sizes() == io::read_volume(dir / "scan.nii.gz").image.sizes());
  CHECK(cli::run_reconstruct({"--vqgan", vq, in, (dir / "out.nii.gz").string(), "--force"}) == 0);
  CHECK(io::read_volume(dir / "out.nii.gz").geometry.spacing == io::read_volume(dir / "scan.nii.gz").geometry.spacing);
}
