#include "models/monai_unet.h"
#include "models/unet3d.h"

namespace meddiff {
namespace F = torch::nn::functional;

// MONAI's DiffusionUNetResnetBlock; `resample` +1: nearest x2 upsampling, -1: 2x2x2 average pooling.
struct MonaiResBlockImpl : torch::nn::Module {
  MonaiResBlockImpl(const MonaiUNetParams& p, int64_t in, int64_t out, int64_t emb, int resample = 0) : resample(resample) {
    norm1 = register_module("norm1", MonaiNorm(in, p.norm_groups, p.norm_eps));
    conv1 = register_module("conv1", MonaiConv(in, out, 3));
    time_emb_proj = register_module("time_emb_proj", torch::nn::Linear(emb, out));
    norm2 = register_module("norm2", MonaiNorm(out, p.norm_groups, p.norm_eps));
    conv2 = register_module("conv2", MonaiConv(out, out, 3));
    if (in != out) skip_connection = register_module("skip_connection", MonaiConv(in, out, 1));
  }
  torch::Tensor resampled(const torch::Tensor& x) const {
    if (resample > 0) return upsample2x(x);
    if (resample < 0) return F::avg_pool3d(x, F::AvgPool3dFuncOptions(2).stride(2));
    return x;
  }
  torch::Tensor forward(torch::Tensor x, const torch::Tensor& emb) {
    auto h = resampled(norm1->forward(x, true));
    x = resampled(x);
    h = conv1->forward(h);
    h = h + time_emb_proj(torch::silu(emb)).unsqueeze(-1).unsqueeze(-1).unsqueeze(-1);
    h = conv2->forward(norm2->forward(h, true));
    return (skip_connection ? skip_connection->forward(x) : x) + h;
  }
  int resample;
  MonaiNorm norm1{nullptr}, norm2{nullptr};
  MonaiConv conv1{nullptr}, conv2{nullptr}, skip_connection{nullptr};
  torch::nn::Linear time_emb_proj{nullptr};
};

// MONAI's stride-2 convolution downsampler ("op"); its upsampler is models/monai_blocks.h's MonaiUpsample (nearest).
struct MonaiConvDownImpl : torch::nn::Module {
  explicit MonaiConvDownImpl(int64_t c) { op = register_module("op", MonaiConv(c, c, 3, 2, 1)); }
  MonaiConv op{nullptr};
};

// One level of the down or the up path: MONAI's DownBlock / AttnDownBlock / UpBlock / AttnUpBlock.
struct MonaiUNetLevelImpl : torch::nn::Module {
  std::vector<std::shared_ptr<MonaiResBlockImpl>> res;
  std::vector<MonaiAttention> att;
  std::shared_ptr<MonaiResBlockImpl> res_sampler;
  std::shared_ptr<MonaiConvDownImpl> conv_down;
  MonaiUpsample conv_up{nullptr};

  torch::Tensor resample(const torch::Tensor& h, const torch::Tensor& emb) {
    if (res_sampler) return res_sampler->forward(h, emb);
    if (conv_down) return conv_down->op->forward(h);
    if (conv_up) return conv_up->forward(h);
    return h;
  }
  bool resamples() const { return res_sampler || conv_down || conv_up; }
};

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

  auto attention = [&](int64_t c, int64_t level) { return MonaiAttention(c, c / p.num_head_channels[static_cast<size_t>(level)], p.include_fc, p.norm_groups, p.norm_eps); };
  auto add_level = [&](torch::nn::ModuleList& list, std::vector<std::shared_ptr<MonaiUNetLevelImpl>>& levels) {
    auto lv = std::make_shared<MonaiUNetLevelImpl>();
    list->push_back(lv);
    levels.push_back(lv);
    return lv;
  };
  down_blocks = register_module("down_blocks", torch::nn::ModuleList());
  std::vector<int64_t> skips{p.channels[0]};  // channels of every kept output, in order
  int64_t c = p.channels[0];
  for (int64_t i = 0; i < L; ++i) {
    auto lv = add_level(down_blocks, downs);
    auto resnets = lv->register_module("resnets", torch::nn::ModuleList());
    torch::nn::ModuleList attentions{nullptr};
    if (p.attention_at(i)) attentions = lv->register_module("attentions", torch::nn::ModuleList());
    const int64_t out_c = p.channels[static_cast<size_t>(i)];
    for (int64_t r = 0; r < p.num_res_blocks[static_cast<size_t>(i)]; ++r) {
      lv->res.push_back(std::make_shared<MonaiResBlockImpl>(p, c, out_c, C));
      resnets->push_back(lv->res.back());
      c = out_c;
      if (attentions) {
        lv->att.push_back(attention(c, i));
        attentions->push_back(lv->att.back());
      }
      skips.push_back(c);
    }
    if (i + 1 < L) {
      if (p.resblock_updown) lv->res_sampler = lv->register_module("downsampler", std::make_shared<MonaiResBlockImpl>(p, c, c, C, -1));
      else lv->conv_down = lv->register_module("downsampler", std::make_shared<MonaiConvDownImpl>(c));
      skips.push_back(c);
    }
  }
  auto mid = register_module("middle_block", std::make_shared<torch::nn::Module>());
  mid_res1 = mid->register_module("resnet_1", std::make_shared<MonaiResBlockImpl>(p, c, c, C));
  mid_attention = mid->register_module("attention", attention(c, L - 1));
  mid_res2 = mid->register_module("resnet_2", std::make_shared<MonaiResBlockImpl>(p, c, c, C));

  up_blocks = register_module("up_blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < L; ++i) {
    const int64_t level = L - 1 - i, out_c = p.channels[static_cast<size_t>(level)];
    auto lv = add_level(up_blocks, ups);
    auto resnets = lv->register_module("resnets", torch::nn::ModuleList());
    torch::nn::ModuleList attentions{nullptr};
    if (p.attention_at(level)) attentions = lv->register_module("attentions", torch::nn::ModuleList());
    for (int64_t r = 0; r < p.num_res_blocks[static_cast<size_t>(level)] + 1; ++r) {
      const int64_t skip = skips.back();
      skips.pop_back();
      lv->res.push_back(std::make_shared<MonaiResBlockImpl>(p, c + skip, out_c, C));
      resnets->push_back(lv->res.back());
      c = out_c;
      if (attentions) {
        lv->att.push_back(attention(c, level));
        attentions->push_back(lv->att.back());
      }
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
  auto emb = time_embed->forward(timestep_embedding(timesteps.to(x.device()), p.channels[0]).to(x.scalar_type()));
  if (class_embedding) {
    TORCH_CHECK(in.class_labels.defined(), "MONAI U-Net: the network is class-conditional and needs class labels");
    emb = emb + class_embedding->forward(in.class_labels.to(x.device(), torch::kLong)).to(x.scalar_type());
  }
  std::vector<torch::Tensor> parts{emb};
  if (top_region_index_layer) parts.push_back(top_region_index_layer->forward(need(in.top_region, "top_region", 4)));
  if (bottom_region_index_layer) parts.push_back(bottom_region_index_layer->forward(need(in.bottom_region, "bottom_region", 4)));
  if (spacing_layer) parts.push_back(spacing_layer->forward(need(in.spacing, "spacing", 3)));
  if (parts.size() > 1) emb = torch::cat(parts, 1);

  auto h = conv_in->forward(x);
  std::vector<torch::Tensor> skips{h};
  for (auto& lv : downs) {
    for (size_t r = 0; r < lv->res.size(); ++r) {
      h = lv->res[r]->forward(h, emb);
      if (!lv->att.empty()) h = lv->att[r]->forward(h);
      skips.push_back(h);
    }
    if (lv->resamples()) {
      h = lv->resample(h, emb);
      skips.push_back(h);
    }
  }
  h = mid_res2->forward(mid_attention->forward(mid_res1->forward(h, emb)), emb);
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
