#include "models/monai_controlnet.h"

#include "core/error.h"

#include <algorithm>

namespace meddiff {

MonaiControlNetImpl::MonaiControlNetImpl(const MonaiControlNetParams& c) : params(c) {
  const auto& p = c.unet;
  p.validate("MONAI ControlNet");
  const int64_t E = p.embedding_dim();
  conv_in = register_module("conv_in", MonaiConv(p.in_channels, p.channels[0], 3));
  time_embed = register_module("time_embed", torch::nn::Sequential(torch::nn::Linear(p.channels[0], E), torch::nn::SiLU(), torch::nn::Linear(E, E)));
  if (p.num_class_embeds > 0) class_embedding = register_module("class_embedding", torch::nn::Embedding(p.num_class_embeds, E));

  auto emb = register_module("controlnet_cond_embedding", std::make_shared<torch::nn::Module>());
  const auto& w = c.cond_channels;
  cond_conv_in = emb->register_module("conv_in", MonaiConv(c.cond_in_channels, w[0], 3));
  auto blocks = emb->register_module("blocks", torch::nn::ModuleList());
  for (size_t i = 0; i + 1 < w.size(); ++i) {
    cond_blocks.push_back(MonaiConv(w[i], w[i], 3));
    cond_blocks.push_back(MonaiConv(w[i], w[i + 1], 3, 2, 1));
    blocks->push_back(cond_blocks[cond_blocks.size() - 2]);
    blocks->push_back(cond_blocks.back());
  }
  cond_conv_out = emb->register_module("conv_out", MonaiConv(w.back(), p.channels[0], 3));

  encoder.build(*this, p, E);
  auto zeros = register_module("controlnet_down_blocks", torch::nn::ModuleList());
  for (size_t i = 0; i < encoder.skip_channels.size(); ++i) {
    const int64_t ch = encoder.skip_channels[i];
    if (i == 0) {  // MONAI keeps the first one's bare Conv3d
      down_zero.push_back(torch::nn::Conv3d(torch::nn::Conv3dOptions(ch, ch, 1)));
      zeros->push_back(down_zero.back());
    } else {
      MonaiConv m(ch, ch, 1);
      down_zero.push_back(m->conv);
      zeros->push_back(m);
    }
  }
  mid_zero = register_module("controlnet_mid_block", MonaiConv(encoder.out_channels, encoder.out_channels, 1));
}

torch::Tensor MonaiControlNetImpl::embed_condition(const torch::Tensor& condition) {
  const auto& c = params;
  TORCH_CHECK(condition.dim() == 5 && condition.size(1) == c.cond_in_channels, "MONAI ControlNet: the condition must be [B, ",
              c.cond_in_channels, ", X, Y, Z]");
  auto h = torch::silu(cond_conv_in->forward(condition));
  for (auto& b : cond_blocks) h = torch::silu(b->forward(h));
  return cond_conv_out->forward(h);
}

torch::Tensor MonaiControlNetImpl::embed_label(const torch::Tensor& label, int64_t slab_bytes) {
  const auto& c = params;
  const int64_t f = c.cond_downsample();
  TORCH_CHECK(label.dim() == 3, "MONAI ControlNet: a label map [X, Y, Z]");
  const int64_t X = label.size(0), Y = label.size(1), Z = label.size(2);
  for (int64_t n : {X, Y, Z})
    if (n % f) fail("the label map's grid {}x{}x{} is not a multiple of the ControlNet's downsampling {}", X, Y, Z, f);
  // Rows of the input each output row depends on beyond its own f: 1 (conv_in) + 2 x 2^i per level (the two
  // convolutions reading level i) + f (conv_out); rounded up to whole output rows so that slabs keep the strides' phase.
  int64_t reach = 1 + f;
  for (size_t i = 0; i + 1 < c.cond_channels.size(); ++i) reach += 2 * (int64_t{1} << i);
  const int64_t halo = (reach + f - 1) / f * f;
  // bytes per input row of the largest activation: width w_i on a grid 2^i coarser along every axis
  int64_t row_bytes = c.cond_in_channels * Y * Z * 4;
  for (size_t i = 0; i < c.cond_channels.size(); ++i)
    row_bytes = std::max(row_bytes, c.cond_channels[i] * Y * Z * 4 / (int64_t{1} << (3 * i)));
  const int64_t rows_out = std::max<int64_t>(1, std::min(X / f, (slab_bytes / std::max<int64_t>(row_bytes, 1) - 2 * halo) / f));
  const auto device = cond_conv_in->conv->weight.device();
  std::vector<torch::Tensor> parts;
  for (int64_t o0 = 0; o0 < X / f; o0 += rows_out) {
    const int64_t o1 = std::min(X / f, o0 + rows_out);
    const int64_t a = std::max<int64_t>(0, o0 * f - halo), b = std::min(X, o1 * f + halo);
    auto planes = label_bit_planes(label.slice(0, a, b).unsqueeze(0).to(device), c.cond_in_channels);
    auto e = embed_condition(planes.to(cond_conv_in->conv->weight.scalar_type()));
    parts.push_back(e.slice(2, (o0 * f - a) / f, (o0 * f - a) / f + (o1 - o0)));
  }
  return torch::cat(parts, 2);
}

MonaiControlNetResiduals MonaiControlNetImpl::residuals(const torch::Tensor& x, const torch::Tensor& timesteps,
                                                        const torch::Tensor& embedded_condition, const torch::Tensor& class_labels,
                                                        double scale) {
  const auto& p = params.unet;
  auto emb = monai_time_class_embedding(time_embed, class_embedding, p.channels[0], x, timesteps, class_labels, "MONAI ControlNet");
  auto h = conv_in->forward(x);
  TORCH_CHECK(embedded_condition.sizes() == h.sizes(), "MONAI ControlNet: the embedded condition ", embedded_condition.sizes(),
              " does not match the latent's features ", h.sizes());
  h = h + embedded_condition.to(h.scalar_type());
  std::vector<torch::Tensor> skips;
  h = encoder.middle(encoder.down(h, emb, skips), emb);
  MonaiControlNetResiduals r;
  for (size_t i = 0; i < skips.size(); ++i) r.down.push_back(down_zero[i]->forward(skips[i]) * scale);
  r.mid = mid_zero->forward(h) * scale;
  return r;
}

torch::Tensor label_bit_planes(const torch::Tensor& label, int64_t bits) {
  auto l = label.to(torch::kLong);
  if (l.numel() > 0 && (l.min().item<int64_t>() < 0 || l.max().item<int64_t>() >= (int64_t{1} << bits)))
    fail("label values must be within 0..{} for the ControlNet's {} bit planes (got {}..{})", (int64_t{1} << bits) - 1, bits,
         l.min().item<int64_t>(), l.max().item<int64_t>());
  std::vector<torch::Tensor> planes;
  for (int64_t b = 0; b < bits; ++b) planes.push_back(torch::bitwise_and(l, int64_t{1} << b).ne(0));
  return torch::stack(planes, 1).to(torch::kFloat);
}

}  // namespace meddiff
