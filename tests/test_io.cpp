#include <doctest/doctest.h>

#include "core/error.h"
#include "core/fs.h"
#include "data/phantom.h"
#include "io/dataset_index.h"
#include "io/dicom_series.h"
#include "io/payload_scan.h"
#include "io/png.h"
#include "io/volume_reader.h"
#include "io/volume_writer.h"
#include "test_dicom.h"
#include "test_support.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <set>

using namespace meddiff;
using test::fixture;

namespace {

nlohmann::json expected(const std::string& name) { return nlohmann::json::parse(read_text(fixture(name))); }

// Geometry and sample voxels against values computed by nibabel / pydicom (scripts/make_fixtures.py).
void check_expected(const Volume& v, const nlohmann::json& e) {
  auto shape = e["shape_xyz"];
  CHECK(v.width() == shape[0].get<int64_t>());
  CHECK(v.height() == shape[1].get<int64_t>());
  CHECK(v.depth() == shape[2].get<int64_t>());
  auto a = v.image.accessor<float, 3>();
  for (const auto& s : e["samples"]) {
    auto idx = s["index_xyz"];
    int64_t i = idx[0], j = idx[1], k = idx[2];
    auto w = v.geometry.index_to_world(double(i), double(j), double(k));
    for (int c = 0; c < 3; ++c) CHECK(w[static_cast<size_t>(c)] == doctest::Approx(s["world_lps"][c].get<double>()).epsilon(1e-6).scale(100));
    CHECK(a[k][j][i] == s["value"].get<float>());
  }
}

// Every voxel of `b` lies at a voxel centre of `a` (to 1e-3 voxel) and holds the same value.
void check_same_by_world(const Volume& a, const Volume& b) {
  REQUIRE(a.image.numel() == b.image.numel());
  auto av = a.image.accessor<float, 3>(), bv = b.image.accessor<float, 3>();
  int64_t mismatches = 0, off_grid = 0;
  for (int64_t k = 0; k < b.depth(); ++k)
    for (int64_t j = 0; j < b.height(); ++j)
      for (int64_t i = 0; i < b.width(); ++i) {
        auto idx = a.geometry.world_to_index(b.geometry.index_to_world(double(i), double(j), double(k)));
        std::array<int64_t, 3> r{std::llround(idx[0]), std::llround(idx[1]), std::llround(idx[2])};
        for (int c = 0; c < 3; ++c)
          if (std::abs(idx[static_cast<size_t>(c)] - double(r[static_cast<size_t>(c)])) > 1e-3) ++off_grid;
        if (r[0] < 0 || r[1] < 0 || r[2] < 0 || r[0] >= a.width() || r[1] >= a.height() || r[2] >= a.depth()) {
          ++mismatches;
          continue;
        }
        if (av[r[2]][r[1]][r[0]] != bv[k][j][i]) ++mismatches;
      }
  CHECK(off_grid == 0);
  CHECK(mismatches == 0);
}

std::vector<fs::path> dicom_files(const fs::path& dir) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

// No file or folder in `dir` besides `allowed`.
void check_only(const fs::path& dir, std::set<std::string> allowed) {
  for (const auto& e : fs::directory_iterator(dir)) CHECK_MESSAGE(allowed.count(e.path().filename().string()), e.path());
}

}  // namespace

TEST_CASE("NIfTI written by nibabel: LPS geometry (oblique / anisotropic) and exact HU") {
  auto v = io::read_volume(fixture("ct_oblique.nii.gz"));
  CHECK(v.modality == Modality::CT);
  check_expected(v, expected("ct_oblique.expected.json"));
}

TEST_CASE("DICOM written by pydicom: shuffled files sorted by position / rescale applied") {
  auto v = io::read_volume(fixture("ct_oblique_dicom"));
  CHECK(v.modality == Modality::CT);
  check_expected(v, expected("ct_oblique_dicom.expected.json"));
}

TEST_CASE("round trip NIfTI -> DICOM -> NIfTI keeps every voxel's world position and HU") {
  test::ScratchDir dir("rt1");
  auto src = io::read_volume(fixture("ct_oblique.nii.gz"));
  io::write_volume(src, dir / "dcm/");
  auto dcm = io::read_volume(dir / "dcm");
  check_same_by_world(src, dcm);
  io::write_volume(dcm, dir / "back.nii.gz");
  auto back = io::read_volume(dir / "back.nii.gz");
  check_same_by_world(src, back);
  check_expected(back, expected("ct_oblique.expected.json"));
}

TEST_CASE("round trip DICOM -> NIfTI -> DICOM keeps every voxel's world position and HU") {
  test::ScratchDir dir("rt2");
  auto src = io::read_volume(fixture("ct_oblique_dicom"));
  io::write_volume(src, dir / "a.nii.gz");
  auto nii = io::read_volume(dir / "a.nii.gz");
  check_same_by_world(src, nii);
  io::write_volume(nii, dir / "dcm");
  auto back = io::read_volume(dir / "dcm");
  check_same_by_world(src, back);
  check_expected(back, expected("ct_oblique_dicom.expected.json"));
}

TEST_CASE("NRRD and MetaImage round trips and a left-handed volume through DICOM") {
  test::ScratchDir dir("rt3");
  auto src = io::read_volume(fixture("ct_oblique.nii.gz"));
  for (const char* name : {"a.nrrd", "a.mha", "a.mhd"}) {
    io::write_volume(src, dir / name);
    check_same_by_world(src, io::read_volume(dir / name));
  }
  Volume flipped = src;  // third axis reversed: a left-handed index frame
  for (int r = 0; r < 3; ++r) flipped.geometry.direction[static_cast<size_t>(3 * r + 2)] *= -1;
  io::write_volume(flipped, dir / "lh");
  check_same_by_world(flipped, io::read_volume(dir / "lh"));
}

TEST_CASE("MR phantom through DICOM: integers kept exactly / MR Image Storage without rescale") {
  test::ScratchDir dir("mr");
  PhantomParams p;
  p.modality = Modality::MR;
  p.shape = {12, 16, 20};
  p.spacing = {1.1, 0.9, 2.2};
  auto v = make_phantom(p, 1, 1);
  io::write_volume(v, dir / "mr");
  auto back = io::read_volume(dir / "mr");
  CHECK(back.modality == Modality::MR);
  check_same_by_world(v, back);
  auto files = dicom_files(dir / "mr");
  REQUIRE(files.size() == 12);
  CHECK(test::dicom_tag(files[0], 0x0008, 0x0016) == "1.2.840.10008.5.1.4.1.1.4");
  CHECK(test::dicom_tag(files[0], 0x0028, 0x1053).empty());
}

TEST_CASE("written DICOM: fresh UIDs / per-slice geometry / CT in HU / no source identity / marked derived") {
  test::ScratchDir dir("tags");
  auto src = io::read_volume(fixture("ct_oblique_dicom"));
  io::DicomWriteOptions o;
  o.synthetic = true;
  o.image_comments = "SYNTHETIC seed=3 class=1";
  io::WriteOptions wo;
  wo.dicom = o;
  io::write_volume(src, dir / "s1", wo);
  io::write_volume(src, dir / "s2", wo);
  auto f1 = dicom_files(dir / "s1"), f2 = dicom_files(dir / "s2");
  REQUIRE(f1.size() == 8);
  std::set<std::string> sops;
  for (const auto& f : f1) sops.insert(test::dicom_tag(f, 0x0008, 0x0018));
  CHECK(sops.size() == 8);
  CHECK(test::dicom_tag(f1[0], 0x0020, 0x000e) == test::dicom_tag(f1[7], 0x0020, 0x000e));
  CHECK(test::dicom_tag(f1[0], 0x0020, 0x000e) != test::dicom_tag(f2[0], 0x0020, 0x000e));
  CHECK(test::dicom_tag(f1[0], 0x0020, 0x000d) != test::dicom_tag(f2[0], 0x0020, 0x000d));
  CHECK(test::dicom_tag(f1[0], 0x0020, 0x0052) != test::dicom_tag(f2[0], 0x0020, 0x0052));
  CHECK(test::dicom_tag(f1[0], 0x0008, 0x0016) == "1.2.840.10008.5.1.4.1.1.2");
  CHECK(test::dicom_tag(f1[0], 0x0008, 0x0008) == "DERIVED\\SECONDARY\\AXIAL");
  CHECK(test::dicom_tag(f1[0], 0x0028, 0x1053) == "1");
  CHECK(test::dicom_tag(f1[0], 0x0028, 0x1052) == "0");
  CHECK(test::dicom_tag(f1[0], 0x0028, 0x1054) == "HU");
  CHECK(test::dicom_tag(f1[0], 0x0028, 0x0103) == "1");  // signed int16
  CHECK(test::dicom_tag(f1[0], 0x0020, 0x4000) == "SYNTHETIC seed=3 class=1");
  CHECK(test::dicom_tag(f1[0], 0x0010, 0x0010) != "FIXTURE^PYDICOM");
  CHECK(test::dicom_tag(f1[0], 0x0010, 0x0020) != "FIXTURE-001");
  auto e = expected("ct_oblique_dicom.expected.json");
  for (size_t k = 0; k < f1.size(); ++k) {
    CHECK(test::dicom_tag(f1[k], 0x0020, 0x0013) == std::to_string(k + 1));
    for (const auto& value : {test::dicom_tag(f1[k], 0x0020, 0x0032), test::dicom_tag(f1[k], 0x0020, 0x0037), test::dicom_tag(f1[k], 0x0028, 0x0030)}) {
      std::stringstream ss(value);
      std::string item;
      while (std::getline(ss, item, '\\')) CHECK(item.size() <= 16);
    }
  }
  // ImagePositionPatient of slice 4 (k = 3) equals the affine applied to (0, 0, 3).
  auto affine = e["affine_lps"];
  std::stringstream ss(test::dicom_tag(f1[3], 0x0020, 0x0032));
  for (int r = 0; r < 3; ++r) {
    std::string item;
    std::getline(ss, item, '\\');
    double want = affine[r][3].get<double>() + 3 * affine[r][2].get<double>();
    CHECK(std::stod(item) == doctest::Approx(want).epsilon(1e-6).scale(100));
  }
}

TEST_CASE("DICOM text beyond ASCII (label names) is declared UTF-8 and never cut inside a character") {
  test::ScratchDir dir("utf8");
  auto src = io::read_volume(fixture("ct_oblique_dicom"));
  io::WriteOptions wo;
  wo.dicom.synthetic = true;
  const std::string legend = "SEGMENTATION label map (pixel value = label: 0=Hintergrund 1=Schädel 2=Gehirn 3=Ventrikel 4=Läsion)";
  wo.dicom.image_comments = legend;
  // 63 ASCII characters and an 'ä' (2 bytes): the 64-character series description keeps the whole 'ä'
  wo.dicom.series_description = std::string(63, 'x') + "\xc3\xa4" + "yz";
  io::write_volume(src, dir / "utf8", wo);
  auto f = dicom_files(dir / "utf8");
  REQUIRE(!f.empty());
  CHECK(test::dicom_tag(f[0], 0x0008, 0x0005) == "ISO_IR 192");
  CHECK(test::dicom_tag(f[0], 0x0020, 0x4000) == legend);
  CHECK(test::dicom_tag(f[0], 0x0008, 0x103e) == std::string(63, 'x') + "\xc3\xa4");
  // ASCII-only text: no character set attribute, as before
  wo.dicom.image_comments = "SYNTHETIC";
  wo.dicom.series_description = "plain";
  io::write_volume(src, dir / "ascii", wo);
  CHECK(test::dicom_tag(dicom_files(dir / "ascii")[0], 0x0008, 0x0005).empty());
}

TEST_CASE("DICOM decimal strings fit 16 characters") {
  CHECK(io::format_ds(0.0) == "0");
  CHECK(io::format_ds(2.5) == "2.5");
  CHECK(io::format_ds(-0.12345678901234567).size() <= 16);
  CHECK(std::stod(io::format_ds(-0.12345678901234567)) == doctest::Approx(-0.12345678901234567).epsilon(1e-12));
  CHECK(io::format_ds(123456789.123456789).size() <= 16);
  CHECK(io::format_ds(1e-20).size() <= 16);
}

TEST_CASE("bad inputs: one error naming the file and what is wrong") {
  test::ScratchDir dir("bad");
  auto expect_error = [](const fs::path& p, const std::string& what) {
    test::check_error([&] { io::read_volume(p); }, {p.string(), what});
  };
  expect_error(dir / "missing.nii.gz", "no such file");
  write_text_atomically(dir / "corrupt.nii.gz", "this is not a NIfTI file at all, just text");
  expect_error(dir / "corrupt.nii.gz", "corrupt");
  std::string truncated = read_text(fixture("ct_oblique.nii.gz")).substr(0, 400);
  write_text_atomically(dir / "truncated.nii.gz", truncated);
  CHECK_THROWS_WITH_AS(io::read_volume(dir / "truncated.nii.gz"), doctest::Contains("truncated.nii.gz"), Error);
  expect_error(fixture("two_d.nii.gz"), "2-D");
  expect_error(fixture("four_d.nii.gz"), "4-D");
  expect_error(fixture("nan_voxel.nii.gz"), "NaN");
  fs::create_directories(dir / "empty");
  expect_error(dir / "empty", "no DICOM series");
  expect_error(dir / "unknown.xyz", "no such file");
  // Two series in one folder: error lists both; --series picks one.
  auto src = io::read_volume(fixture("ct_oblique_dicom"));
  io::write_volume(src, dir / "one");
  io::write_volume(src, dir / "two");
  fs::create_directories(dir / "both");
  for (const char* s : {"one", "two"})
    for (const auto& f : fs::directory_iterator(dir / s)) fs::copy_file(f.path(), dir / "both" / (std::string(s) + f.path().filename().string()));
  auto series = io::list_dicom_series(dir / "both");
  REQUIRE(series.size() == 2);
  test::check_error([&] { io::read_volume(dir / "both"); }, {"2 DICOM series", series[0].series_uid, series[1].series_uid});
  io::ReadOptions ro;
  ro.series_uid = series[1].series_uid;
  check_same_by_world(src, io::read_volume(dir / "both", ro));
  // A missing middle slice makes the spacing uneven: rejected.
  fs::remove(dicom_files(dir / "one")[3]);
  expect_error(dir / "one", "slice spacing varies");
}

TEST_CASE("a failed write leaves no file and no temporary behind") {
  test::ScratchDir dir("nowrite");
  Volume v;
  v.image = torch::zeros({4, 4, 4});
  v.image[1][2][3] = NAN;
  CHECK_THROWS_WITH_AS(io::write_volume(v, dir / "x.nii.gz"), doctest::Contains("NaN"), Error);
  v.image = torch::zeros({4, 4, 4});
  v.modality = Modality::Unknown;
  CHECK_THROWS_WITH_AS(io::write_volume(v, dir / "series"), doctest::Contains("modality"), Error);
  check_only(dir.path(), {});
}

TEST_CASE("label maps: read on the image grid / size mismatch rejected") {
  test::ScratchDir dir("labels");
  PhantomParams p;
  auto v = make_phantom(p, 0, 1);
  io::write_volume(v, dir / "img.nii.gz");
  io::write_label_map(*v.label, v.geometry, dir / "lab.nii.gz");
  auto img = io::read_volume(dir / "img.nii.gz");
  CHECK(torch::equal(io::read_label_map(dir / "lab.nii.gz", img), *v.label));
  Volume other = img;
  other.image = torch::zeros({8, 8, 8});
  CHECK_THROWS_WITH_AS(io::read_label_map(dir / "lab.nii.gz", other), doctest::Contains("differs"), Error);
}

TEST_CASE("PNG write and read back") {
  test::ScratchDir dir("png");
  auto img = torch::arange(0, 60, torch::kUInt8).reshape({6, 10});
  io::write_png(img, dir / "a.png");
  CHECK(torch::equal(io::read_png(dir / "a.png"), img));
}

// Datasets written by nibabel and pydicom (scripts/make_fixtures.py, datasets/expected.json): the cases, channels and
// label names each layout gives, the defect each one holds reported as one problem, and a voxel of a named channel
// read back with the value the script wrote.
TEST_CASE("dataset sources: nnU-Net raw - MSD - BraTS and a DICOM tree written by nibabel and pydicom") {
  const auto all = expected("datasets/expected.json");
  auto case_of = [](const Manifest& m, const std::string& id) -> const ManifestEntry& {
    for (const auto& e : m.entries)
      if (e.id == id) return e;
    FAIL("no case " << id);
    throw 0;
  };
  for (std::string key : {"nnunet", "msd", "brats"}) {
    CAPTURE(key);
    const auto& e = all[key];
    auto d = io::index_dataset(fixture("datasets/" + e["source"].get<std::string>()).string(), SourceParams{});
    CHECK(d.manifest.layout == e["layout"].get<std::string>());
    CHECK(d.manifest.channel_names == e["channel_names"].get<std::vector<std::string>>());
    if (e.contains("label_names")) CHECK(d.manifest.label_names == e["label_names"].get<std::vector<std::string>>());
    std::vector<std::string> ids;
    for (const auto& c : d.manifest.entries) ids.push_back(c.id);
    CHECK(ids == e["cases"].get<std::vector<std::string>>());
    CHECK(d.report.problems.size() == e["problems"].get<size_t>());
    const auto& vx = e["voxel"];
    const auto& c = case_of(d.manifest, vx["case"].get<std::string>());
    Volume v = io::read_channel(c.channel_files().at(vx["channel"].get<size_t>()));
    auto idx = vx["index"];
    CHECK(v.image[idx[2].get<int64_t>()][idx[1].get<int64_t>()][idx[0].get<int64_t>()].item<float>() == vx["value"].get<float>());
    CHECK(v.geometry.spacing[0] == doctest::Approx(1.5));
    CHECK(v.geometry.spacing[2] == doctest::Approx(2.0));
    if (c.label) CHECK(io::read_label_map(*c.label, v).max().item<int64_t>() == static_cast<int64_t>(key == "brats" ? 4 : d.manifest.label_names.size() - 1));
  }
  // BraTS: a case folder without a segmentation is a case without a label map (a validation case)
  auto brats = io::index_dataset(fixture("datasets/BraTS2021_tiny").string(), SourceParams{});
  auto with_labels = all["brats"]["labels"].get<std::vector<bool>>();
  for (size_t i = 0; i < brats.manifest.entries.size(); ++i) CHECK(brats.manifest.entries[i].label.has_value() == with_labels[i]);
  // BraTS 2023 suffixes on a BraTS 2021 folder: every case is a problem, and no case is an error naming the folder
  SourceParams p2023;
  p2023.brats_sequences = {"t1n", "t1c", "t2w", "t2f"};
  test::check_error([&] { io::index_dataset(fixture("datasets/BraTS2021_tiny").string(), p2023); },
                     {"BraTS2021_tiny: no cases", "no *_t1n file"});

  // DICOM tree: one case per series; the localiser and the secondary capture left out and said why, the cut file
  // listed as unreadable, the text file not mentioned; the two series of the flat folder read apart by their UID.
  const auto& e = all["dicom"];
  auto d = io::index_dataset(fixture("datasets/dicom_tree").string(), SourceParams{});
  CHECK(d.manifest.layout == "DICOM tree");
  CHECK(d.manifest.entries.size() == e["cases"].get<size_t>());
  CHECK(d.report.skipped.size() == e["skipped"].get<size_t>());
  REQUIRE(d.report.unreadable.size() == 1);
  CHECK(fs::path(d.report.unreadable[0]).filename() == "broken.dcm");
  std::map<std::string, int> modalities;
  std::set<std::string> uids;
  for (const auto& c : d.manifest.entries) {
    Volume v = io::read_channel(c.channel_files().front());
    modalities[to_string(v.modality)]++;
    uids.insert(c.channel_files().front().series_uid);
    if (c.info.find(e["voxel"]["info_contains"].get<std::string>()) != std::string::npos) {
      auto idx = e["voxel"]["index"];
      CHECK(v.depth() == 12);
      CHECK(v.image[idx[2].get<int64_t>()][idx[1].get<int64_t>()][idx[0].get<int64_t>()].item<float>() == e["voxel"]["value"].get<float>());
    } else {
      CHECK(v.modality == Modality::MR);
    }
  }
  CHECK(modalities["CT"] == 1);
  CHECK(modalities["MR"] == 2);
  CHECK(uids.size() == 3);  // the CT folder's one series ("") and the flat folder's two UIDs
  // the rules: only CT, and one series per study
  SourceParams ct;
  ct.dicom.modality = {"CT"};
  CHECK(io::index_dataset(fixture("datasets/dicom_tree").string(), ct).manifest.entries.size() == 1);
  SourceParams one;
  one.dicom.per_study = "most_slices";
  auto o = io::index_dataset(fixture("datasets/dicom_tree").string(), one);
  CHECK(o.manifest.entries.size() == 2);  // the flat folder's 11-slice T1, not its 10-slice T2
  CHECK(o.report.skipped.size() == 3);
  SourceParams keep;
  keep.dicom.keep_localizers = keep.dicom.keep_derived = true;
  keep.dicom.min_slices = 3;
  CHECK(io::index_dataset(fixture("datasets/dicom_tree").string(), keep).manifest.entries.size() == 5);
}

// A manifest written by `meddiff index` reads back to the same cases: channels, 4-D components, DICOM series UIDs.
TEST_CASE("dataset index: a case with a truncated or corrupt NIfTI file is left out with one problem line naming the file") {
  test::ScratchDir dir("index_corrupt");
  const auto root = dir / "BraTS2021_tiny";
  fs::copy(fixture("datasets/BraTS2021_tiny"), root, fs::copy_options::recursive);
  auto whole = io::index_dataset(root.string(), SourceParams{});
  const size_t cases = whole.manifest.entries.size(), problems = whole.report.problems.size();
  REQUIRE(cases >= 2);
  // A t1 cut in half (a download that stopped), then a flair overwritten by text: each time the case is left out with
  // one line naming the file, and the others stay.
  const auto cut = root / "BraTS2021_00000" / "BraTS2021_00000_t1.nii.gz";
  const auto garbage = root / "BraTS2021_00000" / "BraTS2021_00000_flair.nii.gz";
  const auto original = read_text(cut), original_flair = read_text(garbage);
  auto index_with = [&](const fs::path& file, const std::string& content, const std::string& expect) {
    CAPTURE(file);
    write_text_atomically(file, content);
    auto d = io::index_dataset(root.string(), SourceParams{});
    CHECK(d.manifest.entries.size() == cases - 1);
    REQUIRE(d.report.problems.size() == problems + 1);
    std::string all;
    for (const auto& p : d.report.problems) {
      CHECK(p.find('\n') == std::string::npos);
      all += p + "|";
    }
    CHECK(all.find("case BraTS2021_00000: " + file.string() + expect) != std::string::npos);
  };
  index_with(cut, original.substr(0, original.size() / 2), ": ");
  write_text_atomically(cut, original);
  index_with(garbage, "not an image\n", ": not a NIfTI file");
  write_text_atomically(garbage, original_flair);
  CHECK(io::index_dataset(root.string(), SourceParams{}).manifest.entries.size() == cases);
  write_text_atomically(cut, original.substr(0, original.size() / 2));
  // The whole file passes the quick check; the cut one fails it on its own.
  CHECK_NOTHROW(io::check_nifti_quickly(fixture("datasets/BraTS2021_tiny/BraTS2021_00000/BraTS2021_00000_t1.nii.gz")));
  try {
    io::check_nifti_quickly(cut);
    FAIL("no error for " << cut);
  } catch (const Error& e) {
    std::string m = e.what();
    CHECK(m.find(cut.string() + ": ") == 0);
    CHECK((m.find("truncated") != std::string::npos || m.find("corrupt") != std::string::npos));
  }
}

TEST_CASE("dataset manifest: save_manifest_json and load_manifest round-trip channels - components and series") {
  test::ScratchDir dir("manifest_roundtrip");
  for (std::string src : {"Task01_Tiny", "BraTS2021_tiny", "dicom_tree"}) {
    CAPTURE(src);
    auto d = io::index_dataset(fixture("datasets/" + src).string(), SourceParams{});
    save_manifest_json(d.manifest, dir / "m.json");
    Manifest back = load_manifest((dir / "m.json").string());
    REQUIRE(back.entries.size() == d.manifest.entries.size());
    CHECK(back.channel_names == d.manifest.channel_names);
    CHECK(back.layout == d.manifest.layout);
    for (size_t i = 0; i < back.entries.size(); ++i) {
      auto a = back.entries[i].channel_files(), b = d.manifest.entries[i].channel_files();
      REQUIRE(a.size() == b.size());
      for (size_t c = 0; c < a.size(); ++c) {
        CHECK(fs::weakly_canonical(a[c].path) == fs::weakly_canonical(b[c].path));
        CHECK(a[c].component == b[c].component);
        CHECK(a[c].series_uid == b[c].series_uid);
      }
      CHECK(back.entries[i].id == d.manifest.entries[i].id);
      CHECK(back.entries[i].label.has_value() == d.manifest.entries[i].label.has_value());
    }
  }
  // data.channels names a channel the dataset lacks: one error listing the ones it has
  auto msd = io::index_dataset(fixture("datasets/Task01_Tiny").string(), SourceParams{}).manifest;
  CHECK(select_channels(msd, {"t2w", "flair"}, "data.channels") == std::vector<size_t>{3, 0});
  test::check_error([&] { select_channels(msd, {"t1ce"}, "data.channels"); }, {"data.channels", "t1ce", "FLAIR, T1w, t1gd, T2w"});
}
