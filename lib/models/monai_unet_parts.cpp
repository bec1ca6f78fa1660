#include "models/monai_unet_parts.h"

#include "models/unet3d.h"

namespace meddiff {
namespace F = torch::nn::functional;

MonaiResBlockImpl::MonaiResBlockImpl(const MonaiUNetParams& p, int64_t in, int64_t out, int64_t emb, int resample) : resample(resample) {
  norm1 = register_module("norm1", MonaiNorm(in, p.norm_groups, p.norm_eps));
  conv1 = register_module("conv1", MonaiConv(in, out, 3));
  time_emb_proj = register_module("time_emb_proj", torch::nn::Linear(emb, out));
  norm2 = register_module("norm2", MonaiNorm(out, p.norm_groups, p.norm_eps));
  conv2 = register_module("conv2", MonaiConv(out, out, 3));
  if (in != out) skip_connection = register_module("skip_connection", MonaiConv(in, out, 1));
}

torch::Tensor MonaiResBlockImpl::forward(torch::Tensor x, const torch::Tensor& emb) {
  auto resampled = [&](const torch::Tensor& t) {
    if (resample > 0) return upsample2x(t);
    if (resample < 0) return F::avg_pool3d(t, F::AvgPool3dFuncOptions(2).stride(2));
    return t;
  };
  auto h = resampled(norm1->forward(x, true));
  x = resampled(x);
  h = conv1->forward(h);
  h = h + time_emb_proj(torch::silu(emb)).unsqueeze(-1).unsqueeze(-1).unsqueeze(-1);
  h = conv2->forward(norm2->forward(h, true));
  return (skip_connection ? skip_connection->forward(x) : x) + h;
}

MonaiConvDownImpl::MonaiConvDownImpl(int64_t c) { op = register_module("op", MonaiConv(c, c, 3, 2, 1)); }

torch::Tensor MonaiUNetLevelImpl::resample(const torch::Tensor& h, const torch::Tensor& emb) {
  if (res_sampler) return res_sampler->forward(h, emb);
  if (conv_down) return conv_down->op->forward(h);
  if (conv_up) return conv_up->forward(h);
  return h;
}

void MonaiUNetLevelImpl::add_block(const MonaiUNetParams& p, int64_t in, int64_t out, int64_t emb, int64_t level) {
  if (!resnets) resnets = register_module("resnets", torch::nn::ModuleList());
  res.push_back(std::make_shared<MonaiResBlockImpl>(p, in, out, emb));
  resnets->push_back(res.back());
  if (!p.attention_at(level)) return;
  if (!attentions) attentions = register_module("attentions", torch::nn::ModuleList());
  att.push_back(monai_unet_attention(p, out, level));
  attentions->push_back(att.back());
}

std::shared_ptr<MonaiUNetLevelImpl> MonaiUNetLevelImpl::append(torch::nn::ModuleList list, std::vector<std::shared_ptr<MonaiUNetLevelImpl>>& levels) {
  auto lv = std::make_shared<MonaiUNetLevelImpl>();
  list->push_back(lv);
  levels.push_back(lv);
  return lv;
}

MonaiAttention monai_unet_attention(const MonaiUNetParams& p, int64_t c, int64_t level) {
  return MonaiAttention(c, c / p.num_head_channels[static_cast<size_t>(level)], p.include_fc, p.norm_groups, p.norm_eps);
}

void MonaiDownPath::build(torch::nn::Module& owner, const MonaiUNetParams& p, int64_t E) {
  const int64_t L = p.levels();
  auto down_blocks = owner.register_module("down_blocks", torch::nn::ModuleList());
  skip_channels = {p.channels[0]};
  int64_t c = p.channels[0];
  for (int64_t i = 0; i < L; ++i) {
    auto lv = MonaiUNetLevelImpl::append(down_blocks, levels);
    const int64_t out_c = p.channels[static_cast<size_t>(i)];
    for (int64_t r = 0; r < p.num_res_blocks[static_cast<size_t>(i)]; ++r) {
      lv->add_block(p, c, out_c, E, i);
      c = out_c;
      skip_channels.push_back(c);
    }
    if (i + 1 < L) {
      if (p.resblock_updown) lv->res_sampler = lv->register_module("downsampler", std::make_shared<MonaiResBlockImpl>(p, c, c, E, -1));
      else lv->conv_down = lv->register_module("downsampler", std::make_shared<MonaiConvDownImpl>(c));
      skip_channels.push_back(c);
    }
  }
  auto mid = owner.register_module("middle_block", std::make_shared<torch::nn::Module>());
  mid_res1 = mid->register_module("resnet_1", std::make_shared<MonaiResBlockImpl>(p, c, c, E));
  mid_attention = mid->register_module("attention", monai_unet_attention(p, c, L - 1));
  mid_res2 = mid->register_module("resnet_2", std::make_shared<MonaiResBlockImpl>(p, c, c, E));
  out_channels = c;
}

torch::Tensor MonaiDownPath::down(torch::Tensor h, const torch::Tensor& emb, std::vector<torch::Tensor>& skips) {
  skips.push_back(h);
  for (const auto& lv : levels) {
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
  return h;
}

torch::Tensor MonaiDownPath::middle(const torch::Tensor& h, const torch::Tensor& emb) {
  return mid_res2->forward(mid_attention->forward(mid_res1->forward(h, emb)), emb);
}

torch::Tensor monai_time_class_embedding(torch::nn::Sequential& time_embed, torch::nn::Embedding& class_embedding, int64_t channels0,
                                         const torch::Tensor& x, const torch::Tensor& timesteps, const torch::Tensor& class_labels,
                                         const char* network) {
  auto emb = time_embed->forward(timestep_embedding(timesteps.to(x.device()), channels0).to(x.scalar_type()));
  if (class_embedding) {
    TORCH_CHECK(class_labels.defined(), network, ": the network is class-conditional and needs class labels");
    emb = emb + class_embedding->forward(class_labels.to(x.device(), torch::kLong)).to(x.scalar_type());
  }
  return emb;
}

}  // namespace meddiff
