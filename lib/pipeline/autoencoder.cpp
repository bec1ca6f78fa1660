#include "pipeline/autoencoder.h"

#include "core/error.h"
#include "core/log.h"
#include "pipeline/split_exec.h"

#include <fstream>

#ifdef MEDDIFF_HAVE_CUDA
#include <ATen/cuda/CUDAContext.h>
#endif

namespace meddiff {
namespace {

constexpr int64_t kGiB = int64_t{1} << 30;

int64_t machine_memory_bytes() {
  std::ifstream f("/proc/meminfo");
  std::string key;
  int64_t kb = 0;
  while (f >> key >> kb)
    if (key == "MemTotal:") return kb * 1024;
  return 16 * kGiB;
}

// Bytes of the largest activation the decoder (or encoder) holds, per sample, for a latent of `dhw`.
int64_t largest_activation(const VQGANParams& p, const std::array<int64_t, 3>& latent_dhw) {
  auto strides = stage_strides(p);
  std::array<int64_t, 3> size = latent_dhw;
  auto vox = [&] { return size[0] * size[1] * size[2]; };
  int64_t n = static_cast<int64_t>(strides.size());
  int64_t best = (p.n_hiddens << n) * vox();
  for (int64_t i = n - 1; i >= 0; --i) {
    for (size_t a = 0; a < 3; ++a) size[a] *= strides[static_cast<size_t>(i)][a];
    best = std::max(best, (p.n_hiddens << i) * vox());
  }
  return 4 * best;
}

int64_t parameter_bytes(const torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& t : m.parameters()) n += t.numel() * t.element_size();
  for (const auto& t : m.buffers()) n += t.numel() * t.element_size();
  return n;
}

// How to cut: along the longest spatial axis of the full-resolution volume, with the slab work space
// what the budget leaves after the whole tensors of the largest layer.
split::Plan make_plan(const VQGAN& model, const std::array<int64_t, 3>& full_dhw, int64_t act_bytes, int64_t budget) {
  split::Plan plan;
  plan.axis = 2 + static_cast<int64_t>(std::max_element(full_dhw.begin(), full_dhw.end()) - full_dhw.begin());
  int64_t resident = act_bytes + act_bytes / 3 + parameter_bytes(*model);
  plan.slab_bytes = std::max<int64_t>(int64_t{32} << 20, budget - resident);
  if (budget - resident < (int64_t{32} << 20))
    log_warn("the volume needs about {:.1f} GiB in the autoencoder even in slabs; the budget is {:.1f} GiB",
             static_cast<double>(resident + (int64_t{32} << 20)) / kGiB, static_cast<double>(budget) / kGiB);
  return plan;
}

template <typename T>
std::shared_ptr<T> child(torch::nn::SequentialImpl& seq, size_t i) {
  return std::dynamic_pointer_cast<T>(seq.ptr(i));
}

}  // namespace

int64_t default_memory_budget(const torch::Device& device) {
  if (device.is_cuda()) {
#ifdef MEDDIFF_HAVE_CUDA
    auto* props = at::cuda::getDeviceProperties(device.index() < 0 ? 0 : device.index());
    return std::min<int64_t>(16 * kGiB, static_cast<int64_t>(props->totalGlobalMem / 2));
#else
    return 8 * kGiB;
#endif
  }
  return std::min<int64_t>(6 * kGiB, machine_memory_bytes() * 2 / 5);
}

int64_t AutoencoderRun::budget(const torch::Device& device) const {
  return budget_bytes > 0 ? budget_bytes : default_memory_budget(device);
}

int64_t memory_budget_bytes(double gib, const torch::Device& device) {
  return gib > 0 ? static_cast<int64_t>(gib * static_cast<double>(kGiB)) : default_memory_budget(device);
}

bool decode_splits(const VQGAN& model, const std::array<int64_t, 3>& latent_dhw, int64_t batch, const AutoencoderRun& run,
                   const torch::Device& device) {
  if (run.force_split) return true;
  int64_t budget = run.budget(device);
  // A plain forward holds a layer's input, its normalised and activated copies, its output and the
  // convolution's work space: measured on the CPU, a plain decode of 128x192x192 (0.3 GB per
  // activation) peaked 1.9 GB above the process; ten activations' worth leaves a margin.
  // A label-conditioned decoder also holds the label maps (int64) and their float one-hot at full resolution.
  int64_t full_voxels = batch;
  for (size_t a = 0; a < 3; ++a) full_voxels *= latent_dhw[a] * model->params.downsample[a];
  // With label heads also their N x C outputs, the gather's int64 index and the chosen values (C per voxel).
  const int64_t N = model->params.decoder_labels, C = model->decoder->conv_last->conv->options.out_channels();
  const int64_t maps = N > 0 ? full_voxels * (8 + 4 * N + (model->params.decoder_label_heads ? 4 * N * C + 12 * C : 0)) : 0;
  return 10 * batch * largest_activation(model->params, latent_dhw) + maps + parameter_bytes(*model) > budget;
}

torch::Tensor decode_latent(VQGAN& model, const torch::Tensor& z, const AutoencoderRun& run, const torch::Tensor& labels_in) {
  torch::NoGradGuard ng;
  std::array<int64_t, 3> lat{z.size(2), z.size(3), z.size(4)};
  std::array<int64_t, 3> full = lat;
  for (size_t a = 0; a < 3; ++a) full[a] *= model->params.downsample[a];
  torch::Tensor labels;  // what the decoder sees
  if (model->decoder->label_classes > 0 && labels_in.defined()) {
    check_decoder_labels(labels_in, model->decoder->label_classes, "decode");
    if (labels_in.size(0) != z.size(0) || labels_in.size(1) != full[0] || labels_in.size(2) != full[1] || labels_in.size(3) != full[2])
      fail("decode: the label map is [{}] but the decoded volume will be [{}, {}, {}, {}]", fmt::join(labels_in.sizes(), ", "), z.size(0),
           full[0], full[1], full[2]);
    labels = labels_in.to(z.device(), torch::kUInt8);
  }
  auto q = model->quantizer->lookup(model->quantizer->quantize_codes(z));  // [B, E, d, h, w]
  if (!decode_splits(model, lat, z.size(0), run, z.device())) return model->decoder->forward(q, labels);
  int64_t budget = run.budget(z.device());
  split::Plan plan = make_plan(model, full, z.size(0) * largest_activation(model->params, lat), budget);
  auto& dec = *model->decoder;
  auto h = split::pointwise_conv(dec.post_vq_conv, q, nullptr, plan);  // [B, C_top, d, h, w]
  q = torch::Tensor();
  size_t k = 0;
  for (const auto& stage_module : *dec.up) {
    auto stage = stage_module->as<torch::nn::Sequential>();
    torch::nn::ConvTranspose3d up(child<torch::nn::ConvTranspose3dImpl>(*stage, 0));
    h = split::conv_transpose(up, h, plan);  // doubles the halved axes
    if (labels.defined()) split::add_label_term(dec, k, h, labels, plan);
    ++k;
    for (size_t i = 1; i < stage->size(); ++i) split::residual_block_inplace(*child<ResBlock3dImpl>(*stage, i), h, plan);
  }
  auto stats = split::group_stats(h, dec.final_norm->options.num_groups(), dec.final_norm->options.eps(), plan);
  const split::Pre final_act = [&](const torch::Tensor& s) { return split::norm_silu(s, stats, dec.final_norm); };
  auto out = split::same_pad_conv(dec.conv_last, h, final_act, plan);  // [B, 1, D, H, W]
  if (labels.defined()) split::add_label_term(dec, k, out, labels, plan);
  if (labels.defined() && dec.label_heads) split::add_label_heads(dec, h, final_act, out, labels, plan);
  return out;
}

torch::Tensor encode_volume(VQGAN& model, const torch::Tensor& x, const AutoencoderRun& run) {
  torch::NoGradGuard ng;
  std::array<int64_t, 3> full{x.size(2), x.size(3), x.size(4)}, lat = full;
  for (size_t a = 0; a < 3; ++a) lat[a] /= model->params.downsample[a];
  if (!decode_splits(model, lat, x.size(0), run, x.device())) return model->encoder->forward(x);
  int64_t budget = run.budget(x.device());
  split::Plan plan = make_plan(model, full, x.size(0) * largest_activation(model->params, lat), budget);
  auto& enc = *model->encoder;
  auto h = split::same_pad_conv(enc.conv_first, x, nullptr, plan);  // [B, n_hiddens, D, H, W]
  for (const auto& stage_module : *enc.down) {
    auto stage = stage_module->as<torch::nn::Sequential>();
    SamePadConv3d down(child<SamePadConv3dImpl>(*stage, 0));
    h = split::same_pad_conv(down, h, nullptr, plan);  // halves the chosen axes
    for (size_t i = 1; i < stage->size(); ++i) split::residual_block_inplace(*child<ResBlock3dImpl>(*stage, i), h, plan);
  }
  auto stats = split::group_stats(h, enc.final_norm->options.num_groups(), enc.final_norm->options.eps(), plan);
  return split::pointwise_conv(enc.pre_vq_conv, h, [&](const torch::Tensor& s) { return split::norm_silu(s, stats, enc.final_norm); },
                               plan);  // [B, E, d, h, w]
}

}  // namespace meddiff
