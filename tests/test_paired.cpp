// End-to-end paired sampling on a tiny label-conditioned model (CT phantoms 16^3): nnU-Net datasets
// from several shards, label files on the image's grid, the user's own label maps, label edits and
// the per-pair check in the manifest.
#include <doctest/doctest.h>

#include "cli/commands.h"
#include "core/checkpoint.h"
#include "core/error.h"
#include "core/fs.h"
#include "io/volume_reader.h"
#include "test_support.h"
#include "tiny_models.h"

#include <nlohmann/json.hpp>

#include <fstream>

using namespace meddiff;

namespace {

// Trains once per test binary run: folder with data/ (6 labelled CT phantoms), vqgan/, ldm/.
const fs::path& trained_labelled() {
  static test::ScratchDir* dir = nullptr;
  if (!dir) {
    dir = new test::ScratchDir("paired-models");
    test::train_tiny_models(dir->path(), 6,
                            {"--set", "sample.steps=4", "--set", "data.labels=\"condition\"", "--set", "ldm_train.augment_copies=2", "--set",
                             R"(data.label_names=["air","soft_tissue","lung","bone","nodule"])"});
  }
  return dir->path();
}

int sample(const fs::path& out, std::vector<std::string> extra) {
  std::vector<std::string> args = {"--ldm", (trained_labelled() / "ldm/last.pt").string(), "--out", out.string(), "--qc-retries", "1"};
  args.insert(args.end(), extra.begin(), extra.end());
  return cli::run_sample(args);
}

std::vector<nlohmann::json> manifest_lines(const fs::path& p) {
  std::vector<nlohmann::json> out;
  std::ifstream in(p);
  std::string line;
  while (std::getline(in, line)) out.push_back(nlohmann::json::parse(line));
  return out;
}

size_t count_files(const fs::path& dir) {
  size_t n = 0;
  for (const auto& e : fs::directory_iterator(dir)) n += e.is_regular_file() && e.path().filename().string()[0] != '.' ? 1 : 0;
  return n;
}

std::set<int64_t> values(const torch::Tensor& t) {
  auto u = std::get<0>(torch::_unique(t.flatten()));
  std::set<int64_t> out;
  for (int64_t i = 0; i < u.numel(); ++i) out.insert(static_cast<int64_t>(u[i].item<double>()));
  return out;
}

}  // namespace

TEST_CASE("paired sampling: two nnU-Net shards make one dataset with labelsTr and the real label names") {
  test::ScratchDir dir("paired-nnunet");
  auto out = dir / "Dataset901_Synth";
  REQUIRE(sample(out, {"-n", "5", "--layout", "nnunet", "--name", "Synth", "--shard", "1/2"}) == 0);
  auto ds = nlohmann::json::parse(read_text(out / "dataset.json"));
  CHECK(ds["numTraining"] == 3);  // what exists so far
  REQUIRE(sample(out, {"-n", "5", "--layout", "nnunet", "--name", "Synth", "--shard", "2/2"}) == 0);
  ds = nlohmann::json::parse(read_text(out / "dataset.json"));
  CHECK(ds["numTraining"] == 5);
  CHECK(count_files(out / "imagesTr") == 5);
  CHECK(count_files(out / "labelsTr") == 5);
  CHECK(ds["labels"] == nlohmann::json{{"background", 0}, {"soft_tissue", 1}, {"lung", 2}, {"bone", 3}, {"nodule", 4}});
  CHECK(ds["channel_names"]["0"] == "CT");
  for (int i = 0; i < 5; ++i) {
    auto image = io::read_volume(out / "imagesTr" / fmt::format("Synth_{:04d}_0000.nii.gz", i));
    auto label = io::read_volume(out / "labelsTr" / fmt::format("Synth_{:04d}.nii.gz", i));
    CHECK((image.image.sizes() == label.image.sizes()));
    CHECK(image.geometry.spacing == label.geometry.spacing);
    CHECK(image.geometry.origin == label.geometry.origin);
    for (auto v : values(label.image)) CHECK((v >= 0 && v <= 4));
  }
  auto lines = manifest_lines(out / "manifest.jsonl");
  REQUIRE(lines.size() == 5);
  for (const auto& l : lines) {
    CHECK(l.contains("qc"));
    CHECK(l["qc"]["attempts"].get<int64_t>() >= 1);
    CHECK(l["label_map"]["augmented"] == true);
    CHECK(l["files"].size() == 2);
  }
  // it learned them: 6 cases and 2 warped copies of each, encoded once
  auto ckpt = load_checkpoint(trained_labelled() / "ldm/last.pt");
  CHECK(ckpt.extra["labels"]["augment_copies"] == 2);
  CHECK(load_checkpoint(trained_labelled() / "ldm/latents.pt").tensor("latents").size(0) == 18);
  // --finalize rebuilds the same dataset.json
  fs::remove(out / "dataset.json");
  REQUIRE(cli::run_sample({"--finalize", "--layout", "nnunet", "--name", "Synth", "--out", out.string()}) == 0);
  CHECK(nlohmann::json::parse(read_text(out / "dataset.json")) == ds);
}

TEST_CASE("paired sampling: the user's label maps keep their grid and edits apply to every map") {
  auto d = trained_labelled();
  test::ScratchDir dir("paired-user");
  // label maps of phantoms the model never saw (another seed), as a folder of label files
  REQUIRE(cli::run_phantoms({"--modality", "ct", "--count", "2", "--shape", "16,16,16", "--spacing", "1.5,1.5,2", "--seed", "9",
                             "--out", (dir / "heldout").string()}) == 0);
  REQUIRE(sample(dir / "user", {"-n", "2", "--labels", (dir / "heldout/labels").string(), "--format", "nifti,png"}) == 0);
  for (int i = 0; i < 2; ++i) {
    auto given = io::read_volume(dir / "heldout/labels" / fmt::format("case_{:04d}.nii.gz", i));
    auto written = io::read_volume(dir / "user" / fmt::format("synth_{:06d}_label.nii.gz", i));
    auto image = io::read_volume(dir / "user" / fmt::format("synth_{:06d}.nii.gz", i));
    CHECK(torch::equal(written.image, given.image));  // same shape as training: not augmented, not moved
    CHECK(written.geometry.origin == given.geometry.origin);
    CHECK(image.geometry.origin == given.geometry.origin);
  }
  // a manifest's classes choose the pairs' classes
  auto lines = manifest_lines(dir / "user/manifest.jsonl");
  CHECK(lines[0]["label_map"]["augmented"] == false);
  REQUIRE(sample(dir / "classes", {"-n", "2", "--labels", (dir / "heldout/manifest.json").string()}) == 0);
  lines = manifest_lines(dir / "classes/manifest.jsonl");
  CHECK(lines[0]["class"] == 0);
  CHECK(lines[1]["class"] == 1);
  // other label settings are another job
  CHECK_THROWS_WITH_AS(sample(dir / "user", {"-n", "2", "--labels", (dir / "heldout/labels").string(), "--augment-labels", "on",
                                             "--format", "nifti,png"}),
                       doctest::Contains("labels"), Error);
  // --remove-label 4: no nodule in any map, and a DICOM segmentation series is written
  REQUIRE(sample(dir / "edits", {"-n", "3", "--remove-label", "4", "--format", "nifti,dicom"}) == 0);
  for (int i = 0; i < 3; ++i) {
    auto label = io::read_volume(dir / "edits" / fmt::format("synth_{:06d}_label.nii.gz", i));
    CHECK(values(label.image).count(4) == 0);
    auto seg = io::read_volume(dir / "edits" / fmt::format("synth_{:06d}_label_dicom", i));
    CHECK(torch::equal(seg.image, label.image));
  }
  CHECK_THROWS_AS(sample(dir / "bad", {"--remove-label", "7"}), UsageError);
  CHECK_THROWS_AS(sample(dir / "bad", {"--scale-label", "4"}), UsageError);
  CHECK_THROWS_AS(sample(dir / "bad", {"--augment-labels", "maybe"}), UsageError);
  CHECK_FALSE(fs::exists(dir / "bad"));
  // a model without labels refuses label options
  test::ScratchDir plain("paired-plain");
  auto common = test::tiny_model_args(d / "data/manifest.json");
  common.insert(common.end(), {"--set", "ldm_train.steps=1", "--vqgan", (d / "vqgan/last.pt").string(), "--out", (plain / "ldm").string()});
  REQUIRE(cli::run_train_ldm(common) == 0);
  CHECK_THROWS_WITH_AS(cli::run_sample({"--ldm", (plain / "ldm/last.pt").string(), "--labels", (dir / "heldout/labels").string(),
                                        "--out", (plain / "s").string()}),
                       doctest::Contains("not conditioned on label maps"), UsageError);
}

TEST_CASE("paired training: a label-conditioned LDM run resumes (its mask bank belongs to the run) - subvoxel condition") {
  const auto& d = trained_labelled();
  test::ScratchDir dir("paired-resume");
  auto args = test::tiny_model_args(d / "data/manifest.json");
  // the subvoxel condition here (the other tests: fractions, the default) through training, resume and sampling
  args.insert(args.end(), {"--set", "data.labels=\"condition\"", "--set", R"(data.label_names=["air","soft_tissue","lung","bone","nodule"])",
                           "--set", "ldm.label_condition=\"subvoxel\"",
                           "--vqgan", (d / "vqgan/last.pt").string(), "--out", (dir / "ldm").string()});
  auto with_steps = [&](int steps, bool resume) {
    auto a = args;
    a.insert(a.end(), {"--set", fmt::format("ldm_train.steps={}", steps)});
    if (resume) a.push_back("--resume");
    return cli::run_train_ldm(a);
  };
  REQUIRE(with_steps(2, false) == 0);
  REQUIRE(fs::exists(dir / "ldm/mask_bank.pt"));
  REQUIRE(with_steps(3, true) == 0);
  CHECK(load_checkpoint(dir / "ldm/last.pt").step == 3);
  CHECK(load_checkpoint(dir / "ldm/last.pt").extra["labels"]["augment_copies"] == 0);
  CHECK(load_checkpoint(dir / "ldm/last.pt").config["ldm"]["label_condition"] == "subvoxel");
  // the mask bank's maps are augmented by default (a model without copies says it follows them less well);
  // --augment-labels off writes them as they are
  REQUIRE(cli::run_sample({"--ldm", (dir / "ldm/last.pt").string(), "-n", "1", "--qc-retries", "0", "--out", (dir / "s_aug").string()}) == 0);
  CHECK(manifest_lines(dir / "s_aug/manifest.jsonl")[0]["label_map"]["augmented"] == true);
  REQUIRE(cli::run_sample({"--ldm", (dir / "ldm/last.pt").string(), "-n", "2", "--qc-retries", "0", "--augment-labels", "off", "--out",
                           (dir / "s").string()}) == 0);
  auto bank = load_checkpoint(dir / "ldm/mask_bank.pt").tensor("labels").to(torch::kLong);
  for (const auto& l : manifest_lines(dir / "s/manifest.jsonl")) {
    CHECK(l["label_map"]["augmented"] == false);
    const std::string map = l["label_map"]["map"];
    auto written = io::read_volume(dir / "s" / l["files"][1].get<std::string>()).image.to(torch::kLong);
    CHECK(torch::equal(written, bank[std::stoll(map.substr(5))]));  // "bank:K"
  }
}

TEST_CASE("paired sampling: a label-only manifest, a manifest class the model lacks, and --finalize of a killed nnU-Net job") {
  auto d = trained_labelled();
  test::ScratchDir dir("paired-manifests");
  REQUIRE(cli::run_phantoms({"--modality", "ct", "--count", "2", "--shape", "16,16,16", "--spacing", "1.5,1.5,2", "--seed", "9",
                             "--out", (dir / "maps").string()}) == 0);
  // a manifest with only label and class columns, its paths relative to its own folder (not the current one)
  write_text_atomically(dir / "maps/labels.csv", "label,class\nlabels/case_0000.nii.gz,1\nlabels/case_0001.nii.gz,0\n");
  REQUIRE(sample(dir / "label_only", {"-n", "2", "--labels", (dir / "maps/labels.csv").string()}) == 0);
  auto lines = manifest_lines(dir / "label_only/manifest.jsonl");
  REQUIRE(lines.size() == 2);
  CHECK(lines[0]["class"] == 1);
  CHECK(lines[1]["class"] == 0);
  CHECK(lines[0]["label_map"]["map"] == "case_0000.nii.gz");
  // class 7 on a 2-class model is refused naming the map (it used to become class 0 without a word); --class overrides
  write_text_atomically(dir / "maps/bad_class.csv", "label,class\nlabels/case_0000.nii.gz,7\n");
  test::check_error([&] { sample(dir / "bad_class", {"-n", "1", "--labels", (dir / "maps/bad_class.csv").string()}); },
                    {"case_0000.nii.gz", "class 7", "0..1"});
  CHECK_FALSE(fs::exists(dir / "bad_class"));
  REQUIRE(sample(dir / "forced_class", {"-n", "1", "--class", "1", "--labels", (dir / "maps/bad_class.csv").string()}) == 0);
  CHECK(manifest_lines(dir / "forced_class/manifest.jsonl")[0]["class"] == 1);
  // an nnU-Net job killed after writing an image but before its label map and sidecar, with a temporary in labelsTr
  auto nn = dir / "Dataset900_Synth";
  REQUIRE(sample(nn, {"-n", "2", "--layout", "nnunet", "--name", "Synth"}) == 0);
  fs::remove(nn / "meddiff/Synth_0001.json");
  fs::remove(nn / "labelsTr/Synth_0001.nii.gz");
  test::leave_stale_temp(nn / "labelsTr/Synth_0001.nii.gz");
  // --finalize as the README shows it: no --layout or --name (job.json records them); other ones are refused
  CHECK_THROWS_WITH_AS(cli::run_sample({"--out", nn.string(), "--finalize", "--layout", "flat"}), doctest::Contains("nnunet"), UsageError);
  REQUIRE(cli::run_sample({"--out", nn.string(), "--finalize"}) == 0);
  CHECK(fs::exists(nn / "imagesTr/Synth_0000_0000.nii.gz"));
  CHECK_FALSE(fs::exists(nn / "imagesTr/Synth_0001_0000.nii.gz"));  // the orphan image is gone
  for (const auto& e : fs::directory_iterator(nn / "labelsTr")) CHECK_FALSE(is_temp_name(e.path().filename().string()));
  auto ds = nlohmann::json::parse(read_text(nn / "dataset.json"));
  CHECK(ds["numTraining"] == 1);
  CHECK(count_files(nn / "imagesTr") == 1);
  CHECK(count_files(nn / "labelsTr") == 1);
  // the job resumes: the removed volume is sampled again
  REQUIRE(sample(nn, {"-n", "2", "--layout", "nnunet", "--name", "Synth"}) == 0);
  CHECK(nlohmann::json::parse(read_text(nn / "dataset.json"))["numTraining"] == 2);
}
