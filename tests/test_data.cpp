#include <doctest/doctest.h>

#include "core/error.h"
#include "core/fs.h"
#include "data/batches.h"
#include "data/dataset_cache.h"
#include "data/distribution_metrics.h"
#include "data/metrics.h"
#include "data/nearest_volume.h"
#include "data/intensity.h"
#include "data/manifest.h"
#include "data/phantom.h"
#include "data/preview.h"
#include "data/ras_axes.h"
#include "data/spatial.h"
#include "data/surface_distance.h"
#include "test_support.h"

#include <sys/stat.h>

#include <cmath>
#include <set>

using namespace meddiff;

namespace {
Geometry oblique_geometry() {
  Geometry g;
  g.spacing = {0.8, 0.9, 2.5};
  g.origin = {-40.25, 22.5, 101.75};
  // Rotation about z by 30 degrees: orthonormal, not axis-aligned.
  double c = std::cos(0.5235987755982988), s = std::sin(0.5235987755982988);
  g.direction = {c, -s, 0, s, c, 0, 0, 0, 1};
  return g;
}

// Volume whose voxel value is the world coordinate `axis` of the voxel centre.
Volume world_ramp(const Geometry& g, std::array<int64_t, 3> shape, int axis) {
  Volume v;
  v.geometry = g;
  v.image = torch::empty({shape[0], shape[1], shape[2]});
  auto a = v.image.accessor<float, 3>();
  for (int64_t k = 0; k < shape[0]; ++k)
    for (int64_t j = 0; j < shape[1]; ++j)
      for (int64_t i = 0; i < shape[2]; ++i)
        a[k][j][i] = static_cast<float>(g.index_to_world(double(i), double(j), double(k))[static_cast<size_t>(axis)]);
  return v;
}
}  // namespace

TEST_CASE("geometry: index_to_world and world_to_index are inverse") {
  Geometry g = oblique_geometry();
  auto p = g.index_to_world(3, 4, 5);
  // closed form: origin + R * (3*0.8, 4*0.9, 5*2.5)
  double c = std::cos(0.5235987755982988), s = std::sin(0.5235987755982988);
  CHECK(p[0] == doctest::Approx(-40.25 + c * 2.4 - s * 3.6));
  CHECK(p[1] == doctest::Approx(22.5 + s * 2.4 + c * 3.6));
  CHECK(p[2] == doctest::Approx(101.75 + 12.5));
  auto idx = g.world_to_index(p);
  CHECK(idx[0] == doctest::Approx(3));
  CHECK(idx[1] == doctest::Approx(4));
  CHECK(idx[2] == doctest::Approx(5));
}

TEST_CASE("CT window: every integer HU inside the window survives normalise/denormalise exactly") {
  IntensityWindow w{-1024, 3071};
  auto hu = torch::arange(-1024, 3072, torch::kFloat);
  auto y = normalise(hu, w);
  CHECK(y.min().item<float>() == doctest::Approx(-1.0));
  CHECK(y.max().item<float>() == doctest::Approx(1.0));
  CHECK(torch::equal(denormalise(y, w), hu));
  // Outside the window: clipped to the window edges.
  auto out = denormalise(normalise(torch::tensor({-3000.0f, 5000.0f}), w), w);
  CHECK(out[0].item<float>() == -1024);
  CHECK(out[1].item<float>() == 3071);
  // Closed form: 0 HU -> 2 * 1024 / 4095 - 1.
  CHECK(normalise(torch::tensor({0.0f}), w).item<float>() == doctest::Approx(2.0 * 1024 / 4095 - 1));
}

TEST_CASE("MR window: percentiles match numpy's linear interpolation") {
  auto x = torch::arange(0, 101, torch::kFloat);  // 0..100
  CHECK(percentile(x, 0.5) == doctest::Approx(0.5));
  CHECK(percentile(x, 99.5) == doctest::Approx(99.5));
  CHECK(percentile(torch::tensor({1.0f, 2.0f, 3.0f, 4.0f}), 50) == doctest::Approx(2.5));
  Volume v;
  v.modality = Modality::MR;
  v.image = x.reshape({101, 1, 1});
  IntensityParams p;
  auto w = window_for(v, p);
  CHECK(w.lo == doctest::Approx(0.5));
  CHECK(w.hi == doctest::Approx(99.5));
  auto ints = torch::arange(1, 99, torch::kFloat);
  CHECK(torch::allclose(denormalise(normalise(ints, w), w, false), ints, 0, 1e-4));
  IntensityParams bad;
  bad.mr_lo_percentile = 60;
  bad.mr_hi_percentile = 40;
  CHECK_THROWS_WITH_AS(bad.validate(), doctest::Contains("percentiles"), Error);
}

TEST_CASE("resample keeps physical coordinates (linear field is reproduced exactly)") {
  Geometry g = oblique_geometry();
  for (int axis = 0; axis < 3; ++axis) {
    Volume v = world_ramp(g, {9, 11, 13}, axis);
    Volume r = resample_to_spacing(v, {1.2, 0.6, 1.0});
    CHECK(r.geometry.spacing[0] == 1.2);
    CHECK((r.geometry.origin == v.geometry.origin));
    CHECK(r.width() == 9);   // floor(12 * 0.8 / 1.2) + 1
    CHECK(r.height() == 16); // floor(10 * 0.9 / 0.6) + 1
    CHECK(r.depth() == 21);  // floor(8 * 2.5 / 1.0) + 1
    Volume expect = world_ramp(r.geometry, {r.depth(), r.height(), r.width()}, axis);
    CHECK((r.image - expect.image).abs().max().item<float>() < 1e-3);
  }
}

TEST_CASE("resample uses nearest neighbour for labels") {
  Volume v;
  v.image = torch::zeros({4, 4, 4});
  v.label = torch::randint(0, 5, {4, 4, 4}, torch::kLong);
  Volume r = resample_to_spacing(v, {0.5, 0.5, 0.5});
  auto l = *r.label;
  CHECK((l.scalar_type() == torch::kLong));
  CHECK(torch::equal(std::get<0>(at::_unique(l)), std::get<0>(at::_unique(*v.label))));
  CHECK(l[2][2][2].item<int64_t>() == (*v.label)[1][1][1].item<int64_t>());
}

TEST_CASE("crop and pad keep the value at every world point") {
  Geometry g = oblique_geometry();
  Volume v = world_ramp(g, {8, 10, 12}, 1);
  Volume c = crop_or_pad(v, {6, 14, 8}, CropMode::Centre, -999.0);
  CHECK((c.image.sizes() == torch::IntArrayRef({6, 14, 8})));
  auto a = c.image.accessor<float, 3>();
  int checked = 0, padded = 0;
  for (int64_t k = 0; k < 6; ++k)
    for (int64_t j = 0; j < 14; ++j)
      for (int64_t i = 0; i < 8; ++i) {
        auto src = g.world_to_index(c.geometry.index_to_world(double(i), double(j), double(k)));
        bool inside = src[1] > -0.5 && src[1] < 9.5;
        if (inside) {
          CHECK(a[k][j][i] == doctest::Approx(c.geometry.index_to_world(double(i), double(j), double(k))[1]).epsilon(1e-5));
          ++checked;
        } else {
          CHECK(a[k][j][i] == -999.0f);
          ++padded;
        }
      }
  CHECK(checked > 0);
  CHECK(padded == 6 * 4 * 8);  // two rows of padding on each side along H
}

TEST_CASE("crop around the foreground box follows the label") {
  Volume v;
  v.image = torch::zeros({20, 20, 20});
  v.label = torch::zeros({20, 20, 20}, torch::kLong);
  (*v.label).index_put_({torch::indexing::Slice(14, 18), torch::indexing::Slice(2, 5), torch::indexing::Slice(10, 12)}, 1);
  Volume c = crop_or_pad(v, {8, 8, 8}, CropMode::Foreground, 0);
  CHECK((*c.label).sum().item<int64_t>() == (*v.label).sum().item<int64_t>());
}

TEST_CASE("manifest: CSV / JSON / folder and glob - all bad entries reported at once") {
  test::ScratchDir dir("manifest");
  write_text_atomically(dir / "a.nii.gz", "x");
  write_text_atomically(dir / "b.nii.gz", "x");
  write_text_atomically(dir / "notes.txt", "x");
  write_text_atomically(dir / "list.csv", "image,class\na.nii.gz,0\nb.nii.gz,1\n");
  auto m = load_manifest((dir / "list.csv").string());
  REQUIRE(m.entries.size() == 2);
  CHECK(m.entries[1].class_label == 1);
  CHECK(m.num_classes() == 2);
  CHECK(load_manifest(dir.path().string()).entries.size() == 2);       // folder: images only
  CHECK(load_manifest((dir / "b*.nii.gz").string()).entries.size() == 1);  // glob
  write_text_atomically(dir / "bad.csv", "image,class\nmissing1.nii.gz,0\na.nii.gz,x\nmissing2.nii.gz,1\n");
  test::check_error([&] { load_manifest((dir / "bad.csv").string()); },
                    {"3 bad entries", "missing1.nii.gz", "missing2.nii.gz", "'x' is not an integer"});
  write_text_atomically(dir / "m.json", R"({"cases": [{"image": "a.nii.gz", "class": 1, "colour": "red"}]})");
  CHECK_THROWS_WITH_AS(load_manifest((dir / "m.json").string()), doctest::Contains("unknown key 'colour'"), Error);
  Manifest out;
  out.entries.push_back(ManifestEntry{dir / "a.nii.gz", 1, dir / "b.nii.gz", "", {}, ""});
  save_manifest_json(out, dir / "saved.json");
  auto back = load_manifest((dir / "saved.json").string());
  CHECK(back.entries[0].class_label == 1);
  REQUIRE(back.entries[0].label.has_value());
  CHECK(back.entries[0].label->filename() == "b.nii.gz");
  CHECK(read_text(dir / "saved.json").find("\"label\"") != std::string::npos);
  // the label map column: "label" (and "mask", its older name) in CSV and JSON; a class is never read from it
  write_text_atomically(dir / "labels.csv", "image,class,label\na.nii.gz,0,b.nii.gz\n");
  CHECK(load_manifest((dir / "labels.csv").string()).entries[0].label->filename() == "b.nii.gz");
  write_text_atomically(dir / "masks.json", R"({"cases": [{"image": "a.nii.gz", "class": 0, "mask": "b.nii.gz"}]})");
  CHECK(load_manifest((dir / "masks.json").string()).entries[0].label->filename() == "b.nii.gz");
  write_text_atomically(dir / "nolabel.csv", "image,label\na.nii.gz,1\n");
  CHECK_THROWS_WITH_AS(load_manifest((dir / "nolabel.csv").string()), doctest::Contains("no such file"), Error);
}

TEST_CASE("manifest: classes beyond 999 - FIFOs - devices and link loops are one line each - label-only manifests for label maps") {
  test::ScratchDir dir("manifest-bad");
  write_text_atomically(dir / "a.nii.gz", "x");
  // a huge class used to size a 1 TB embedding; 1000 silently built a 1001-class model
  write_text_atomically(dir / "huge.csv", "image,class\na.nii.gz,0\na.nii.gz,4000000000\na.nii.gz,1000\na.nii.gz,999\n");
  test::check_error([&] { load_manifest((dir / "huge.csv").string()); }, {"2 bad entries", "line 3: class 4000000000", "line 4: class 1000", "999"});
  // a FIFO and a device are not "no such file"; a symbolic-link loop is named, not a raw filesystem error
  REQUIRE(::mkfifo((dir / "pipe.nii.gz").c_str(), 0644) == 0);
  fs::create_symlink(dir / "loop2.nii.gz", dir / "loop1.nii.gz");
  fs::create_symlink(dir / "loop1.nii.gz", dir / "loop2.nii.gz");
  write_text_atomically(dir / "odd.csv", "image,class\npipe.nii.gz,0\n/dev/zero,0\nloop1.nii.gz,0\n");
  test::check_error([&] { load_manifest((dir / "odd.csv").string()); },
                    {"line 2", "pipe.nii.gz: not a regular file", "line 3", "/dev/zero: not a regular file", "line 4", "loop1.nii.gz: cannot be read"});
  // label maps only: a label column is enough for ManifestKind::LabelMaps, not for images
  write_text_atomically(dir / "maps.csv", "label,class\na.nii.gz,1\n");
  auto m = load_manifest((dir / "maps.csv").string(), ManifestKind::LabelMaps);
  REQUIRE(m.entries.size() == 1);
  CHECK(m.entries[0].label->filename() == "a.nii.gz");
  CHECK(m.entries[0].class_label == 1);
  CHECK_THROWS_WITH_AS(load_manifest((dir / "maps.csv").string()), doctest::Contains("no 'image' column"), Error);
  write_text_atomically(dir / "maps.json", R"({"cases": [{"label": "a.nii.gz", "class": 0}]})");
  CHECK(load_manifest((dir / "maps.json").string(), ManifestKind::LabelMaps).entries.size() == 1);
  CHECK_THROWS_WITH_AS(load_manifest((dir / "maps.json").string()), doctest::Contains("needs an 'image' path"), Error);
  // one label file is a list of one map; as images it is still not a manifest
  auto one = load_manifest((dir / "a.nii.gz").string(), ManifestKind::LabelMaps);
  REQUIRE(one.entries.size() == 1);
  CHECK(one.entries[0].image.filename() == "a.nii.gz");
  CHECK_THROWS_WITH_AS(load_manifest((dir / "a.nii.gz").string()), doctest::Contains("a manifest is a folder, a glob"), Error);
  // the classes a manifest uses
  write_text_atomically(dir / "gaps.csv", "image,class\na.nii.gz,0\na.nii.gz,5\n");
  auto g = load_manifest((dir / "gaps.csv").string());
  CHECK(g.num_classes() == 6);
  CHECK(g.classes_used() == std::vector<int64_t>{0, 5});
}

TEST_CASE("phantoms are deterministic / labelled and class 1 alone has lesions") {
  PhantomParams p;
  p.modality = Modality::MR;
  p.seed = 7;
  auto a = make_phantom(p, 3, 1), b = make_phantom(p, 3, 1);
  CHECK(torch::equal(a.image, b.image));
  CHECK(torch::equal(*a.label, *b.label));
  p.seed = 8;
  CHECK_FALSE(torch::equal(make_phantom(p, 3, 1).image, a.image));
  for (auto modality : {Modality::MR, Modality::CT}) {
    p.modality = modality;
    for (int64_t i = 0; i < 6; ++i) {
      auto c0 = make_phantom(p, i, 0), c1 = make_phantom(p, i, 1);
      CHECK(((*c0.label) == 4).sum().item<int64_t>() == 0);
      CHECK(((*c1.label) == 4).sum().item<int64_t>() > 0);
      // MR lesions are large enough to survive the demo's 2x latent downsampling at 32^3: a sphere of
      // radius >= 2.5 voxels holds ~65 voxels; ventricles and the brain's edge may cut part of it.
      if (modality == Modality::MR) CHECK(((*c1.label) == 4).sum().item<int64_t>() >= 20);
      for (int64_t l = 0; l < 4; ++l) CHECK(((*c0.label) == l).sum().item<int64_t>() > 0);
    }
  }
}

TEST_CASE("CT phantom tissues sit at their Hounsfield values") {
  PhantomParams p;
  p.modality = Modality::CT;
  p.shape = {24, 40, 40};
  p.spacing = {0.9, 0.9, 2.0};
  auto v = make_phantom(p, 1, 1);
  auto median = [&](int64_t l) { return v.image.masked_select(*v.label == l).median().item<float>(); };
  CHECK(median(0) == doctest::Approx(-1000).epsilon(0.02));
  CHECK(median(1) == doctest::Approx(40).epsilon(0.5));
  CHECK(median(2) < -700);
  CHECK(median(3) > 500);
  CHECK(std::abs(median(4) - 30) < 25);
  CHECK((v.image == v.image.round()).all().item<bool>());
  CHECK(v.geometry.spacing[2] == 2.0);
}

TEST_CASE("preview panel follows the spacing's aspect ratio") {
  Volume v;
  v.image = torch::zeros({10, 20, 30});
  v.geometry.spacing = {1.0, 1.0, 3.0};  // z voxels are 3x longer
  auto panel = orthogonal_panel(v.image, v.geometry, {0, 1});
  CHECK((panel.scalar_type() == torch::kUInt8));
  // axial 20x30, coronal 30x30 (10 slices * 3 mm), sagittal 30x20; gap 4
  CHECK(panel.size(0) == 30);
  CHECK(panel.size(1) == 30 + 4 + 30 + 4 + 20);
}

TEST_CASE("batches: the slices of N ranks make up the global batch and every epoch shows each case once") {
  std::vector<TrainingVolume> cases;
  for (int64_t i = 0; i < 7; ++i) {
    TrainingVolume v;
    v.x = torch::full({1, 2, 2, 2}, static_cast<float>(i));
    v.class_label = i;
    cases.push_back(v);
  }
  std::vector<int64_t> seen;
  for (int64_t step = 0; step < 7; ++step) {
    Batch whole = make_batch(cases, 4, 11, step, false);
    Batch a = make_batch(cases, 2, 11, step, false, {0, 4}), b = make_batch(cases, 2, 11, step, false, {2, 4});
    CHECK(torch::equal(whole.x, torch::cat({a.x, b.x})));
    CHECK(torch::equal(whole.labels, torch::cat({a.labels, b.labels})));
    CHECK(b.first == 2);
    for (int64_t j = 0; j < 4; ++j) seen.push_back(whole.labels[j].item<int64_t>());
  }
  // 28 samples = 4 epochs of 7 cases: each epoch is a permutation
  for (size_t e = 0; e < 4; ++e) {
    std::vector<int64_t> epoch(seen.begin() + static_cast<long>(7 * e), seen.begin() + static_cast<long>(7 * e + 7));
    std::sort(epoch.begin(), epoch.end());
    CHECK(epoch == std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6});
  }
  // flips follow the sample, not the rank
  Batch fw = make_batch(cases, 4, 3, 5, true), fa = make_batch(cases, 2, 3, 5, true, {2, 4});
  CHECK(torch::equal(fw.x.slice(0, 2, 4), fa.x));
  meddiff::test::check_error([&] { make_batch(cases, 3, 1, 0, false, {2, 4}); }, {"outside the global batch of 4"});
}

TEST_CASE("batches: the label maps travel with their images through the random flips") {
  std::vector<TrainingVolume> cases;
  for (int64_t i = 0; i < 3; ++i) {
    TrainingVolume v;
    v.x = torch::arange(4 * 5 * 6, torch::kFloat).reshape({1, 4, 5, 6}) + 1000.0 * static_cast<double>(i);
    v.label = torch::arange(4 * 5 * 6, torch::kLong).reshape({4, 5, 6}) % 7;  // a map that no flip leaves unchanged
    cases.push_back(v);
  }
  int64_t flipped = 0;
  for (int64_t step = 0; step < 12; ++step) {
    Batch b = make_batch(cases, 2, 5, step, true);
    REQUIRE(b.seg.defined());
    CHECK(b.seg.sizes() == torch::IntArrayRef({2, 4, 5, 6}));
    // the map is a function of the unflipped voxel value: it must still be that function after the flips
    CHECK(torch::equal(b.seg, b.x.select(1, 0).remainder(1000.0).to(torch::kLong) % 7));
    for (int64_t j = 0; j < 2; ++j) flipped += torch::equal(b.x[j][0].remainder(1000.0), cases[0].x[0]) ? 0 : 1;
  }
  CHECK(flipped > 0);
  cases[1].label = torch::Tensor();  // not every case has a map: no maps in the batches
  CHECK_FALSE(make_batch(cases, 3, 5, 0, true).seg.defined());
}

TEST_CASE("eval metrics: Fréchet distance and k-NN manifold metrics against closed forms") {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
  auto x = torch::randn({200, 6}, gen, torch::kDouble);
  CHECK(std::abs(frechet_distance(x, x)) < 1e-8);
  // a shifted copy: same covariance, so the distance is |shift|^2
  auto shift = torch::tensor({1.0, -2.0, 0.5, 0.0, 0.0, 3.0}, torch::kDouble);
  CHECK(frechet_distance(x, x + shift) == doctest::Approx(1 + 4 + 0.25 + 9).epsilon(1e-8));
  // a scaled copy: covariances S and a^2 S give tr(S)(1 - a)^2
  auto c = x - x.mean(0);
  double tr = (c.t().mm(c) / 199.0).trace().item<double>();
  CHECK(frechet_distance(x, x * 2.0) == doctest::Approx(tr * 1.0 + (x.mean(0) * 1.0).pow(2).sum().item<double>()).epsilon(1e-6));
  ManifoldMetrics same = manifold_metrics(x, x, 5);
  CHECK(same.precision == 1.0);
  CHECK(same.recall == 1.0);
  CHECK(same.coverage == 1.0);
  ManifoldMetrics far = manifold_metrics(x, x + 100.0, 5);
  CHECK(far.precision == 0.0);
  CHECK(far.recall == 0.0);
  CHECK(far.density == 0.0);
  CHECK(far.coverage == 0.0);
  meddiff::test::check_error([&] { frechet_distance(x, torch::randn({5, 4})); }, {"feature sizes differ"});
  // moments gathered in chunks, about a far-off first row: the same mean, covariance and distance
  FeatureMoments m;
  auto offset = x + 1e6;
  m.add(offset.slice(0, 0, 7));
  m.add(offset[7]);
  m.add(offset.slice(0, 8, 200));
  CHECK(torch::allclose(m.mean(), offset.mean(0), 1e-9, 1e-6));
  auto cf = offset - offset.mean(0);
  CHECK(torch::allclose(m.covariance(), cf.t().mm(cf) / 199.0, 1e-6, 1e-9));
  FeatureMoments shifted;
  shifted.add(offset + shift);
  CHECK(frechet_distance(m, shifted) == doctest::Approx(1 + 4 + 0.25 + 9).epsilon(1e-6));
}

TEST_CASE("eval metrics: the NCC index equals the windowed correlation coefficient computed directly at every shift") {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(8);
  const int64_t S = 2, m = S + 1;
  std::vector<torch::Tensor> refs;
  for (int i = 0; i < 3; ++i) refs.push_back(torch::rand({12, 11, 10}, gen, torch::kDouble));
  NccIndex index(refs, S);
  auto q = torch::rand({12, 11, 10}, gen, torch::kDouble);
  // direct: the query's central window against the reference's window moved by s, each minus its mean
  auto direct = [&](const torch::Tensor& r, int64_t a, int64_t b, int64_t c) {
    auto qw = q.slice(0, m, 12 - m).slice(1, m, 11 - m).slice(2, m, 10 - m);
    auto rw = r.slice(0, m + a, 12 - m + a).slice(1, m + b, 11 - m + b).slice(2, m + c, 10 - m + c);
    qw = qw - qw.mean();
    rw = rw - rw.mean();
    return ((qw * rw).sum() / (qw.norm() * rw.norm())).item<double>();
  };
  auto all = index.all(q);
  for (size_t i = 0; i < refs.size(); ++i) {
    double best = -2;
    for (int64_t a = -S; a <= S; ++a)
      for (int64_t b = -S; b <= S; ++b)
        for (int64_t c = -S; c <= S; ++c) best = std::max(best, direct(refs[i], a, b, c));
    CHECK(all[static_cast<int64_t>(i)].item<double>() == doctest::Approx(best).epsilon(1e-9));
  }
  // a reference that is the query moved by (1, -2, 2) inside the volume: NCC 1 at the opposite shift
  auto moved = torch::roll(q, {1, -2, 2}, {0, 1, 2});
  NccIndex one({refs[0], moved, refs[1]}, S);
  auto match = one.nearest(q);
  CHECK(match.index == 1);
  CHECK(match.ncc == doctest::Approx(1.0).epsilon(1e-12));
  CHECK(match.shift == std::array<int64_t, 3>{1, -2, 2});
  CHECK(match.second < 0.5);
  meddiff::test::check_error([&] { NccIndex({torch::rand({6, 6, 6})}, 2); }, {"too small"});
}

TEST_CASE("eval metrics: MS-SSIM is 1 for identical volumes and falls with noise and the NCC search finds a shifted noisy copy") {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(5);
  auto a = torch::nn::functional::avg_pool3d(torch::rand({1, 1, 36, 36, 36}, gen), torch::nn::functional::AvgPool3dFuncOptions(5).stride(1))[0][0];
  a = (a - a.mean()) / a.std();
  CHECK(ms_ssim3d(a, a, 8.0) == doctest::Approx(1.0));
  auto noisy = a + 1.5 * torch::randn(a.sizes(), gen);
  double m = ms_ssim3d(a, noisy, 8.0);
  CHECK(m < 0.95);
  CHECK(m > 0.0);
  std::vector<torch::Tensor> refs;
  for (int i = 0; i < 4; ++i) {
    auto r = torch::nn::functional::avg_pool3d(torch::rand({1, 1, 36, 36, 36}, gen), torch::nn::functional::AvgPool3dFuncOptions(5).stride(1))[0][0];
    refs.push_back(band_pass(r));
  }
  refs.push_back(band_pass(a));
  NccIndex index(refs, 2);
  // the copy, rolled by (2, -1, 0) voxels with noise: found, at the opposite shift, correlating near 1
  auto copy = torch::roll(a, {2, -1}, {0, 1}) + 0.05 * torch::randn(a.sizes(), gen);
  auto match = index.nearest(band_pass(copy));
  CHECK(match.index == 4);
  CHECK(match.ncc > 0.98);
  CHECK(match.shift == std::array<int64_t, 3>{-2, 1, 0});
  CHECK(index.all(band_pass(copy))[0].item<double>() < 0.5);  // an unrelated volume
}

TEST_CASE("surface distances: the distance transform equals brute force with anisotropic spacing - Dice ASSD and HD95 of shifted boxes") {
  const std::array<double, 3> sp{0.7, 1.3, 2.5};  // x, y, z mm
  auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
  auto seeds = torch::rand({7, 9, 11}, gen) < 0.03;  // [D, H, W]
  seeds[3][4][5] = true;
  auto dt = distance_transform(seeds, sp);
  auto idx = seeds.nonzero();  // [n, 3] (d, h, w)
  double worst = 0;
  for (int64_t d = 0; d < 7; ++d)
    for (int64_t h = 0; h < 9; ++h)
      for (int64_t w = 0; w < 11; ++w) {
        double best = 1e30;
        for (int64_t i = 0; i < idx.size(0); ++i) {
          const double dz = (d - idx[i][0].item<int64_t>()) * sp[2], dy = (h - idx[i][1].item<int64_t>()) * sp[1],
                       dx = (w - idx[i][2].item<int64_t>()) * sp[0];
          best = std::min(best, std::sqrt(dx * dx + dy * dy + dz * dz));
        }
        worst = std::max(worst, std::abs(dt[d][h][w].item<double>() - best));
      }
  CHECK(worst < 1e-9);
  CHECK(std::isinf(distance_transform(torch::zeros({3, 3, 3}, torch::kBool), sp)[1][1][1].item<double>()));
  // the surface of a 3x3x3 cube is its 26 outer voxels; of a single voxel, itself
  auto cube = torch::zeros({5, 5, 5}, torch::kBool);
  cube.slice(0, 1, 4).slice(1, 1, 4).slice(2, 1, 4).fill_(true);
  CHECK(mask_surface(cube).sum().item<int64_t>() == 26);
  // truth: a 4x4x4 box of label 2; prediction: the same box moved by 2 voxels along x (W)
  auto truth = torch::zeros({10, 10, 12}, torch::kLong), pred = torch::zeros({10, 10, 12}, torch::kLong);
  truth.slice(0, 3, 7).slice(1, 3, 7).slice(2, 3, 7).fill_(2);
  pred.slice(0, 3, 7).slice(1, 3, 7).slice(2, 5, 9).fill_(2);
  auto s = score_label(pred, truth, 2, {1.0, 1.0, 1.0});
  CHECK(s.dice == doctest::Approx(2.0 * 32 / 128));  // 4x4x2 shared of 64 + 64
  REQUIRE(s.assd.has_value());
  // closed form: of each box's 56 surface voxels, the 2 x 16 on the planes x = 3,4 (truth) lie 2 and 1
  // voxels from the other box's surface... checked against brute force over the two surfaces instead
  auto st = mask_surface(truth == 2).nonzero(), sp2 = mask_surface(pred == 2).nonzero();
  auto directed = [](const torch::Tensor& a, const torch::Tensor& b) {
    auto d = torch::cdist(a.to(torch::kDouble), b.to(torch::kDouble));
    return std::get<0>(d.min(1));
  };
  auto ab = directed(sp2, st), ba = directed(st, sp2);
  CHECK(*s.assd == doctest::Approx((ab.sum() + ba.sum()).item<double>() / static_cast<double>(ab.numel() + ba.numel())));
  CHECK(*s.hd95 == doctest::Approx(std::max(torch::quantile(ab, 0.95).item<double>(), torch::quantile(ba, 0.95).item<double>())));
  // an empty prediction: Dice 0, no distances; both empty: Dice 1
  auto e = score_label(torch::zeros_like(truth), truth, 2, sp);
  CHECK(e.dice == 0.0);
  CHECK_FALSE(e.assd.has_value());
  CHECK(score_label(truth, truth, 3, sp).dice == 1.0);
}

// The dataset cache: built once (each case made once, in parallel), mapped afterwards (no case made), the
// records equal to what was made (float16 images, uint8 labels, geometry, window, class); a changed case is
// the only one made again, other settings make all again, and a failing case is one error naming it.
TEST_CASE("dataset cache: built once - mapped after - a changed case rebuilt alone - other settings rebuilt") {
  meddiff::test::ScratchDir dir("dataset_cache");
  const int64_t N = 5;
  auto volume = [](size_t i, double offset) {
    TrainingVolume t;
    auto g = torch::Generator(at::detail::createCPUGenerator(static_cast<uint64_t>(i) + 1));
    t.x = (torch::rand({2, 4, 6, 8}, g) * 2 - 1 + offset).clamp(-1, 1);  // two channels
    if (i % 2 == 0) t.label = torch::randint(0, 4, {4, 6, 8}, g, torch::kLong);
    t.geometry.spacing = {0.5 + double(i), 1.0, 2.5};
    t.geometry.origin = {double(i), -3.0, 7.25};
    t.windows = {{-100.0 * double(i), 900.0}, {5.0, 50.0 + double(i)}};
    t.class_label = int64_t(i % 3);
    t.source = "case" + std::to_string(i) + ".nii.gz";
    t.label_source = t.label.defined() ? "case" + std::to_string(i) + "_seg.nii.gz" : "";
    return t;
  };
  CacheSpec spec;
  spec.dir = dir / "cache";
  spec.settings = {{"shape", {4, 6, 8}}, {"modality", "mr"}};
  spec.shape = {2, 4, 6, 8};
  for (int64_t i = 0; i < N; ++i) spec.cases.push_back({{"files", {"case" + std::to_string(i), 100 + i, 7}}});
  std::atomic<int> made{0};
  auto make = [&](size_t i) {
    ++made;
    return volume(i, 0.0);
  };
  auto first = cached_cases(spec, make, "test");
  CHECK(made.load() == N);
  auto second = cached_cases(spec, make, "test");
  CHECK(made.load() == N);  // mapped, nothing made
  REQUIRE(second.size() == size_t(N));
  for (size_t i = 0; i < size_t(N); ++i) {
    auto want = volume(i, 0.0);
    CHECK((second[i].x.scalar_type() == torch::kHalf));
    CHECK(torch::equal(second[i].x, want.x.to(torch::kHalf)));
    CHECK((second[i].x.to(torch::kFloat) - want.x).abs().max().item<double>() < 1e-3);  // float16 of values in [-1, 1]
    CHECK(second[i].label.defined() == want.label.defined());
    if (want.label.defined()) {
      CHECK(torch::equal(second[i].label.to(torch::kLong), want.label));
      CHECK(second[i].label_count == want.label.max().item<int64_t>() + 1);  // kept, so training need not read the map
    }
    CHECK(second[i].geometry.approx_equal(want.geometry));
    REQUIRE(second[i].windows.size() == 2);
    CHECK(second[i].windows[0].lo == want.windows[0].lo);
    CHECK(second[i].windows[1].hi == want.windows[1].hi);
    CHECK(second[i].class_label == want.class_label);
    CHECK(second[i].source == want.source);
  }
  // case 3's file changed: only it is made again, the others' records are reused
  spec.cases[3]["files"][2] = 8;
  int before = made.load();
  auto third = cached_cases(spec, [&](size_t i) { ++made; return volume(i, i == 3 ? 0.5 : 0.0); }, "test");
  CHECK(made.load() - before == 1);
  CHECK(torch::equal(third[3].x, volume(3, 0.5).x.to(torch::kHalf)));
  CHECK(torch::equal(third[1].x, volume(1, 0.0).x.to(torch::kHalf)));
  // other settings: every case made again
  spec.settings["shape"] = {4, 6, 9};
  before = made.load();
  cached_cases(spec, make, "test");
  CHECK(made.load() - before == N);
  // a case that fails: one error naming it, no cache folder left for these settings
  spec.settings["modality"] = "ct";
  meddiff::test::check_error([&] {
    cached_cases(spec, [&](size_t i) -> TrainingVolume {
      if (i == 2) fail("case2.nii.gz: cannot read voxels");
      return volume(i, 0.0);
    }, "test");
  }, {"1 of 5 cases cannot be used", "case2.nii.gz: cannot read voxels"});
  int complete = 0;
  for (const auto& f : fs::directory_iterator(spec.dir))
    if (fs::exists(f.path() / "meta.json")) ++complete;
  CHECK(complete == 2);  // the first settings' (its earlier build superseded when case 3 changed) and the 4x6x9 one; the failed build left nothing
}

// Patch batches: the crop sits inside the volume, the label map is cut with the image, and foreground patches
// hold the one labelled voxel (centred where the border allows); the draws are reproducible.
TEST_CASE("patch batches: foreground patches hold the labelled voxel - image and label map cut alike - inside the volume") {
  TrainingVolume c;
  c.x = torch::arange(12 * 10 * 8, torch::kFloat).reshape({1, 12, 10, 8}) / 1000.0 - 0.9;
  c.label = torch::zeros({12, 10, 8}, torch::kLong);
  c.label[9][2][6] = 3;
  c.source = "case";
  BatchPatch fg{{4, 6, 4}, 1.0};
  for (uint64_t s = 0; s < 20; ++s) {
    auto o = patch_origin(c, fg, s);
    CHECK(o == std::array<int64_t, 3>{7, 0, 4});  // centre (9, 2, 6) - half the size, clamped at the borders
  }
  BatchPatch any{{4, 6, 4}, 0.0};
  std::set<std::array<int64_t, 3>> seen;
  for (uint64_t s = 0; s < 200; ++s) {
    auto o = patch_origin(c, any, s);
    CHECK(o[0] >= 0);
    CHECK(o[0] <= 8);
    CHECK(o[1] <= 4);
    CHECK(o[2] <= 4);
    seen.insert(o);
  }
  CHECK(seen.size() > 50);  // 9 x 5 x 5 = 225 origins possible
  CHECK(patch_origin(c, any, 7) == patch_origin(c, any, 7));
  std::vector<TrainingVolume> cases{c, c};
  Batch b = make_batch(cases, 2, 3, 0, false, {}, BatchPatch{{4, 6, 4}, 0.5});
  REQUIRE(b.x.sizes() == torch::IntArrayRef({2, 1, 4, 6, 4}));
  REQUIRE(b.seg.sizes() == torch::IntArrayRef({2, 4, 6, 4}));
  for (int64_t i = 0; i < 2; ++i) {
    // the value at the patch's corner says where it was cut; the label map was cut at the same place
    const auto v = static_cast<int64_t>(std::lround((b.x[i][0][0][0][0].item<double>() + 0.9) * 1000.0));
    const int64_t d = v / 80, h = (v / 8) % 10, w = v % 8;
    CHECK(torch::equal(b.seg[i], c.label.narrow(0, d, 4).narrow(1, h, 6).narrow(2, w, 4)));
  }
  meddiff::test::check_error([&] { patch_origin(c, BatchPatch{{13, 6, 4}, 0.5}, 1); }, {"case", "larger than the volume"});
}

TEST_CASE("multi-channel preprocess: each channel as alone - one crop box from the union foreground - channels off the grid refused") {
  DataParams p;
  p.modality = "mr";
  p.shape = {8, 10, 12};
  Geometry g = oblique_geometry();
  // two channels on one grid: ramps along world x and y (their own intensity ranges)
  Volume a = world_ramp(g, {14, 16, 18}, 0), b = world_ramp(g, {14, 16, 18}, 1);
  b.image = b.image * 10 + 500;
  auto both = preprocess(std::vector<Volume>{a, b}, p, 1, "case7");
  REQUIRE(both.x.sizes() == torch::IntArrayRef({2, 8, 10, 12}));
  REQUIRE(both.windows.size() == 2);
  for (size_t c = 0; c < 2; ++c) {  // centre crop: each channel exactly as it is preprocessed alone
    auto alone = preprocess(c == 0 ? a : b, p, 1, "case7");
    CHECK(torch::equal(both.x[static_cast<int64_t>(c)], alone.x[0]));
    CHECK(both.windows[c].lo == alone.windows[0].lo);
    CHECK(both.windows[c].hi == alone.windows[0].hi);
    CHECK(both.geometry.approx_equal(alone.geometry));
  }
  CHECK(both.windows[1].hi > both.windows[0].hi + 100);  // a window per channel, not one for all
  // foreground crop without a label map: a blob in each channel at opposite corners; the box holds both
  Volume fa, fb;
  fa.geometry = fb.geometry = g;
  fa.image = torch::zeros({20, 20, 20});
  fb.image = torch::zeros({20, 20, 20});
  using torch::indexing::Slice;
  fa.image.index_put_({Slice(2, 4), Slice(2, 4), Slice(2, 4)}, 1000.0);
  fb.image.index_put_({Slice(9, 11), Slice(9, 11), Slice(9, 11)}, 1000.0);
  p.shape = {12, 12, 12};
  p.crop = "foreground";
  p.mr_percentiles = {0.0, 100.0};
  auto fg = preprocess(std::vector<Volume>{fa, fb}, p, 0, "case8");
  CHECK(fg.x[0].max().item<double>() > 0.9);  // channel 0's blob is inside the box
  CHECK(fg.x[1].max().item<double>() > 0.9);  // and channel 1's
  auto only_a = preprocess(fa, p, 0, "case8");
  CHECK_FALSE(only_a.geometry.approx_equal(fg.geometry));  // channel 0 alone would be cut elsewhere
  // a channel on another grid is refused, naming the case and the channel
  Volume off = b;
  off.geometry.spacing[2] = 3.0;
  test::check_error([&] { preprocess(std::vector<Volume>{a, off}, p, 0, "case7"); }, {"case7", "channel 1", "grid"});
}

TEST_CASE("MR phantom sequences: one anatomy with the tissue contrasts of T1 - T1ce - T2 and FLAIR") {
  PhantomParams p;
  p.modality = Modality::MR;
  p.seed = 3;
  auto seq = make_phantom_sequences(p, 1, 1, {"t1", "t1ce", "t2", "flair"});
  REQUIRE(seq.size() == 4);
  auto anatomy = make_phantom(p, 1, 1);
  REQUIRE(seq[0].label.has_value());
  CHECK(torch::equal(*seq[0].label, *anatomy.label));  // the label map of the single-image phantom
  const auto& lab = *anatomy.label;
  auto med = [&](size_t s, int64_t l) { return seq[s].image.masked_select(lab == l).median().item<double>(); };
  using namespace phantom_label;
  enum { T1, T1CE, T2, FLAIR };
  CHECK(med(T1, kCavity) < 0.5 * med(T1, kOrgan));        // CSF dark in T1
  CHECK(med(FLAIR, kCavity) < 0.5 * med(FLAIR, kOrgan));  // and suppressed in FLAIR
  CHECK(med(T2, kCavity) > 1.8 * med(T2, kOrgan));        // bright in T2
  CHECK(med(T1CE, kLesion) > 1.5 * med(T1CE, kOrgan));    // the lesion enhances
  CHECK(med(T1, kLesion) < med(T1, kOrgan));              // hypointense without contrast
  CHECK(med(T2, kLesion) > 1.5 * med(T2, kOrgan));
  CHECK(med(FLAIR, kLesion) > 1.5 * med(FLAIR, kOrgan));
  CHECK(med(T1, kShell) > med(T1, kOrgan));               // fat-bright scalp in T1
  for (const auto& v : seq) CHECK(v.geometry.approx_equal(anatomy.geometry));
  CHECK(torch::equal(make_phantom_sequences(p, 1, 1, {"t2"})[0].image, seq[2].image));  // each sequence its own stream
  test::check_error([&] { make_phantom_sequences(p, 0, 0, {"t1", "dwi"}); }, {"dwi", "t1, t1ce, t2, flair"});
  p.modality = Modality::CT;
  test::check_error([&] { make_phantom_sequences(p, 0, 0, {"t1"}); }, {"MR"});
}

namespace {
// World coordinate `axis` (LPS mm) of every voxel centre, as a [D, H, W] tensor.
torch::Tensor world_coordinate(const Geometry& g, int64_t D, int64_t H, int64_t W, int axis) {
  auto t = torch::empty({D, H, W}, torch::kDouble);
  auto acc = t.accessor<double, 3>();
  for (int64_t k = 0; k < D; ++k)
    for (int64_t j = 0; j < H; ++j)
      for (int64_t i = 0; i < W; ++i) acc[k][j][i] = g.index_to_world(i, j, k)[static_cast<size_t>(axis)];
  return t;
}
}  // namespace

TEST_CASE("to_ras_xyz puts x towards the right and y anterior and z superior for any direction") {
  const double c = std::cos(0.2), s = std::sin(0.2);
  const std::vector<std::array<double, 9>> directions = {
      {1, 0, 0, 0, 1, 0, 0, 0, 1},     // LPS (ITK's identity)
      {-1, 0, 0, 0, -1, 0, 0, 0, 1},   // RAS (a NIfTI with affine diag(spacing))
      {0, 0, -1, 1, 0, 0, 0, -1, 0},   // sagittal slices: i posterior, j inferior, k right
      {c, -s, 0, s, c, 0, 0, 0, -1},   // oblique, slices towards the feet
  };
  for (const auto& d : directions) {
    Geometry g;
    g.direction = d;
    g.spacing = {0.8, 1.1, 2.5};
    g.origin = {10, -20, 30};
    const int64_t D = 4, H = 5, W = 6;
    const RasAxes a = ras_axes(g);
    auto R = to_ras_xyz(-world_coordinate(g, D, H, W, 0), a);  // right = -x in LPS
    auto A = to_ras_xyz(-world_coordinate(g, D, H, W, 1), a);  // anterior = -y
    auto S = to_ras_xyz(world_coordinate(g, D, H, W, 2), a);
    CHECK(R.diff(1, 0).min().item<double>() > 0);
    CHECK(A.diff(1, 1).min().item<double>() > 0);
    CHECK(S.diff(1, 2).min().item<double>() > 0);
    // the grid's sizes travel with their axes: the number of voxels along x is that of the index axis closest to L-R
    int64_t along_lr = 0;
    double best = -1;
    for (int col = 0; col < 3; ++col)
      if (std::abs(g.dir(0, col)) > best) {
        best = std::abs(g.dir(0, col));
        along_lr = std::array<int64_t, 3>{W, H, D}[static_cast<size_t>(col)];
      }
    CHECK(R.size(0) == along_lr);
    auto t = torch::arange(2 * D * H * W, torch::kFloat).reshape({2, 1, D, H, W});
    CHECK(torch::equal(from_ras_xyz(to_ras_xyz(t, a), a), t));
    // to_ras_grid: i, j, k along R, A, S, and every voxel (its value: the world x, y or z it had) where it was
    for (int axis = 0; axis < 3; ++axis) {
      Volume v;
      v.geometry = g;
      v.image = world_coordinate(g, D, H, W, axis).to(torch::kFloat);
      v.label = torch::arange(D * H * W, torch::kLong).reshape({D, H, W});
      Volume r = to_ras_grid(v);
      CHECK(r.label->numel() == D * H * W);
      CHECK((r.geometry.dir(0, 0) < -0.9 && r.geometry.dir(1, 1) < -0.9 && r.geometry.dir(2, 2) > 0.9));  // R = -x, A = -y, S = +z
      auto moved = world_coordinate(r.geometry, r.depth(), r.height(), r.width(), axis).to(torch::kFloat);
      CHECK((moved - r.image).abs().max().item<double>() < 1e-4);
    }
  }
  Geometry lps;
  auto t = torch::arange(24, torch::kFloat).reshape({2, 3, 4});  // [D, H, W]
  // identity LPS: x = reversed i, y = reversed j, z = k: out[x][y][z] = t[z][H-1-y][W-1-x]
  auto r = to_ras_xyz(t, ras_axes(lps));
  CHECK(r.sizes() == torch::IntArrayRef({4, 3, 2}));
  CHECK(r[0][0][0].item<float>() == t[0][2][3].item<float>());
  CHECK(r[1][2][1].item<float>() == t[1][0][2].item<float>());
}
