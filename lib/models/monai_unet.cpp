#include "models/monai_unet.h"

namespace meddiff {

MonaiUNetImpl::MonaiUNetImpl(const MonaiUNetParams& p) : params(p) {
  p.validate("MONAI U-Net");
  const int64_t L = p.levels(), E = p.embedding_dim(), C = p.conditioning_dim();
  auto mlp = [&](int64_t in) { return torch::nn::Sequential(torch::nn::Linear(in, E), torch::nn::SiLU(), torch::nn::Linear(E, E)); };
  conv_in = register_module("conv_in", MonaiConv(p.in_channels, p.channels[0], 3));
  time_embed = register_module("time_embed", mlp(p.channels[0]));
  if (p.num_class_embeds > 0) class_embedding = register_module("class_embedding", torch::nn::Embedding(p.num_class_embeds, E));
  if (p.top_region_input) top_region_index_layer = register_module("top_region_index_layer", mlp(4));
  if (p.bottom_region_input) bottom_region_index_layer = register_module("bottom_region_index_layer", mlp(4));
  if (p.spacing_input) spacing_layer = register_module("spacing_layer", mlp(3));

  encoder.build(*this, p, C);
  std::vector<int64_t> skips = encoder.skip_channels;
  int64_t c = encoder.out_channels;

  up_blocks = register_module("up_blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < L; ++i) {
    const int64_t level = L - 1 - i, out_c = p.channels[static_cast<size_t>(level)];
    auto lv = MonaiUNetLevelImpl::append(up_blocks, ups);
    for (int64_t r = 0; r < p.num_res_blocks[static_cast<size_t>(level)] + 1; ++r) {
      lv->add_block(p, c + skips.back(), out_c, C, level);
      skips.pop_back();
      c = out_c;
    }
    if (i + 1 < L) {
      if (p.resblock_updown) lv->res_sampler = lv->register_module("upsampler", std::make_shared<MonaiResBlockImpl>(p, c, c, C, +1));
      else lv->conv_up = lv->register_module("upsampler", MonaiUpsample(c, false));
    }
  }
  out = register_module("out", torch::nn::ModuleList());
  out_norm = MonaiNorm(c, p.norm_groups, p.norm_eps);
  out_conv = MonaiConv(c, p.out_channels, 3);
  out->push_back(out_norm);
  out->push_back(torch::nn::SiLU());
  out->push_back(out_conv);
}

torch::Tensor MonaiUNetImpl::forward(const torch::Tensor& x, const torch::Tensor& timesteps, const MonaiUNetInputs& in) {
  const auto& p = params;
  auto need = [&](const torch::Tensor& t, const char* what, int64_t width) {
    TORCH_CHECK(t.defined() && t.dim() == 2 && t.size(0) == x.size(0) && t.size(1) == width, "MONAI U-Net: needs ", what, " [",
                x.size(0), ", ", width, "]");
    return t.to(x.device(), x.scalar_type());
  };
  auto emb = monai_time_class_embedding(time_embed, class_embedding, p.channels[0], x, timesteps, in.class_labels, "MONAI U-Net");
  std::vector<torch::Tensor> parts{emb};
  if (top_region_index_layer) parts.push_back(top_region_index_layer->forward(need(in.top_region, "top_region", 4)));
  if (bottom_region_index_layer) parts.push_back(bottom_region_index_layer->forward(need(in.bottom_region, "bottom_region", 4)));
  if (spacing_layer) parts.push_back(spacing_layer->forward(need(in.spacing, "spacing", 3)));
  if (parts.size() > 1) emb = torch::cat(parts, 1);

  std::vector<torch::Tensor> skips;
  auto h = encoder.down(conv_in->forward(x), emb, skips);
  if (!in.down_residuals.empty()) {
    TORCH_CHECK(in.down_residuals.size() == skips.size(), "MONAI U-Net: ", in.down_residuals.size(), " ControlNet residuals for ",
                skips.size(), " down-path outputs");
    for (size_t i = 0; i < skips.size(); ++i) skips[i] = skips[i] + in.down_residuals[i].to(h.scalar_type());
    if (p.maisi) h = skips.back();  // MAISI adds in place: its last down output is the middle block's input
  }
  h = encoder.middle(h, emb);
  if (in.mid_residual.defined()) h = h + in.mid_residual.to(h.scalar_type());
  for (auto& lv : ups) {
    for (size_t r = 0; r < lv->res.size(); ++r) {
      h = lv->res[r]->forward(torch::cat({h, skips.back()}, 1), emb);
      skips.pop_back();
      if (!lv->att.empty()) h = lv->att[r]->forward(h);
    }
    h = lv->resample(h, emb);
  }
  return out_conv->forward(out_norm->forward(h, true));
}

}  // namespace meddiff
