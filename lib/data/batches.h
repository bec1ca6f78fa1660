#pragma once
// Training batches. Batch number `step` depends only on (seed, step): the cases drawn and the random
// flips, so a resumed run sees exactly the batches an uninterrupted run would. A background thread
// assembles the next batches while the current step computes.
#include "data/preprocess.h"

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

namespace meddiff {

struct Batch {
  int64_t step = 0;
  torch::Tensor x;       // [B, 1, D, H, W]
  torch::Tensor labels;  // int64 [B] class labels
  torch::Tensor cond;    // float [B, L, d, h, w] label condition, when the cases have one
};

Batch make_batch(const std::vector<TrainingVolume>& cases, int64_t batch_size, uint64_t seed, int64_t step, bool flip);

class BatchPrefetcher {
 public:
  BatchPrefetcher(const std::vector<TrainingVolume>& cases, int64_t batch_size, uint64_t seed, bool flip,
                  int64_t first_step, int64_t last_step, size_t depth = 2);
  ~BatchPrefetcher();
  Batch next();  // batches in step order

 private:
  void run();
  const std::vector<TrainingVolume>& cases_;
  int64_t batch_size_;
  uint64_t seed_;
  bool flip_;
  int64_t next_step_, last_step_;
  size_t depth_;
  std::deque<Batch> queue_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::exception_ptr error_;
  std::thread thread_;
};

// Seed for (seed, step, stream): used for every per-step random choice.
uint64_t step_seed(uint64_t seed, int64_t step, uint64_t stream);

}  // namespace meddiff
