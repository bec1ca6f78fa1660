#pragma once
// What `train-vqgan --dry-run` and `train-ldm --dry-run` report as memory: measured, not modelled.
// The probe builds the models and optimisers of the config on its device and runs real optimisation
// steps on random data, reading the process's peak resident memory (CPU) or the CUDA allocator's
// peak. Two modes:
//  - reduced (the default for shapes above 64^3 voxels): steps at micro-batch min(max(2, batch), 4)
//    (a single small volume takes another CPU convolution algorithm than a batch) on two reduced
//    shapes (multiples of the networks' downsampling, about 1/32 and 1/16 of the voxels), fitted as
//    fixed + per-voxel memory (parameters and optimiser state are fixed; activations grow linearly
//    with voxels x batch) and extrapolated to the config's shape and micro-batch: seconds, not the
//    minutes of steps at a clinical shape;
//  - full (`--measure-full`, and every shape up to 64^3): steps at the config's shape at micro-batch 1
//    and min(4, batch), extrapolated linearly in the batch.
// The training set the trainer keeps in memory (cases x shape x 4 bytes) is added by arithmetic.
#include "train/train_config.h"

#include <array>
#include <string>
#include <vector>

namespace meddiff {

struct MemoryProbe {
  std::string what;              // "VQ-GAN before gan_start", "VQ-GAN with the GAN terms", "LDM"
  std::string device;
  double base_mib = 0;           // the process before the models (libraries)
  double step_mib_batch1 = 0;    // peak growth of a step at micro-batch 1 (models, optimiser, activations)
  double step_mib_batch2 = 0;    // ... at micro-batch `second_batch` (0 when not measured)
  int64_t second_batch = 0;
  double data_mib = 0;           // training data held in memory
  double total_mib = 0;          // the estimate at the config's micro-batch
  double seconds_per_step = 0;   // of a step at the config's shape and micro-batch (measured, or extrapolated from the probes)
  bool device_memory = false;    // CUDA allocator figures (host memory not included)
  // Reduced mode: the two shapes [D, H, W] measured at micro-batch `second_batch` (step_mib_batch1 / 2 are theirs).
  std::vector<std::array<int64_t, 3>> shapes;
};

// The reduced shapes [D, H, W] of a config (multiples of `unit` per axis, at least `min_size` voxels
// per axis): about 1/32 and 1/16 of the voxels, the second at least 1.5 times the first; empty when
// the config's shape is small enough (at most 64^3 voxels) or too few units to reduce.
std::vector<std::array<int64_t, 3>> reduced_probe_shapes(const std::array<int64_t, 3>& full, const std::array<int64_t, 3>& unit,
                                                         int64_t min_size);

struct ProbeOptions {
  bool full = false;  // measure at the config's shape (else reduced when it is large)
};

// `cases`: training volumes in the manifest (0 when unknown: the data term is left out).
std::vector<MemoryProbe> probe_vqgan_memory(const RunConfig& cfg, int64_t cases, const ProbeOptions& o = {});
MemoryProbe probe_ldm_memory(const RunConfig& cfg, int64_t cases, int64_t num_classes, const ProbeOptions& o = {});
std::string format_probe(const MemoryProbe& p, int64_t batch);

}  // namespace meddiff
