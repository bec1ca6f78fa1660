#include "cli/eval_audit.h"

#include "core/error.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/sha256.h"
#include "data/nearest_volume.h"

#include <algorithm>
#include <filesystem>
#include <map>

namespace meddiff::cli {
namespace fs = std::filesystem;

namespace {

// (1 - NCC of the nearest) / (1 - NCC of the second-nearest): small for a copy of one training scan.
double distance_ratio(const NccIndex::Match& m) {
  if (m.second < -0.5) return 1.0;
  return (1 - m.ncc) / std::max(1e-12, 1 - m.second);
}

std::string grid_digest(const torch::Tensor& g) {
  auto c = g.to(torch::kFloat).contiguous();
  return sha256_hex(std::string(reinterpret_cast<const char*>(c.data_ptr<float>()), static_cast<size_t>(c.numel()) * sizeof(float)));
}

std::string canonical_name(const fs::path& p) {
  std::error_code ec;
  auto c = fs::weakly_canonical(fs::absolute(p, ec), ec);
  return (ec ? p : c).string();
}

}  // namespace

nlohmann::json summary_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  double sum = 0;
  for (double x : v) sum += x;
  auto q = [&](double p) { return v[static_cast<size_t>(std::round(p * static_cast<double>(v.size() - 1)))]; };
  return {{"n", v.size()}, {"mean", sum / static_cast<double>(v.size())}, {"min", v.front()}, {"median", q(0.5)}, {"max", v.back()}};
}

void check_held_out(const SetSummary& real, const SetSummary& train) {
  std::map<std::string, size_t> by_path, by_voxels;
  for (size_t j = 0; j < train.entries.size(); ++j) {
    by_path.emplace(canonical_name(train.entries[j].image), j);
    if (j < train.audit.size()) by_voxels.emplace(grid_digest(train.audit[j]), j);
  }
  std::vector<std::string> same;
  for (size_t i = 0; i < real.entries.size(); ++i) {
    auto p = by_path.find(canonical_name(real.entries[i].image));
    if (p != by_path.end()) {
      same.push_back(fmt::format("{} is the training file {}", real.entries[i].image.string(), train.entries[p->second].image.string()));
      continue;
    }
    if (i >= real.audit.size()) continue;
    auto v = by_voxels.find(grid_digest(real.audit[i]));
    if (v != by_voxels.end())
      same.push_back(fmt::format("{} has the voxels of the training volume {}", real.entries[i].image.string(),
                                 train.entries[v->second].image.string()));
  }
  if (!same.empty())
    fail("--real and --train overlap: {} of the {} held-out volumes are training volumes ({}{}); the memorisation audit "
         "calibrates its threshold on held-out scans, which must not have been trained on: give --real volumes that were "
         "held out from training",
         same.size(), real.entries.size(), fmt::join(same.begin(), same.begin() + static_cast<std::ptrdiff_t>(std::min<size_t>(3, same.size())), "; "),
         same.size() > 3 ? fmt::format("; and {} more", same.size() - 3) : "");
}

AuditResult memorisation_audit(const SetSummary& real, const SetSummary& synth, SetSummary& train, int64_t max_shift) {
  NccIndex index(train.audit, max_shift);
  train.audit.clear();
  auto nearest_latent = [&](const torch::Tensor& z) {  // RMS distance of flattened latents
    auto d = (train.latents - z.unsqueeze(0)).pow(2).flatten(1).mean(1).sqrt();
    return d.min().item<double>();
  };
  auto audit = [&](const SetSummary& set, const std::string& what) {
    std::vector<NccIndex::Match> m;
    std::vector<double> lat;
    Progress p("audit " + what, static_cast<int64_t>(set.audit.size()));
    for (size_t i = 0; i < set.audit.size(); ++i) {
      m.push_back(index.nearest(set.audit[i]));
      lat.push_back(nearest_latent(set.latents[static_cast<int64_t>(i)]));
      p.update(static_cast<int64_t>(i + 1));
    }
    p.finish();
    return std::make_pair(m, lat);
  };
  auto [mh, lh] = audit(real, "held-out");
  auto [ms, ls] = audit(synth, "synthetic");
  std::vector<double> nh, ns, rh;
  for (size_t i = 0; i < mh.size(); ++i) {
    nh.push_back(mh[i].ncc);
    rh.push_back(distance_ratio(mh[i]));
    if (mh[i].ncc > 0.999)
      log_warn("eval: the held-out volume {} is almost the training volume {} (NCC {:.5f}): is it a training case? The audit's "
               "threshold is calibrated on the held-out volumes",
               real.name(i), train.name(static_cast<size_t>(mh[i].index)), mh[i].ncc);
  }
  for (const auto& x : ms) ns.push_back(x.ncc);
  // Calibration on the held-out real scans, which were not trained on: a near-copy is closer to its
  // nearest training scan than half of them are (distance 1 - NCC below their median), and much
  // closer to it than to the second-nearest: its distance ratio is below 3/4 of the smallest held-out
  // ratio. A copy's distance is mostly its noise, far below its distance to the other cases; an
  // unseen scan is about as far from its nearest training scan as from the next.
  const bool several = train.entries.size() > 1;
  const double threshold = summary_of(nh)["median"].get<double>();
  const double ratio_threshold = several ? 0.75 * *std::min_element(rh.begin(), rh.end()) : 0.0;
  auto near_copy = [&](const NccIndex::Match& x) {
    return several ? x.ncc > threshold && distance_ratio(x) < ratio_threshold : x.ncc >= 1 - 1e-9;
  };
  AuditResult out;
  nlohmann::json flagged = nlohmann::json::array(), per = nlohmann::json::array();
  for (size_t i = 0; i < synth.entries.size(); ++i) {
    const auto& x = ms[i];
    nlohmann::json e = {{"file", synth.name(i)}, {"nearest_train", train.name(static_cast<size_t>(x.index))},
                        {"ncc", x.ncc}, {"second_ncc", x.second}, {"distance_ratio", distance_ratio(x)}, {"shift", x.shift},
                        {"latent_distance", ls[i]}, {"near_copy", near_copy(x)}};
    per.push_back(e);
    if (near_copy(x)) flagged.push_back(e["file"]);
    out.ranked.emplace_back(distance_ratio(x), i);
    out.nearest.push_back(x.index);
  }
  std::sort(out.ranked.begin(), out.ranked.end());
  out.json = {
      {"method", fmt::format("nearest training volume by normalised cross-correlation of the detail band (Gaussian "
                             "blur sigma 1.5 minus sigma 4 voxels) in the central window (all but max-shift + 1 voxels at "
                             "each border), maximised over shifts of up to {} voxels per axis, on a grid of at most 64 voxels "
                             "per axis; latent distance: RMS difference of the encoder latents",
                             max_shift)},
      {"held_out_ncc", summary_of(nh)}, {"synthetic_ncc", summary_of(ns)}, {"held_out_latent_distance", summary_of(lh)},
      {"synthetic_latent_distance", summary_of(ls)}, {"held_out_distance_ratio", summary_of(rh)},
      {"threshold_ncc", threshold}, {"threshold_distance_ratio", ratio_threshold},
      {"threshold_rule", several ? "near-copy: NCC above the held-out scans' median NCC and distance ratio (1 - NCC) / "
                                   "(1 - second-nearest NCC) below 3/4 of the smallest held-out ratio"
                                 : "a single training volume: near-copy only at NCC 1"},
      {"near_copies", flagged},
      {"volumes", per}};
  return out;
}

}  // namespace meddiff::cli
