#include "data/label_check.h"

#include "core/error.h"

#include <algorithm>
#include <tuple>
#include <fmt/format.h>

namespace meddiff {

nlohmann::json LabelIntensityRanges::to_json() const {
  nlohmann::json a = nlohmann::json::array();
  for (const auto& r : ranges) a.push_back({{"label", r.label}, {"channel", r.channel}, {"lo", r.lo}, {"hi", r.hi}, {"median", r.median}, {"cases", r.cases}});
  return {{"ranges", a}, {"min_voxels", min_voxels}};
}

LabelIntensityRanges LabelIntensityRanges::from_json(const nlohmann::json& j) {
  LabelIntensityRanges out;
  out.min_voxels = j.value("min_voxels", int64_t{8});
  for (const auto& r : j.at("ranges"))
    out.ranges.push_back({r.at("label").get<int64_t>(), r.at("lo").get<double>(), r.at("hi").get<double>(),
                          r.at("median").get<double>(), r.at("cases").get<int64_t>(), r.value("channel", int64_t{0})});
  return out;
}

LabelIntensityRanges fit_label_ranges(const std::vector<TrainingVolume>& cases, int64_t num_labels) {
  LabelIntensityRanges out;
  const int64_t C = cases.empty() ? 1 : cases.front().x.size(0);
  // [channel][label] -> the cases' medians
  std::vector<std::vector<std::vector<double>>> medians(static_cast<size_t>(C), std::vector<std::vector<double>>(static_cast<size_t>(num_labels)));
  for (const auto& c : cases) {
    if (!c.label.defined()) continue;
    for (int64_t l = 0; l < num_labels; ++l) {
      auto inside = c.label == l;
      if (inside.sum().item<int64_t>() < out.min_voxels) continue;
      for (int64_t ch = 0; ch < C; ++ch) {
        auto x = c.x[ch].to(torch::kFloat);  // a float16 view when the cases come from the dataset cache
        medians[static_cast<size_t>(ch)][static_cast<size_t>(l)].push_back(x.masked_select(inside).median().item<double>());
      }
    }
  }
  for (int64_t l = 0; l < num_labels; ++l)
    for (int64_t ch = 0; ch < C; ++ch) {
      auto& m = medians[static_cast<size_t>(ch)][static_cast<size_t>(l)];
      if (m.empty()) continue;
      std::sort(m.begin(), m.end());
      const double spread = m.back() - m.front(), margin = std::max(0.25 * spread, 0.05);
      out.ranges.push_back({l, m.front() - margin, m.back() + margin, m[m.size() / 2], static_cast<int64_t>(m.size()), ch});
    }
  return out;
}

LabelIntensityRanges merge_label_ranges(const LabelIntensityRanges& a, const LabelIntensityRanges& b) {
  LabelIntensityRanges out = a;
  for (const auto& r : b.ranges) {
    auto it = std::find_if(out.ranges.begin(), out.ranges.end(),
                           [&](const LabelRange& x) { return x.label == r.label && x.channel == r.channel; });
    if (it == out.ranges.end()) {
      out.ranges.push_back(r);
      continue;
    }
    it->lo = std::min(it->lo, r.lo);
    it->hi = std::max(it->hi, r.hi);
  }
  std::sort(out.ranges.begin(), out.ranges.end(),
            [](const LabelRange& x, const LabelRange& y) { return std::tie(x.label, x.channel) < std::tie(y.label, y.channel); });
  return out;
}

PairCheck check_pair(const torch::Tensor& image, const torch::Tensor& label, const LabelIntensityRanges& ranges,
                     const std::vector<std::string>& names, const IntensityWindow& w, const std::vector<std::string>& channel_names) {
  PairCheck pc;
  pc.detail = nlohmann::json::array();
  auto scanner = [&](double v) { return to_scanner_units(v, w); };
  for (const auto& r : ranges.ranges) {
    auto inside = label == r.label;
    const int64_t n = inside.sum().item<int64_t>();
    std::string name = r.label < static_cast<int64_t>(names.size()) ? names[static_cast<size_t>(r.label)] : std::to_string(r.label);
    if (n < ranges.min_voxels) continue;
    const auto channel = image.dim() == 4 ? image[r.channel] : image;
    if (image.dim() == 4 && image.size(0) > 1)
      name += " in " + (r.channel < static_cast<int64_t>(channel_names.size()) ? channel_names[static_cast<size_t>(r.channel)]
                                                                                 : fmt::format("channel {}", r.channel));
    const double med = channel.masked_select(inside).median().item<double>();
    const bool ok = med >= r.lo && med <= r.hi;
    pc.detail.push_back({{"label", r.label}, {"channel", r.channel}, {"name", name}, {"voxels", n}, {"median", scanner(med)},
                         {"range", {scanner(r.lo), scanner(r.hi)}}, {"passed", ok}});
    if (!ok) {
      pc.passed = false;
      pc.failed += fmt::format("{}{}: median {:.0f} outside [{:.0f}, {:.0f}]", pc.failed.empty() ? "" : "; ", name, scanner(med),
                               scanner(r.lo), scanner(r.hi));
    }
  }
  return pc;
}

}  // namespace meddiff
