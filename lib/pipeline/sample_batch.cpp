#include "pipeline/sample_batch.h"

#include "core/log.h"
#include "data/batches.h"

namespace meddiff {

torch::Tensor sample_noise(uint64_t seed, int64_t index, uint64_t stream, const std::array<int64_t, 4>& shape) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(step_seed(seed, index, stream));
  return torch::randn({shape[0], shape[1], shape[2], shape[3]}, gen);
}

uint64_t attempt_seed(uint64_t seed, int64_t attempt) { return attempt == 0 ? seed : step_seed(seed, -attempt, 0x7163ULL); }

BatchResult generate_batch(LoadedLDM& ldm, LatentAutoencoder& autoencoder, const std::vector<BatchItem>& items, const SamplerParams& sp, uint64_t seed,
                           const torch::Device& device, const AutoencoderRun& decode, const PairRules& rules,
                           const std::function<void(int64_t)>& on_step) {
  const bool paired = ldm.num_labels > 0;
  const size_t n = items.size();
  BatchResult r;
  r.images.resize(n);
  r.attempts.assign(n, 0);
  r.checks.resize(n);
  std::vector<size_t> pending(n);
  for (size_t j = 0; j < n; ++j) pending[j] = j;
  for (int64_t attempt = 0; !pending.empty(); ++attempt) {
    const uint64_t s = attempt_seed(seed, attempt);
    std::vector<torch::Tensor> x_T, conds, maps;
    std::vector<int64_t> classes;
    for (size_t j : pending) {
      const bool given = attempt == 0 && items[j].initial_noise.defined();
      x_T.push_back(given ? items[j].initial_noise : sample_noise(s, items[j].index, 0, ldm.latent_shape));
      classes.push_back(items[j].cls);
      if (paired) conds.push_back(items[j].cond);
      if (paired && autoencoder.decoder_labels() > 0) maps.push_back(items[j].label);
    }
    auto step_noise = [&](int64_t step) {
      std::vector<torch::Tensor> z;
      for (size_t j : pending) z.push_back(sample_noise(s, items[j].index, static_cast<uint64_t>(step + 1), ldm.latent_shape));
      return torch::stack(z).to(device);
    };
    auto vols = generate_volumes(ldm, autoencoder, torch::stack(x_T).to(device), torch::tensor(classes, torch::kLong).to(device),
                                 paired ? torch::stack(conds).to(device) : torch::Tensor(), sp, step_noise,
                                 [&](int64_t step, int64_t) {
                                   if (attempt == 0 && on_step) on_step(step);
                                 },
                                 decode, maps.empty() ? torch::Tensor() : torch::stack(maps))
                    .to(torch::kCPU, torch::kFloat);
    std::vector<size_t> again;
    for (size_t k = 0; k < pending.size(); ++k) {
      const size_t j = pending[k];
      r.images[j] = vols[static_cast<int64_t>(k)];
      if (ldm.background_to_minimum) r.images[j].masked_fill_(items[j].label.unsqueeze(0) == 0, -1.0);  // MAISI's crop_img_body_mask
      r.attempts[j] = attempt;
      if (!paired) continue;
      r.checks[j] = check_pair(r.images[j], items[j].label, *rules.ranges, rules.names, rules.window, rules.channel_names);
      if (!r.checks[j].passed && attempt < rules.retries) again.push_back(j);
    }
    if (!again.empty()) {
      r.regenerated += static_cast<int64_t>(again.size());
      log_info("{} pair(s) outside the training intensity ranges; generating again (attempt {} of {})", again.size(), attempt + 2,
               rules.retries + 1);
    }
    pending = again;
  }
  return r;
}

}  // namespace meddiff
