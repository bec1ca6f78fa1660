#pragma once
// Training batches, world-size invariant. Global batch `step` holds the samples at positions
// step * G ... step * G + G - 1 of an endless sequence of epochs, each epoch a permutation of the cases
// drawn from (seed, epoch); a sample's random flips derive from (seed, its position). A process takes
// the slice [first, first + batch_size) of each global batch (data-parallel rank r: first = r * b,
// G = world * b), so N ranks with batch b see exactly the samples of one process with batch N * b,
// and a resumed run the batches of an uninterrupted one. A background thread assembles the next
// batches while the current step computes.
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
  torch::Tensor seg;     // int64 [B, D, H, W] the cases' label maps (flipped with x), when every case has one (stage 2: the
                         // latents' maps on the image grid, from which the label condition is built)
  int64_t first = 0;     // index of x[0] in the global batch (per-sample random draws key on first + j)
};

// Where a process's samples sit in each global batch.
struct BatchSlice {
  int64_t first = 0;   // index of this process's first sample in the global batch
  int64_t global = 0;  // global batch size (0: batch_size, one process)
};

// Random patches of the cases instead of whole volumes (patch training of the autoencoder).
struct BatchPatch {
  std::array<int64_t, 3> size{0, 0, 0};  // [D, H, W] voxels; 0: whole volumes
  double foreground = 0.5;               // share of patches centred on a labelled voxel (no label map: a non-background one)
  bool active() const { return size[0] > 0; }
};

// Where a patch of `size` starts in case c for draw `rng_seed`: with probability `foreground` centred on a random
// voxel with a label > 0 (without a label map: one above the background, x > -0.95), else uniform; inside the volume.
std::array<int64_t, 3> patch_origin(const TrainingVolume& c, const BatchPatch& patch, uint64_t rng_seed);

Batch make_batch(const std::vector<TrainingVolume>& cases, int64_t batch_size, uint64_t seed, int64_t step, bool flip,
                 BatchSlice slice = {}, const BatchPatch& patch = {});

class BatchPrefetcher {
 public:
  BatchPrefetcher(const std::vector<TrainingVolume>& cases, int64_t batch_size, uint64_t seed, bool flip,
                  int64_t first_step, int64_t last_step, BatchSlice slice = {}, BatchPatch patch = {}, size_t depth = 2);
  ~BatchPrefetcher();
  Batch next();  // batches in step order

 private:
  void run();
  const std::vector<TrainingVolume>& cases_;
  int64_t batch_size_;
  uint64_t seed_;
  bool flip_;
  BatchSlice slice_;
  BatchPatch patch_;
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
// Seed for the sample at `index` of global batch `step` (its noise, timestep, slice, dropout).
uint64_t sample_seed(uint64_t seed, int64_t step, uint64_t stream, int64_t index);

}  // namespace meddiff
