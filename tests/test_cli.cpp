#include <doctest/doctest.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "core/error.h"
#include "core/fs.h"
#include "data/manifest.h"
#include "io/png.h"
#include "io/volume_reader.h"
#include "test_support.h"

using namespace meddiff;

namespace {
int call(const std::vector<std::string>& argv) {
  static const std::vector<cli::Command> table = {{"convert", "", cli::run_convert}, {"info", "", cli::run_info}};
  std::vector<const char*> a{"meddiff"};
  for (const auto& s : argv) a.push_back(s.c_str());
  return cli::dispatch(table, static_cast<int>(a.size()), a.data());
}
}  // namespace

TEST_CASE("dispatch: exit codes for help / version / unknown commands / usage and input errors") {
  CHECK(call({"--help"}) == 0);
  CHECK(call({"--version"}) == 0);
  CHECK(call({}) == 2);
  CHECK(call({"frobnicate"}) == 2);
  CHECK(call({"convert", "--help"}) == 0);
  CHECK(call({"convert"}) == 2);                      // missing IN
  CHECK(call({"convert", "--no-such-flag"}) == 2);
  CHECK(call({"info", "/no/such/file.nii.gz"}) == 1);
}

TEST_CASE("argument lists are parsed and checked") {
  CHECK((cli::parse_int3("32,64,16", "--shape") == std::array<int64_t, 3>{32, 64, 16}));
  CHECK_THROWS_WITH_AS(cli::parse_int3("32,64", "--shape"), doctest::Contains("--shape"), UsageError);
  CHECK_THROWS_WITH_AS(cli::parse_double3("1,x,2", "--spacing"), doctest::Contains("'x' is not a number"), UsageError);
}

TEST_CASE("phantoms command writes images / labels and a manifest with both classes") {
  test::ScratchDir dir("phantoms");
  CHECK(cli::run_phantoms({"--modality", "ct", "--count", "3", "--shape", "24,20,16", "--spacing", "1,1,2", "--seed", "5",
                           "--out", (dir / "ds").string()}) == 0);
  auto m = load_manifest((dir / "ds/manifest.json").string());
  REQUIRE(m.entries.size() == 3);
  CHECK(m.entries[1].class_label == 1);
  auto v = io::read_volume(m.entries[0].image);
  CHECK((v.image.sizes() == torch::IntArrayRef({16, 20, 24})));
  CHECK(v.geometry.spacing[2] == 2.0);
  CHECK(v.modality == Modality::CT);
  CHECK_THROWS_AS(cli::run_phantoms({"--modality", "pet", "--out", (dir / "x").string()}), Error);
}

TEST_CASE("convert refuses bad input and leaves no output") {
  test::ScratchDir dir("convert");
  CHECK_THROWS_AS(cli::run_convert({test::fixture("nan_voxel.nii.gz").string(), (dir / "out.nii.gz").string()}), Error);
  CHECK_THROWS_AS(cli::run_convert({test::fixture("four_d.nii.gz").string(), (dir / "series/").string()}), Error);
  CHECK(fs::is_empty(dir.path()));
  CHECK(cli::run_convert({test::fixture("ct_oblique.nii.gz").string(), (dir / "out.nrrd").string()}) == 0);
  CHECK(fs::exists(dir / "out.nrrd"));
}

TEST_CASE("preview writes three views") {
  test::ScratchDir dir("preview");
  CHECK(cli::run_preview({test::fixture("ct_oblique.nii.gz").string(), "-o", (dir / "p.png").string(), "--window", "-1000,1000"}) == 0);
  auto png = io::read_png(dir / "p.png");
  // axial 9x10 mm-pixels at 0.8 mm: rows 10*0.9/0.8 = 11, cols 12; coronal rows 8*2.5/0.8 = 25
  CHECK(png.size(0) == 25);
  CHECK(png.max().item<int>() > 0);
  CHECK_THROWS_AS(cli::run_preview({test::fixture("ct_oblique.nii.gz").string(), "-o", (dir / "q.png").string(), "--window", "5,1"}), UsageError);
}

TEST_CASE("--threads sets the CPU threads of every command and is range-checked") {
  CHECK(call({"info", test::fixture("ct_oblique.nii.gz").string(), "--threads", "1"}) == 0);
  CHECK(at::get_num_threads() == 1);
  CHECK(call({"info", test::fixture("ct_oblique.nii.gz").string(), "--threads", "2"}) == 0);
  CHECK(at::get_num_threads() == 2);
  CHECK(call({"info", test::fixture("ct_oblique.nii.gz").string(), "--threads", "0"}) == 2);
}
