#include "pipeline/downstream_seg.h"

#include "core/error.h"
#include "data/batches.h"
#include "data/surface_distance.h"
#include "models/seg_unet.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>

namespace meddiff {

void DownstreamParams::validate() const {
  if (iterations < 1 || iterations > 1000000) fail("downstream: iterations must be within 1..1000000 (got {})", iterations);
  if (batch < 1 || batch > 64) fail("downstream: the batch must be within 1..64 (got {})", batch);
  if (!(lr > 0 && lr < 1)) fail("downstream: the learning rate must be within (0, 1) (got {})", lr);
  if (seeds < 1 || seeds > 16) fail("downstream: seeds must be within 1..16 (got {})", seeds);
  if (!(synthetic_share >= 0 && synthetic_share <= 1)) fail("downstream: the synthetic share must be within [0, 1] (got {})", synthetic_share);
  if (base_channels < 4 || levels < 1 || levels > 5) fail("downstream: base channels >= 4 and 1..5 levels needed");
  if (!(lr_poly >= 0 && lr_poly <= 4)) fail("downstream: the learning-rate decay exponent must be within [0, 4] (got {})", lr_poly);
  if (!(min_effect >= 0 && min_effect < 1)) fail("downstream: the minimum effect must be within [0, 1) (got {})", min_effect);
  if (!(weight_power >= 0 && weight_power <= 2)) fail("downstream: the class weight power must be within [0, 2] (got {})", weight_power);
}

nlohmann::json DownstreamParams::to_json() const {
  return {{"iterations", iterations}, {"batch", batch}, {"lr", lr}, {"lr_poly", lr_poly}, {"seeds", seeds}, {"synthetic_share", synthetic_share},
          {"base_channels", base_channels}, {"levels", levels}, {"class_weight_power", weight_power}, {"min_effect", min_effect}};
}

namespace {

const char* const kConfigs[3] = {"real", "real+synthetic", "synthetic"};

// Cross-entropy weighted by 1 / label frequency^weight_power (0.5: 1 / sqrt) (small labels are learned within a short budget)
// + soft Dice over the labels other than the background (batch Dice).
torch::Tensor seg_loss(const torch::Tensor& logits, const torch::Tensor& y, int64_t K, const torch::Tensor& class_weight) {
  auto ce = torch::nn::functional::cross_entropy(logits, y, torch::nn::functional::CrossEntropyFuncOptions().weight(class_weight));
  auto prob = torch::softmax(logits, 1);                                       // [B, K, D, H, W]
  auto onehot = torch::one_hot(y, K).permute({0, 4, 1, 2, 3}).to(prob.dtype());  // [B, K, D, H, W]
  std::vector<int64_t> dims{0, 2, 3, 4};
  auto inter = (prob * onehot).sum(dims), denom = prob.sum(dims) + onehot.sum(dims);
  auto dice = (2 * inter + 1e-5) / (denom + 1e-5);  // [K]
  return ce + (1 - dice.slice(0, 1, K).mean());
}

SegUNet train_run(const std::vector<const SegCase*>& real, const std::vector<const SegCase*>& synth, double share, uint64_t seed,
                  const DownstreamParams& p, const torch::Device& device, int64_t channels, int64_t K) {
  torch::manual_seed(step_seed(seed, -1, 0x5e6d));  // the initial weights
  SegUNet net(channels, K, p.base_channels, p.levels);
  net->to(device);
  net->train();
  torch::optim::Adam opt(net->parameters(), torch::optim::AdamOptions(p.lr));
  // label frequencies over the training cases (every label at least one voxel's worth)
  auto counts = torch::ones({K}, torch::kDouble);
  for (const auto* set : {&real, &synth})
    for (const auto* c : *set) counts += torch::bincount(c->label.flatten(), {}, K).to(torch::kDouble);
  auto freq = counts / counts.sum();
  auto weight = freq.pow(-p.weight_power);
  weight = (weight / (weight * freq).sum()).to(torch::kFloat).to(device);  // the average voxel weighs 1
  for (int64_t it = 0; it < p.iterations; ++it) {
    if (p.lr_poly > 0) {
      const double lr = p.lr * std::pow(1.0 - static_cast<double>(it) / static_cast<double>(p.iterations), p.lr_poly);
      for (auto& g : opt.param_groups()) static_cast<torch::optim::AdamOptions&>(g.options()).lr(lr);
    }
    std::vector<torch::Tensor> xs, ys;
    for (int64_t slot = 0; slot < p.batch; ++slot) {
      auto gen = at::make_generator<at::CPUGeneratorImpl>(sample_seed(seed, it, 0x5e6d, slot));
      auto u = torch::rand({5}, gen, torch::kDouble);
      const bool from_synth = real.empty() || (!synth.empty() && u[0].item<double>() < share);
      const auto& set = from_synth ? synth : real;
      const auto* c = set[std::min(set.size() - 1, static_cast<size_t>(u[1].item<double>() * static_cast<double>(set.size())))];
      auto x = c->x, y = c->label;
      for (int64_t a = 0; a < 3; ++a)  // random flips along each axis
        if (u[2 + a].item<double>() < 0.5) {
          x = x.flip({a + 1});
          y = y.flip({a});
        }
      xs.push_back(x);
      ys.push_back(y);
    }
    auto xb = torch::stack(xs).to(device), yb = torch::stack(ys).to(device);
    opt.zero_grad();
    auto loss = seg_loss(net->forward(xb), yb, K, weight);
    loss.backward();
    opt.step();
  }
  net->eval();
  return net;
}

// Per held-out case and label 1..K-1: the score.
std::vector<std::vector<SegmentationScore>> score_run(SegUNet& net, const std::vector<SegCase>& held_out, int64_t K,
                                                      const torch::Device& device) {
  torch::NoGradGuard ng;
  std::vector<std::vector<SegmentationScore>> out;
  for (const auto& c : held_out) {
    auto pred = net->forward(c.x.unsqueeze(0).to(device)).argmax(1)[0].to(torch::kCPU);
    std::vector<SegmentationScore> row;
    for (int64_t l = 1; l < K; ++l) row.push_back(score_label(pred, c.label, l, c.spacing));
    out.push_back(row);
  }
  return out;
}

struct Stat {
  std::vector<double> seeds;  // per seed
  double mean() const {
    double s = 0;
    for (double v : seeds) s += v;
    return seeds.empty() ? 0 : s / static_cast<double>(seeds.size());
  }
  double range() const { return seeds.empty() ? 0 : *std::max_element(seeds.begin(), seeds.end()) - *std::min_element(seeds.begin(), seeds.end()); }
  nlohmann::json json() const { return {{"mean", mean()}, {"seeds", seeds}}; }
};

}  // namespace

std::string gain_verdict(double gain, double seed_spread, double min_effect) {
  // a change smaller than the minimum effect is no change, however steady (Dice 0.99996 -> 0.99974 is not a hurt)
  const double threshold = std::max(seed_spread, min_effect);
  return gain < -threshold ? "hurts" : gain > threshold ? "helps" : "within the seed spread";
}

nlohmann::json downstream_segmentation(const std::vector<SegCase>& real_train, const std::vector<SegCase>& synthetic,
                                       const std::vector<SegCase>& held_out, int64_t K, const std::vector<std::string>& names,
                                       const DownstreamParams& p, const torch::Device& device,
                                       const std::function<void(const std::string&)>& on_run) {
  p.validate();
  if (K < 2) fail("downstream: the label maps hold no label besides the background");
  if (held_out.empty()) fail("downstream: no held-out real cases with label maps to score on");
  if (real_train.empty() && synthetic.empty()) fail("downstream: neither real nor synthetic training pairs");
  const int64_t channels = held_out.front().x.size(0);
  auto check = [&](const std::vector<SegCase>& set, const char* what) {
    for (const auto& c : set) {
      if (c.x.dim() != 4 || c.x.size(0) != channels || c.label.sizes() != c.x.sizes().slice(1))
        fail("downstream: {} case {} has an image [{}] and a label map [{}] that do not match the held-out cases' {} channel(s)", what,
             c.name, fmt::join(c.x.sizes(), ", "), fmt::join(c.label.sizes(), ", "), channels);
      if (c.label.min().item<int64_t>() < 0 || c.label.max().item<int64_t>() >= K)
        fail("downstream: {} case {} has labels outside 0..{}", what, c.name, K - 1);
    }
  };
  check(real_train, "real training");
  check(synthetic, "synthetic");
  check(held_out, "held-out");
  std::vector<const SegCase*> real, synth;
  for (const auto& c : real_train) real.push_back(&c);
  for (const auto& c : synthetic) synth.push_back(&c);
  // config -> label -> (dice, assd, hd95) per seed
  std::map<std::string, std::vector<std::array<Stat, 3>>> stats;
  std::vector<int64_t> present(static_cast<size_t>(K - 1), 0);  // held-out cases holding each label
  for (const auto& c : held_out)
    for (int64_t l = 1; l < K; ++l) present[static_cast<size_t>(l - 1)] += (c.label == l).any().item<bool>() ? 1 : 0;
  for (int ci = 0; ci < 3; ++ci) {
    const std::string cfg = kConfigs[ci];
    if ((ci < 2 && real.empty()) || (ci > 0 && synth.empty())) continue;
    auto& per_label = stats[cfg];
    per_label.resize(static_cast<size_t>(K - 1));
    for (int64_t s = 0; s < p.seeds; ++s) {
      if (on_run) on_run(fmt::format("{} (seed {})", cfg, s));
      auto net = train_run(ci == 2 ? std::vector<const SegCase*>{} : real, ci == 0 ? std::vector<const SegCase*>{} : synth,
                           ci == 1 ? p.synthetic_share : 1.0, static_cast<uint64_t>(s), p, device, channels, K);
      auto scores = score_run(net, held_out, K, device);
      for (int64_t l = 1; l < K; ++l) {
        double dice = 0, assd = 0, hd = 0;
        int64_t n = 0, nd = 0;
        for (size_t i = 0; i < held_out.size(); ++i) {
          if (!(held_out[i].label == l).any().item<bool>()) continue;  // a label is judged where it exists
          const auto& sc = scores[i][static_cast<size_t>(l - 1)];
          dice += sc.dice;
          ++n;
          if (sc.assd) assd += *sc.assd, hd += *sc.hd95, ++nd;
        }
        auto& st = per_label[static_cast<size_t>(l - 1)];
        if (n > 0) st[0].seeds.push_back(dice / static_cast<double>(n));
        if (nd > 0) {
          st[1].seeds.push_back(assd / static_cast<double>(nd));
          st[2].seeds.push_back(hd / static_cast<double>(nd));
        }
      }
    }
  }
  nlohmann::json labels = nlohmann::json::array(), hurt = nlohmann::json::array(), helped = nlohmann::json::array();
  for (int64_t l = 1; l < K; ++l) {
    const size_t li = static_cast<size_t>(l - 1);
    const std::string name = static_cast<size_t>(l) < names.size() ? names[static_cast<size_t>(l)] : fmt::format("label_{}", l);
    nlohmann::json row = {{"label", l}, {"name", name}, {"held_out_cases", present[li]}};
    if (present[li] == 0) {
      row["note"] = "no held-out case holds this label: not scored";
      labels.push_back(row);
      continue;
    }
    for (const auto& [cfg, per_label] : stats) {
      row["dice"][cfg] = per_label[li][0].json();
      row["assd_mm"][cfg] = per_label[li][1].json();
      row["hd95_mm"][cfg] = per_label[li][2].json();
    }
    if (stats.count("real") && stats.count("real+synthetic")) {
      const auto& a = stats["real"][li][0];
      const auto& b = stats["real+synthetic"][li][0];
      Stat gain;
      for (size_t s = 0; s < std::min(a.seeds.size(), b.seeds.size()); ++s) gain.seeds.push_back(b.seeds[s] - a.seeds[s]);
      // the seed spread: how far one training set's Dice moves between seeds
      const double noise = std::max(a.range(), b.range());
      const std::string verdict = gain_verdict(gain.mean(), noise, p.min_effect);
      row["gain"] = {{"mean", gain.mean()}, {"seeds", gain.seeds}, {"seed_spread", noise}, {"threshold", std::max(noise, p.min_effect)},
                     {"verdict", verdict}};
      if (verdict == "hurts") hurt.push_back(name);
      if (verdict == "helps") helped.push_back(name);
    }
    labels.push_back(row);
  }
  std::string summary;
  if (!stats.count("real") || !stats.count("real+synthetic"))
    summary = "no gain computed (needs both real training cases and synthetic pairs)";
  else if (!hurt.empty())
    summary = fmt::format("the synthetic pairs HURT segmentation of {}: adding them to the real cases lowers Dice by more than "
                          "the seed spread (and {})", fmt::join(hurt.get<std::vector<std::string>>(), ", "), p.min_effect);
  else if (!helped.empty())
    summary = fmt::format("the synthetic pairs help segmentation of {} and lower no label's Dice beyond the seed spread",
                          fmt::join(helped.get<std::vector<std::string>>(), ", "));
  else
    summary = "adding the synthetic pairs changes no label's Dice beyond the seed spread";
  return {{"protocol", fmt::format("a compact 3-D segmentation U-Net (meddiff's blocks, {} base channels, {} levels; "
                                   "cross-entropy weighted by 1/sqrt(label frequency) + soft Dice, Adam lr {}{}, batch {}, "
                                   "random flips, {} iterations) trained on (a) "
                                   "the real training cases, (b) the same plus the synthetic pairs ({:.0f} % of each batch drawn "
                                   "from them), (c) the synthetic pairs alone, {} seed(s) each; scored on the held-out real "
                                   "cases: per label Dice, ASSD and HD95 (mm), averaged over the cases that hold the label",
                                   p.base_channels, p.levels, p.lr,
                                   p.lr_poly > 0 ? fmt::format(" decaying as (1 - iteration / iterations)^{}", p.lr_poly) : "",
                                   p.batch, p.iterations, 100 * p.synthetic_share, p.seeds)},
          {"params", p.to_json()},
          {"counts", {{"real_train", real_train.size()}, {"synthetic", synthetic.size()}, {"held_out", held_out.size()}}},
          {"labels", labels},
          {"hurt", hurt},
          {"helped", helped},
          {"summary", summary}};
}

}  // namespace meddiff
