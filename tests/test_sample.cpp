// End-to-end on tiny models: train a VQ-GAN and a conditional LDM for a few steps on phantoms, then
// check the sampling job's guarantees (batch and shard invariance, resume, layouts, provenance).
#include <doctest/doctest.h>

#include "cli/commands.h"
#include "core/checkpoint.h"
#include "core/fs.h"
#include "data/phantom.h"
#include "io/volume_reader.h"
#include "io/volume_writer.h"
#include "data/manifest.h"
#include "test_support.h"

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>

using namespace meddiff;

namespace {

// Trains once per test binary run: folder with data/, vqgan/last.pt, ldm/last.pt.
const fs::path& trained() {
  static test::ScratchDir* dir = nullptr;
  if (!dir) {
    dir = new test::ScratchDir("sample-models");
    auto d = dir->path();
    REQUIRE(cli::run_phantoms({"--modality", "ct", "--count", "4", "--shape", "16,16,16", "--spacing", "2,1.5,1.5",
                               "--out", (d / "data").string()}) == 0);
    std::vector<std::string> common = {"--set", "data.manifest=" + (d / "data/manifest.json").string(),
                                       "--set", "data.modality=\"ct\"", "--set", "data.shape=[16,16,16]",
                                       "--set", "vqgan.n_hiddens=4", "--set", "vqgan.downsample=[2,2,2]",
                                       "--set", "vqgan.n_codes=32", "--set", "vqgan.disc_channels=4",
                                       "--set", "vqgan.disc_layers=2", "--set", "vqgan_train.steps=2",
                                       "--set", "vqgan_train.device=\"cpu\"", "--set", "ldm_train.device=\"cpu\"",
                                       "--set", "ldm.timesteps=50", "--set", "ldm.unet.base_channels=8",
                                       "--set", "ldm.unet.channel_mults=[1,2]", "--set", "ldm.unet.downsample=[[2,2,2]]",
                                       "--set", "ldm.unet.attention_levels=[1]", "--set", "ldm.unet.attention_heads=2",
                                       "--set", "ldm_train.steps=3", "--set", "ldm_train.batch_size=2", "--set", "sample.steps=5"};
    auto vq = common;
    vq.insert(vq.end(), {"--out", (d / "vqgan").string()});
    REQUIRE(cli::run_train_vqgan(vq) == 0);
    auto ldm = common;
    ldm.insert(ldm.end(), {"--vqgan", (d / "vqgan/last.pt").string(), "--out", (d / "ldm").string()});
    REQUIRE(cli::run_train_ldm(ldm) == 0);
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
  CHECK(count_lines(dir / "all/manifest.jsonl") == 6);
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
