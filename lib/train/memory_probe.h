#pragma once
// What `train-vqgan --dry-run` and `train-ldm --dry-run` report as memory: measured, not modelled.
// The probe builds the models and optimisers of the config on its device and runs two real
// optimisation steps on random data of the config's shape, at micro-batch 1 and (when the config's
// batch is larger) min(4, batch), reading the process's peak resident memory (CPU) or the CUDA
// allocator's peak. A larger batch is extrapolated linearly from the two; the training set the
// trainer keeps in memory (cases x shape x 4 bytes) is added by arithmetic.
#include "train/train_config.h"

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
  double seconds_per_step = 0;   // of the measured step at micro-batch 1 (the second step)
  bool device_memory = false;    // CUDA allocator figures (host memory not included)
};

// `cases`: training volumes in the manifest (0 when unknown: the data term is left out).
std::vector<MemoryProbe> probe_vqgan_memory(const RunConfig& cfg, int64_t cases);
MemoryProbe probe_ldm_memory(const RunConfig& cfg, int64_t cases, int64_t num_classes);
std::string format_probe(const MemoryProbe& p, int64_t batch);

}  // namespace meddiff
