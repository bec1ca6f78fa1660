// Label maps for paired sampling: the latent condition, augmentation and edits, the per-pair check,
// the outline preview and the label-conditioned U-Net, each against values worked out by hand.
#include <doctest/doctest.h>

#include "data/label_augment.h"
#include "data/label_check.h"
#include "data/label_maps.h"
#include "data/label_statistics.h"
#include "data/preview.h"
#include "models/unet3d.h"
#include "test_support.h"

using namespace meddiff;
using torch::indexing::Slice;

namespace {

// A sphere of `value` with radius r (voxels) about c in `label`.
void sphere(torch::Tensor& label, std::array<double, 3> c, double r, int64_t value) {
  auto g = torch::meshgrid({torch::arange(label.size(0)), torch::arange(label.size(1)), torch::arange(label.size(2))}, "ij");
  auto d2 = (g[0] - c[0]).pow(2) + (g[1] - c[1]).pow(2) + (g[2] - c[2]).pow(2);
  label.masked_fill_(d2 <= r * r, value);
}

std::set<int64_t> values(const torch::Tensor& t) {
  auto u = std::get<0>(torch::_unique(t.flatten()));
  std::set<int64_t> out;
  for (int64_t i = 0; i < u.numel(); ++i) out.insert(u[i].item<int64_t>());
  return out;
}

}  // namespace

TEST_CASE("label fractions: each latent voxel holds the share of every label in its footprint") {
  auto label = torch::zeros({4, 4, 4}, torch::kLong);
  label.index_put_({Slice(0, 2), Slice(0, 2), Slice(0, 2)}, 1);  // one whole 2x2x2 block of label 1
  label.index_put_({3, 3, 3}, 2);                                // one voxel of label 2 in the opposite block
  auto f = label_fractions(label, 3, {2, 2, 2});
  REQUIRE((f.sizes() == torch::IntArrayRef({3, 2, 2, 2})));
  CHECK(f[1][0][0][0].item<double>() == doctest::Approx(1.0));
  CHECK(f[0][0][0][0].item<double>() == doctest::Approx(0.0));
  CHECK(f[2][1][1][1].item<double>() == doctest::Approx(1.0 / 8));
  CHECK(f[0][1][1][1].item<double>() == doctest::Approx(7.0 / 8));
  CHECK(torch::allclose(f.sum(0), torch::ones({2, 2, 2})));
  // anisotropic latent grids (factor 1 along D)
  CHECK((label_fractions(label, 3, {4, 2, 2}).sizes() == torch::IntArrayRef({3, 4, 2, 2})));
  test::check_error([&] { check_label_map(label, {4, 4, 4}, 2, "case_7.nii.gz"); }, {"case_7.nii.gz", "0..2", "label_names"});
  test::check_error([&] { check_label_map(label, {4, 4, 5}, 3, "case_7.nii.gz"); }, {"case_7.nii.gz", "grid"});
  CHECK(label_names_or_default({}, 3) == std::vector<std::string>{"background", "label_1", "label_2"});
}

TEST_CASE("subvoxel label condition: every image voxel's label under its latent voxel as one channel") {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
  auto label = torch::randint(0, 3, {4, 6, 8}, gen, torch::kLong);
  for (const std::array<int64_t, 3>& lat : {std::array<int64_t, 3>{2, 3, 4}, std::array<int64_t, 3>{4, 3, 2}}) {
    LabelCondition lc("subvoxel", 3, {4, 6, 8}, lat);
    const int64_t fd = 4 / lat[0], fh = 6 / lat[1], fw = 8 / lat[2];
    REQUIRE(lc.channels() == 3 * fd * fh * fw);
    auto c = lc(label);
    REQUIRE((c.sizes() == torch::IntArrayRef({lc.channels(), lat[0], lat[1], lat[2]})));
    auto a = c.accessor<float, 4>();
    auto l = label.accessor<int64_t, 3>();
    int64_t wrong = 0;
    for (int64_t ch = 0; ch < lc.channels(); ++ch)
      for (int64_t z = 0; z < lat[0]; ++z)
        for (int64_t y = 0; y < lat[1]; ++y)
          for (int64_t x = 0; x < lat[2]; ++x) {
            const int64_t lab = ch / (fd * fh * fw), sub = ch % (fd * fh * fw);
            const int64_t i = sub / (fh * fw), j = (sub / fw) % fh, k = sub % fw;
            const float want = l[z * fd + i][y * fh + j][x * fw + k] == lab ? 1.f : 0.f;
            wrong += a[ch][z][y][x] != want;
          }
    CHECK(wrong == 0);
    // a batch is its maps' conditions stacked
    auto pair = torch::stack({label, label.flip({0})});
    CHECK(torch::equal(lc(pair), torch::stack({c, lc(label.flip({0}))})));
    // the labels' shares, as the loss weighs them, are the fractions condition
    CHECK(torch::allclose(lc.fractions(c.unsqueeze(0))[0], label_fractions(label, 3, lat)));
  }
  LabelCondition fr("fractions", 3, {4, 6, 8}, {2, 3, 4});
  CHECK(fr.channels() == 3);
  CHECK(torch::equal(fr(label), label_fractions(label, 3, {2, 3, 4})));
  test::check_error([&] { LabelCondition("subvoxel", 3, {4, 6, 8}, {3, 3, 4}); }, {"ldm.label_condition", "divides"});
  test::check_error([&] { LabelCondition("voxels", 3, {4, 6, 8}, {2, 3, 4}); }, {"ldm.label_condition", "voxels"});
}

TEST_CASE("label augmentation: nearest neighbour (only input labels), deterministic, identity when off") {
  auto label = torch::zeros({16, 24, 24}, torch::kLong);
  sphere(label, {8, 12, 12}, 9, 2);
  sphere(label, {8, 12, 12}, 3, 3);
  sphere(label, {8, 12, 17}, 2, 4);
  LabelAugment off;
  off.flip_lr = false;
  off.rotate_deg = 0;
  off.scale = 0;
  off.elastic_mm = 0;
  CHECK(torch::equal(augment_label(label, {1, 1, 1.5}, off, at::make_generator<at::CPUGeneratorImpl>(1)), label));
  LabelAugment flip = off;
  flip.flip_lr = true;
  int flipped = 0;
  for (uint64_t s = 0; s < 8; ++s) {
    auto a = augment_label(label, {1, 1, 1.5}, flip, at::make_generator<at::CPUGeneratorImpl>(s));
    bool is_flip = torch::equal(a, label.flip({2})), same = torch::equal(a, label);
    CHECK((is_flip || same));
    flipped += is_flip && !same ? 1 : 0;
  }
  CHECK(flipped > 0);
  CHECK(flipped < 8);
  LabelAugment full;
  auto a = augment_label(label, {1, 1, 1.5}, full, at::make_generator<at::CPUGeneratorImpl>(5));
  auto b = augment_label(label, {1, 1, 1.5}, full, at::make_generator<at::CPUGeneratorImpl>(5));
  CHECK(torch::equal(a, b));
  CHECK_FALSE(torch::equal(a, label));
  CHECK(values(a) == values(label));  // no blended or new label values
  for (int64_t l : {2, 3, 4}) {
    double before = (label == l).sum().item<double>(), after = (a == l).sum().item<double>();
    INFO("label " << l << ": " << before << " -> " << after << " voxels");
    CHECK(after / before > 0.5);  // scaling within 0.9..1.1 (volume 0.73..1.33) and a 2 mm elastic field
    CHECK(after / before < 1.6);
  }
}

TEST_CASE("label edits: a removed lesion becomes the tissue around it and a scaled one grows by the cube") {
  auto label = torch::zeros({24, 24, 24}, torch::kLong);
  sphere(label, {12, 12, 12}, 10, 2);
  sphere(label, {12, 12, 12}, 3, 4);
  auto removed = remove_label(label, 4);
  CHECK((removed == 4).sum().item<int64_t>() == 0);
  CHECK(torch::equal(removed, torch::where(label == 4, torch::full_like(label, 2), label)));
  const double v0 = (label == 4).sum().item<double>();
  auto grown = scale_label(label, 4, 2.0);
  const double v1 = (grown == 4).sum().item<double>();
  INFO(v0 << " -> " << v1);
  CHECK(v1 / v0 == doctest::Approx(8.0).epsilon(0.2));
  CHECK(torch::equal(grown.masked_select(label != 4 & grown != 4), label.masked_select(label != 4 & grown != 4)));
  auto shrunk = scale_label(label, 4, 0.5);
  CHECK((shrunk == 4).sum().item<double>() < v0 / 4);
  CHECK((shrunk == 2).sum().item<double>() > (label == 2).sum().item<double>());  // the lesion's rim went back to brain
}

TEST_CASE("pair check: training ranges per label and synthetic medians outside them are named") {
  std::vector<TrainingVolume> train;
  for (double brain : {0.0, 0.1, 0.2}) {
    TrainingVolume v;
    v.label = torch::zeros({8, 8, 8}, torch::kLong);
    v.label.index_put_({Slice(2, 6), Slice(2, 6), Slice(2, 6)}, 1);
    v.x = torch::where(v.label == 1, torch::full({8, 8, 8}, brain), torch::full({8, 8, 8}, -1.0)).unsqueeze(0).to(torch::kFloat);
    train.push_back(v);
  }
  auto ranges = fit_label_ranges(train, 3);
  REQUIRE(ranges.ranges.size() == 2);  // label 2 never occurs
  const auto& brain = ranges.ranges[1];
  CHECK(brain.label == 1);
  CHECK(brain.lo == doctest::Approx(0.0 - 0.05));  // spread 0.2: margin max(0.05, 0.25 * 0.2)
  CHECK(brain.hi == doctest::Approx(0.2 + 0.05));
  CHECK(brain.cases == 3);
  LabelIntensityRanges other;
  other.ranges = {{1, 0.5, 0.7, 0.6, 2}, {2, -0.2, 0.1, 0.0, 1}};
  auto merged = merge_label_ranges(ranges, other);
  REQUIRE(merged.ranges.size() == 3);
  CHECK(merged.ranges[1].lo == doctest::Approx(-0.05));
  CHECK(merged.ranges[1].hi == doctest::Approx(0.7));
  CHECK(merged.ranges[2].label == 2);
  auto back = LabelIntensityRanges::from_json(ranges.to_json());
  CHECK(back.ranges[1].hi == doctest::Approx(brain.hi));
  IntensityWindow hu{-1000, 1000};
  auto label = train[0].label;
  auto good = torch::where(label == 1, torch::full({8, 8, 8}, 0.15), torch::full({8, 8, 8}, -1.0)).to(torch::kFloat);
  CHECK(check_pair(good, label, ranges, {"air", "brain", "lesion"}, hu).passed);
  auto bad = torch::where(label == 1, torch::full({8, 8, 8}, 0.6), torch::full({8, 8, 8}, -1.0)).to(torch::kFloat);
  auto pc = check_pair(bad, label, ranges, {"air", "brain", "lesion"}, hu);
  CHECK_FALSE(pc.passed);
  CHECK(pc.failed.find("brain: median 600 outside [-50, 250]") != std::string::npos);
  CHECK(pc.detail.size() == 2);
}

TEST_CASE("pair check with several channels: a range per label and channel - the failing channel is named") {
  std::vector<TrainingVolume> train;
  for (double shift : {0.0, 0.1}) {
    TrainingVolume v;
    v.label = torch::zeros({8, 8, 8}, torch::kLong);
    v.label.index_put_({Slice(2, 6), Slice(2, 6), Slice(2, 6)}, 1);
    auto inside = v.label == 1;
    // channel 0: the label at 0.0 / 0.1; channel 1: at -0.5 / -0.4
    v.x = torch::stack({torch::where(inside, torch::full({8, 8, 8}, shift), torch::full({8, 8, 8}, -1.0)),
                        torch::where(inside, torch::full({8, 8, 8}, shift - 0.5), torch::full({8, 8, 8}, -1.0))})
              .to(torch::kFloat);
    train.push_back(v);
  }
  auto ranges = fit_label_ranges(train, 2);
  REQUIRE(ranges.ranges.size() == 4);  // labels 0 and 1, each in 2 channels
  auto r11 = std::find_if(ranges.ranges.begin(), ranges.ranges.end(), [](const LabelRange& r) { return r.label == 1 && r.channel == 1; });
  REQUIRE(r11 != ranges.ranges.end());
  CHECK(r11->lo == doctest::Approx(-0.5 - 0.05));
  CHECK(r11->hi == doctest::Approx(-0.4 + 0.05));
  auto back = LabelIntensityRanges::from_json(ranges.to_json());
  CHECK(back.ranges[static_cast<size_t>(r11 - ranges.ranges.begin())].channel == 1);
  auto label = train[0].label;
  auto inside = label == 1;
  auto good = train[1].x.clone();
  CHECK(check_pair(good, label, ranges, {"bg", "lesion"}, {-1000, 1000}, {"t1", "flair"}).passed);
  auto bad = good.clone();
  bad[1].masked_fill_(inside, 0.3);  // flair wrong, t1 right
  auto pc = check_pair(bad, label, ranges, {"bg", "lesion"}, {-1000, 1000}, {"t1", "flair"});
  CHECK_FALSE(pc.passed);
  CHECK(pc.failed.find("lesion in flair: median 300") != std::string::npos);
  CHECK(pc.failed.find("in t1") == std::string::npos);
}

TEST_CASE("outline preview: label boundaries are white over the image") {
  auto label = torch::zeros({9, 9, 9}, torch::kLong);
  label.index_put_({Slice(2, 7), Slice(2, 7), Slice(2, 7)}, 1);
  auto image = torch::full({9, 9, 9}, 0.0);
  Geometry g;
  auto plain = orthogonal_panel(image, g, {-1, 1});
  auto with = contour_panel(image, label, g, {-1, 1});
  CHECK((plain.sizes() == with.sizes()));
  CHECK((plain == 255).sum().item<int64_t>() == 0);
  CHECK((with == 255).sum().item<int64_t>() > 0);
  CHECK(with[0][0].item<int64_t>() == plain[0][0].item<int64_t>());  // away from the label: the image
}

TEST_CASE("label-conditioned U-Net: the condition joins the input and zeros are the null condition") {
  UNetParams p;
  p.base_channels = 8;
  p.channel_mults = {1, 2};
  p.downsample = {{2, 2, 2}};
  p.attention_levels = {1};
  p.attention_heads = 2;
  torch::manual_seed(0);
  UNet3d net(p, 4, 2, 5);
  net->eval();
  torch::NoGradGuard ng;
  net->conv_out->weight.normal_(0, 0.1);  // zero at initialisation (the usual diffusion U-Net start)
  auto x = torch::randn({1, 4, 8, 8, 8});
  auto t = torch::full({1}, 10, torch::kLong);
  auto c = torch::ones({1}, torch::kLong);
  auto cond = torch::softmax(torch::randn({1, 5, 8, 8, 8}), 1);
  auto with = net->forward(x, t, c, cond);
  CHECK((with.sizes() == x.sizes()));
  CHECK(torch::equal(net->forward(x, t, c), net->forward(x, t, c, torch::zeros_like(cond))));
  CHECK_FALSE(torch::allclose(with, net->forward(x, t, c)));
  CHECK(net->conv_in->weight.size(1) == 9);
}

TEST_CASE("edge step and agreement: the intensity step across a label's boundary and where the image's edge lies - sharp - softened - shifted - summarised over volumes") {
  // a 6^3 cube label (value 2) in a 16^3 volume, 100 inside and 20 outside: the step is 80
  auto label = torch::zeros({16, 16, 16}, torch::kLong);
  label.index_put_({Slice(5, 11), Slice(5, 11), Slice(5, 11)}, 2);
  auto sharp = torch::full({16, 16, 16}, 20.0, torch::kDouble).masked_fill(label == 2, 100.0);
  REQUIRE(edge_measures(sharp, label == 2).has_value());
  CHECK(edge_measures(sharp, label == 2)->step == doctest::Approx(80.0));
  CHECK(edge_measures(sharp, label == 2)->agreement == doctest::Approx(1.0));
  // softened: the label's outer layer at 60, the ring just outside at 40 -> 60 - 40 = 20 (the shells are exactly those)
  auto soft = sharp.clone();
  auto in = label == 2;
  auto core = torch::zeros_like(in);
  core.index_put_({Slice(6, 10), Slice(6, 10), Slice(6, 10)}, true);
  auto ring = torch::zeros_like(in);
  ring.index_put_({Slice(4, 12), Slice(4, 12), Slice(4, 12)}, true);
  soft.masked_fill_(in & core.logical_not(), 60.0);
  soft.masked_fill_(ring & in.logical_not(), 40.0);
  CHECK(edge_measures(soft, label == 2)->step == doctest::Approx(20.0));
  CHECK(edge_measures(soft, label == 2)->agreement == doctest::Approx(1.0));  // softer, but the edge where the label's is
  // the image's cube one voxel off the label's: inner shell 116 of 152 voxels at 100, outer shell 260 of 296 at 20, so
  // the threshold is 60; the shifted cube (216 voxels) lies within a voxel of the label and shares 5 of its 6 planes
  // with it: Dice 2 * 180 / (216 + 216) = 5/6
  auto shifted = torch::full({16, 16, 16}, 20.0, torch::kDouble);
  shifted.index_put_({Slice(6, 12), Slice(5, 11), Slice(5, 11)}, 100.0);
  REQUIRE(edge_measures(shifted, label == 2).has_value());
  CHECK(edge_measures(shifted, label == 2)->step == doctest::Approx(80.0));
  CHECK(edge_measures(shifted, label == 2)->agreement == doctest::Approx(5.0 / 6.0));
  // a dark label (step < 0) thresholds below the midpoint
  CHECK(edge_measures(120.0 - shifted, label == 2)->agreement == doctest::Approx(5.0 / 6.0));
  // a label absent or too small has no step
  CHECK_FALSE(edge_measures(sharp, label == 3).has_value());
  auto tiny = torch::zeros({16, 16, 16}, torch::kLong);
  tiny.index_put_({8, 8, 8}, 1);
  CHECK_FALSE(edge_measures(sharp, tiny == 1, 8).has_value());
  // over volumes: mean and sd of the steps; the background (label 0) gets none
  LabelSamples samples;
  samples.add(sharp, label);
  samples.add(soft, label);
  auto st = samples.summary(3);
  CHECK(st[2].edge_volumes == 2);
  CHECK(st[2].edge_step_mean == doctest::Approx(50.0));
  CHECK(st[2].edge_step_sd == doctest::Approx(std::sqrt(2.0 * 30.0 * 30.0)));
  CHECK(st[2].edge_agreement_mean == doctest::Approx(1.0));
  samples.add(shifted, label);
  CHECK(samples.summary(3)[2].edge_agreement_mean == doctest::Approx((2.0 + 5.0 / 6.0) / 3.0));
  CHECK(st[0].edge_volumes == 0);
  CHECK(st[1].edge_volumes == 0);
}
