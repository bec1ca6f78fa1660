#include "data/batches.h"

#include "core/error.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <numeric>
#include <random>

namespace meddiff {

uint64_t step_seed(uint64_t seed, int64_t step, uint64_t stream) {
  // splitmix64 over the three inputs
  uint64_t z = seed * 0x9E3779B97F4A7C15ULL ^ (static_cast<uint64_t>(step) + 0x632BE59BD9B4E019ULL) * 0xBF58476D1CE4E5B9ULL ^
               (stream + 1) * 0x94D049BB133111EBULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

uint64_t sample_seed(uint64_t seed, int64_t step, uint64_t stream, int64_t index) {
  return step_seed(step_seed(seed, step, stream), index, 0x5A4D);
}

std::array<int64_t, 3> patch_origin(const TrainingVolume& c, const BatchPatch& patch, uint64_t rng_seed) {
  std::mt19937_64 rng(rng_seed);
  std::array<int64_t, 3> dims{c.x.size(1), c.x.size(2), c.x.size(3)}, origin{0, 0, 0};
  for (size_t a = 0; a < 3; ++a)
    if (patch.size[a] > dims[a])
      fail("{}: patch [{}] is larger than the volume [{}] (vqgan_train.patch must fit data.shape)", c.source,
           fmt::join(patch.size, ", "), fmt::join(dims, ", "));
  const double u = static_cast<double>(rng() >> 11) * 0x1.0p-53;
  if (u < patch.foreground) {
    auto mask = c.label.defined() ? (c.label > 0) : (c.x > -0.95).any(0);  // any channel
    auto where = mask.flatten().nonzero();  // [M, 1]
    if (where.size(0) > 0) {
      int64_t k = where[static_cast<int64_t>(rng() % static_cast<uint64_t>(where.size(0)))][0].item<int64_t>();
      std::array<int64_t, 3> centre{k / (dims[1] * dims[2]), (k / dims[2]) % dims[1], k % dims[2]};
      for (size_t a = 0; a < 3; ++a) origin[a] = std::clamp(centre[a] - patch.size[a] / 2, int64_t{0}, dims[a] - patch.size[a]);
      return origin;
    }
  }
  for (size_t a = 0; a < 3; ++a) origin[a] = static_cast<int64_t>(rng() % static_cast<uint64_t>(dims[a] - patch.size[a] + 1));
  return origin;
}

Batch make_batch(const std::vector<TrainingVolume>& cases, int64_t batch_size, uint64_t seed, int64_t step, bool flip,
                 BatchSlice slice, const BatchPatch& patch) {
  if (cases.empty()) fail("no training cases");
  const int64_t G = slice.global > 0 ? slice.global : batch_size;
  if (slice.first < 0 || slice.first + batch_size > G)
    fail("batch slice [{}, {}) lies outside the global batch of {}", slice.first, slice.first + batch_size, G);
  const int64_t N = static_cast<int64_t>(cases.size());
  std::map<int64_t, std::vector<size_t>> perms;  // epoch -> order of the cases
  std::vector<torch::Tensor> xs, segs;
  std::vector<int64_t> labels;
  for (int64_t b = 0; b < batch_size; ++b) {
    const int64_t pos = step * G + slice.first + b;  // position in the endless sequence of samples
    auto& perm = perms[pos / N];
    if (perm.empty()) {
      perm.resize(cases.size());
      std::iota(perm.begin(), perm.end(), size_t{0});
      std::mt19937_64 r(step_seed(seed, pos / N, 7));
      std::shuffle(perm.begin(), perm.end(), r);
    }
    const auto& c = cases[perm[static_cast<size_t>(pos % N)]];
    auto x = c.x;
    auto seg = c.label;
    if (patch.active()) {
      auto o = patch_origin(c, patch, step_seed(seed, pos, 9));
      for (int64_t a = 0; a < 3; ++a) {
        x = x.narrow(a + 1, o[static_cast<size_t>(a)], patch.size[static_cast<size_t>(a)]);
        if (seg.defined()) seg = seg.narrow(a, o[static_cast<size_t>(a)], patch.size[static_cast<size_t>(a)]);
      }
    }
    if (flip) {
      std::mt19937_64 rng(step_seed(seed, pos, 8));
      std::vector<int64_t> dims;
      for (int64_t a = 1; a <= 3; ++a)
        if (rng() & 1) dims.push_back(a);
      if (!dims.empty()) {
        x = x.flip(dims);
        if (seg.defined()) {
          std::vector<int64_t> seg_dims;  // the label map has no channel axis
          for (int64_t d : dims) seg_dims.push_back(d - 1);
          seg = seg.flip(seg_dims);
        }
      }
    }
    xs.push_back(x);
    if (seg.defined()) segs.push_back(seg);
    labels.push_back(c.class_label);
  }
  Batch out;
  out.step = step;
  out.first = slice.first;
  out.x = torch::stack(xs).to(torch::kFloat);  // cases from the dataset cache are float16 views
  out.labels = torch::tensor(labels, torch::kLong);
  if (segs.size() == xs.size()) out.seg = torch::stack(segs).to(torch::kLong);  // uint8 in the dataset cache
  return out;
}

BatchPrefetcher::BatchPrefetcher(const std::vector<TrainingVolume>& cases, int64_t batch_size, uint64_t seed, bool flip,
                                 int64_t first_step, int64_t last_step, BatchSlice slice, BatchPatch patch, size_t depth)
    : cases_(cases), batch_size_(batch_size), seed_(seed), flip_(flip), slice_(slice), patch_(patch), next_step_(first_step), last_step_(last_step),
      depth_(depth), thread_([this] { run(); }) {}

BatchPrefetcher::~BatchPrefetcher() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void BatchPrefetcher::run() {
  try {
    torch::NoGradGuard ng;
    for (int64_t s = next_step_; s < last_step_; ++s) {
      Batch b = make_batch(cases_, batch_size_, seed_, s, flip_, slice_, patch_);
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait(l, [&] { return stop_ || queue_.size() < depth_; });
      if (stop_) return;
      queue_.push_back(std::move(b));
      cv_.notify_all();
    }
  } catch (...) {
    std::lock_guard<std::mutex> l(mu_);
    error_ = std::current_exception();
    cv_.notify_all();
  }
}

Batch BatchPrefetcher::next() {
  std::unique_lock<std::mutex> l(mu_);
  cv_.wait(l, [&] { return !queue_.empty() || error_; });
  if (error_) std::rethrow_exception(error_);
  Batch b = std::move(queue_.front());
  queue_.pop_front();
  cv_.notify_all();
  return b;
}

}  // namespace meddiff
