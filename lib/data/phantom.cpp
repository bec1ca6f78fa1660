#include "data/phantom.h"

#include "core/error.h"

#include <cmath>
#include <map>
#include <random>

namespace meddiff {
namespace {

namespace L = phantom_label;

// Portable uniform draws from a 64-bit Mersenne twister (std distributions differ between libraries).
class Draw {
 public:
  explicit Draw(uint64_t seed) : rng_(seed) {}
  double uniform(double lo, double hi) { return lo + (hi - lo) * static_cast<double>(rng_() >> 11) * 0x1.0p-53; }
  int64_t integer(int64_t lo, int64_t hi) { return lo + static_cast<int64_t>(rng_() % static_cast<uint64_t>(hi - lo + 1)); }
  uint64_t next() { return rng_(); }

 private:
  std::mt19937_64 rng_;
};

// Millimetre coordinates of every voxel centre relative to the volume centre: z, y, x each [D, H, W].
struct Grid {
  torch::Tensor z, y, x;
  std::array<double, 3> half_extent;  // mm, x, y, z
};

Grid make_grid(const PhantomParams& p) {
  auto axis = [](int64_t n, double sp) { return (torch::arange(n, torch::kFloat) - 0.5f * (n - 1)) * sp; };
  auto m = torch::meshgrid({axis(p.shape[0], p.spacing[2]), axis(p.shape[1], p.spacing[1]), axis(p.shape[2], p.spacing[0])}, "ij");
  return {m[0], m[1], m[2],
          {0.5 * p.shape[2] * p.spacing[0], 0.5 * p.shape[1] * p.spacing[1], 0.5 * p.shape[0] * p.spacing[2]}};
}

// Normalised squared radius of an axis-aligned ellipsoid: < 1 inside.
torch::Tensor ellipsoid(const Grid& g, std::array<double, 3> c, std::array<double, 3> a) {
  return ((g.x - c[0]) / a[0]).square() + ((g.y - c[1]) / a[1]).square() + ((g.z - c[2]) / a[2]).square();
}

// A smooth random field in [-1, 1]: coarse noise upsampled trilinearly.
torch::Tensor smooth_field(const PhantomParams& p, torch::Generator& gen, int64_t coarse) {
  auto c = torch::rand({1, 1, coarse, coarse, coarse}, gen) * 2 - 1;
  namespace F = torch::nn::functional;
  return F::interpolate(c, F::InterpolateFuncOptions()
                               .size(std::vector<int64_t>{p.shape[0], p.shape[1], p.shape[2]})
                               .mode(torch::kTrilinear)
                               .align_corners(true))
      .squeeze(0)
      .squeeze(0);
}

void paint(torch::Tensor& image, torch::Tensor& label, const torch::Tensor& mask, double value, int64_t lab) {
  image.masked_fill_(mask, value);
  label.masked_fill_(mask, lab);
}

// Centres for 1-3 spheres of radius r (mm) whose centre lies where `allowed` holds.
std::vector<std::array<double, 3>> pick_centres(const Grid& g, const torch::Tensor& allowed, int64_t n, Draw& d) {
  std::vector<std::array<double, 3>> out;
  auto idx = allowed.nonzero();  // [N, 3]
  if (idx.size(0) == 0) return out;
  for (int64_t i = 0; i < n; ++i) {
    int64_t k = d.integer(0, idx.size(0) - 1);
    auto v = idx[k];
    int64_t z = v[0].item<int64_t>(), y = v[1].item<int64_t>(), x = v[2].item<int64_t>();
    out.push_back({g.x[z][y][x].item<double>(), g.y[z][y][x].item<double>(), g.z[z][y][x].item<double>()});
  }
  return out;
}

Volume mr_head(const PhantomParams& p, Draw& d, torch::Generator& gen, int64_t cls) {
  Grid g = make_grid(p);
  const auto& h = g.half_extent;
  double s = d.uniform(0.86, 0.98);
  std::array<double, 3> c{d.uniform(-0.04, 0.04) * h[0], d.uniform(-0.04, 0.04) * h[1], d.uniform(-0.03, 0.03) * h[2]};
  std::array<double, 3> head{0.80 * h[0] * s, 0.88 * h[1] * s, 0.80 * h[2] * s};
  double shell = d.uniform(0.12, 0.18);
  std::array<double, 3> brain{head[0] * (1 - shell), head[1] * (1 - shell), head[2] * (1 - shell)};

  auto image = torch::zeros({p.shape[0], p.shape[1], p.shape[2]});
  auto label = torch::zeros({p.shape[0], p.shape[1], p.shape[2]}, torch::kLong);
  auto in_head = ellipsoid(g, c, head) <= 1;
  auto in_brain = ellipsoid(g, c, brain) <= 1;
  paint(image, label, in_head, 260 * d.uniform(0.85, 1.15), L::kShell);
  auto brain_level = 600 * d.uniform(0.9, 1.1);
  image = torch::where(in_brain, brain_level * (1 + 0.05 * smooth_field(p, gen, 5)), image);
  label.masked_fill_(in_brain, L::kOrgan);

  double dx = brain[0] * d.uniform(0.10, 0.16);
  std::array<double, 3> vent{brain[0] * d.uniform(0.07, 0.10), brain[1] * d.uniform(0.22, 0.32), brain[2] * d.uniform(0.12, 0.18)};
  auto in_vent = (ellipsoid(g, {c[0] - dx, c[1], c[2]}, vent) <= 1) | (ellipsoid(g, {c[0] + dx, c[1], c[2]}, vent) <= 1);
  in_vent &= in_brain;
  paint(image, label, in_vent, 120 * d.uniform(0.8, 1.2), L::kCavity);

  if (cls == 1) {
    double min_axis = std::min({brain[0], brain[1], brain[2]});
    double min_r = 1.5 * std::max({p.spacing[0], p.spacing[1], p.spacing[2]});
    auto allowed = (ellipsoid(g, c, {brain[0] * 0.7, brain[1] * 0.7, brain[2] * 0.7}) <= 1) & ~in_vent;
    // 1-2 tumour-like lesions of 25-38 % of the brain's smallest semi-axis (a radius of 2.5-4 voxels at
    // 32^3): large enough to survive the 2x downsampling of the demo's autoencoder.
    for (const auto& lc : pick_centres(g, allowed, d.integer(1, 2), d)) {
      double r = std::max(min_r, min_axis * d.uniform(0.25, 0.38));
      auto lesion = (ellipsoid(g, lc, {r, r, r}) <= 1) & in_brain & ~in_vent;
      paint(image, label, lesion, 1050 * d.uniform(0.9, 1.1), L::kLesion);
    }
  }
  // Multiplicative bias field (+-8 %) and Rician-like noise (magnitude of a noisy signal).
  auto bias = 1 + 0.08 * smooth_field(p, gen, 3);
  image = image * bias;
  double sigma = 12.0;
  auto n1 = torch::randn(image.sizes(), gen) * sigma, n2 = torch::randn(image.sizes(), gen) * sigma;
  image = ((image + n1).square() + n2.square()).sqrt().round();
  Volume v;
  v.image = image;
  v.label = label;
  v.modality = Modality::MR;
  return v;
}

Volume ct_chest(const PhantomParams& p, Draw& d, torch::Generator& gen, int64_t cls) {
  Grid g = make_grid(p);
  const auto& h = g.half_extent;
  double s = d.uniform(0.85, 0.97);
  std::array<double, 3> c{d.uniform(-0.03, 0.03) * h[0], d.uniform(-0.03, 0.03) * h[1], 0.0};
  double bx = 0.90 * h[0] * s, by = 0.72 * h[1] * s;  // chest: wider than deep
  auto body_r2 = ((g.x - c[0]) / bx).square() + ((g.y - c[1]) / by).square();

  auto image = torch::full({p.shape[0], p.shape[1], p.shape[2]}, -1000.0);
  auto label = torch::zeros({p.shape[0], p.shape[1], p.shape[2]}, torch::kLong);
  auto in_body = body_r2 <= 1;
  paint(image, label, in_body, 40 * d.uniform(0.7, 1.3), L::kSoftTissue);

  std::array<double, 3> lung{0.34 * bx * d.uniform(0.9, 1.1), 0.60 * by * d.uniform(0.9, 1.1), 0.85 * h[2]};
  double lx = 0.44 * bx, ly = c[1] - 0.06 * by;
  auto in_lungs = ((ellipsoid(g, {c[0] - lx, ly, 0}, lung) <= 1) | (ellipsoid(g, {c[0] + lx, ly, 0}, lung) <= 1)) & in_body;
  auto lung_level = -850 * d.uniform(0.95, 1.05);
  image = torch::where(in_lungs, lung_level + 25 * smooth_field(p, gen, 5), image);
  label.masked_fill_(in_lungs, L::kLung);

  // Spine (posterior = +y in LPS) and ribs: bands of a thin shell inside the body wall.
  double sr = 0.16 * by * d.uniform(0.9, 1.1);
  auto spine = ((g.x - c[0]).square() + (g.y - (c[1] + 0.68 * by)).square()) <= sr * sr;
  double period = std::max(12.0, 4 * p.spacing[2]) * d.uniform(0.9, 1.2), phase = d.uniform(0, 6.283);
  auto band = torch::sin(g.z * (6.283185307 / period) + phase) > 0.1;
  auto shell = (body_r2 >= 0.80 * 0.80) & (body_r2 <= 0.88 * 0.88);
  auto sternum_gap = ((g.x - c[0]).abs() < 0.12 * bx) & (g.y < c[1]);
  auto bone = (spine | (shell & band & ~sternum_gap)) & in_body;
  paint(image, label, bone, 700 * d.uniform(0.85, 1.15), L::kBone);

  if (cls == 1) {
    double min_r = 1.5 * std::max({p.spacing[0], p.spacing[1], p.spacing[2]});
    auto core = ((ellipsoid(g, {c[0] - lx, ly, 0}, {lung[0] * .6, lung[1] * .6, lung[2] * .6}) <= 1) |
                 (ellipsoid(g, {c[0] + lx, ly, 0}, {lung[0] * .6, lung[1] * .6, lung[2] * .6}) <= 1));
    for (const auto& nc : pick_centres(g, core & in_lungs, d.integer(1, 3), d)) {
      double r = std::max(min_r, std::min(lung[0], lung[1]) * d.uniform(0.16, 0.28));
      auto nodule = (ellipsoid(g, nc, {r, r, r}) <= 1) & in_lungs;
      paint(image, label, nodule, 30 + 10 * d.uniform(-1, 1), L::kNodule);
    }
  }
  image = (image + torch::randn(image.sizes(), gen) * 12.0).round().clamp(-1024, 3071);
  Volume v;
  v.image = image;
  v.label = label;
  v.modality = Modality::CT;
  return v;
}

}  // namespace

void PhantomParams::validate() const {
  if (modality == Modality::Unknown) fail("phantoms: modality must be mr or ct");
  for (auto n : shape)
    if (n < 8 || n > 1024) fail("phantoms: each dimension of --shape must be within 8..1024 (got {})", n);
  for (auto s : spacing)
    if (!(s > 0 && s < 100)) fail("phantoms: --spacing values must be within (0, 100) mm (got {})", s);
}

Volume make_phantom(const PhantomParams& p, int64_t index, int64_t class_label) {
  p.validate();
  if (class_label < 0 || class_label > 1) fail("phantoms: class must be 0 or 1 (got {})", class_label);
  // One stream per case: cases are independent of how many others are generated.
  uint64_t case_seed = p.seed * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(index) * 0xBF58476D1CE4E5B9ULL + 1;
  Draw d(case_seed);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(d.next());
  torch::NoGradGuard ng;
  Volume v = p.modality == Modality::MR ? mr_head(p, d, gen, class_label) : ct_chest(p, d, gen, class_label);
  v.image = v.image.to(torch::kFloat).contiguous();
  v.geometry.spacing = p.spacing;
  // Centre the volume on the world origin; identity direction (LPS).
  for (int a = 0; a < 3; ++a) {
    int64_t n = p.shape[static_cast<size_t>(2 - a)];
    v.geometry.origin[static_cast<size_t>(a)] = -0.5 * static_cast<double>(n - 1) * p.spacing[static_cast<size_t>(a)];
  }
  return v;
}

std::vector<std::string> phantom_label_names(Modality m) {
  if (m == Modality::CT) return {"air", "soft_tissue", "lung", "bone", "nodule"};
  return {"background", "skull", "brain", "ventricles", "lesion"};
}

const std::vector<std::string>& phantom_sequences() {
  static const std::vector<std::string> names{"t1", "t1ce", "t2", "flair"};
  return names;
}

std::vector<Volume> make_phantom_sequences(const PhantomParams& p, int64_t index, int64_t class_label,
                                           const std::vector<std::string>& sequences) {
  if (p.modality != Modality::MR) fail("phantoms: MR sequences need --modality mr");
  if (sequences.empty()) fail("phantoms: no sequence named");
  // intensity per label (background, skull/scalp, brain, ventricles, lesion) of each sequence
  static const std::map<std::string, std::array<double, 5>> levels{
      {"t1", {0, 700, 600, 150, 420}},
      {"t1ce", {0, 720, 620, 160, 1100}},
      {"t2", {0, 380, 520, 1250, 1000}},
      {"flair", {0, 330, 480, 90, 1050}},
  };
  Volume anatomy = make_phantom(p, index, class_label);
  const auto label = *anatomy.label;
  std::vector<Volume> out;
  torch::NoGradGuard ng;
  for (size_t k = 0; k < sequences.size(); ++k) {
    auto it = levels.find(sequences[k]);
    if (it == levels.end())
      fail("phantoms: unknown MR sequence '{}' (known: {})", sequences[k], fmt::join(phantom_sequences(), ", "));
    for (size_t j = 0; j < k; ++j)
      if (sequences[j] == sequences[k]) fail("phantoms: sequence '{}' named twice", sequences[k]);
    // one stream per (case, sequence); the name hashed with FNV-1a (std::hash differs between libraries)
    uint64_t name_hash = 0xCBF29CE484222325ULL;
    for (unsigned char ch : sequences[k]) name_hash = (name_hash ^ ch) * 0x100000001B3ULL;
    uint64_t seq_seed = p.seed * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(index) * 0xBF58476D1CE4E5B9ULL +
                        name_hash * 0x94D049BB133111EBULL + 7;
    Draw d(seq_seed);
    auto gen = at::make_generator<at::CPUGeneratorImpl>(d.next());
    const double scale = d.uniform(0.9, 1.1);  // scanner gain of this acquisition
    auto lut = torch::tensor(std::vector<float>(it->second.begin(), it->second.end())) * scale;
    auto image = lut.index({label});
    auto brain = label == phantom_label::kOrgan;
    image = torch::where(brain, image * (1 + 0.05 * smooth_field(p, gen, 5)), image);  // tissue texture
    image = image * (1 + 0.08 * smooth_field(p, gen, 3));                            // bias field
    const double sigma = 12.0;  // Rician-like noise: the magnitude of a noisy signal
    auto n1 = torch::randn(image.sizes(), gen) * sigma, n2 = torch::randn(image.sizes(), gen) * sigma;
    Volume v;
    v.image = ((image + n1).square() + n2.square()).sqrt().round().to(torch::kFloat).contiguous();
    v.geometry = anatomy.geometry;
    v.modality = Modality::MR;
    if (k == 0) v.label = label;
    out.push_back(std::move(v));
  }
  return out;
}

}  // namespace meddiff
