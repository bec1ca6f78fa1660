#include "models/unet3d.h"
#include "ops/conv.h"

#include "core/error.h"
#include "ops/attention.h"
#include "ops/norm_act.h"

#include <algorithm>
#include <cmath>

namespace meddiff {

void UNetParams::validate(const std::string& w) const {
  if (base_channels < 1) fail("config: '{}.base_channels' must be positive", w);
  if (channel_mults.empty()) fail("config: '{}.channel_mults' needs at least one level", w);
  for (auto m : channel_mults)
    if (m < 1) fail("config: '{}.channel_mults' values must be positive", w);
  if (downsample.size() + 1 != channel_mults.size())
    fail("config: '{}.downsample' needs {} entries (one per level transition), got {}", w, channel_mults.size() - 1, downsample.size());
  for (const auto& d : downsample)
    for (auto f : d)
      if (f != 1 && f != 2) fail("config: '{}.downsample' factors must be 1 or 2 (got {})", w, f);
  for (auto l : attention_levels)
    if (l < 0 || l >= static_cast<int64_t>(channel_mults.size()))
      fail("config: '{}.attention_levels' has level {}, the U-Net has {} levels", w, l, channel_mults.size());
  if (attention_heads < 1) fail("config: '{}.attention_heads' must be positive", w);
  if (num_res_blocks < 1) fail("config: '{}.num_res_blocks' must be at least 1", w);
  if (!(dropout >= 0 && dropout < 1)) fail("config: '{}.dropout' must be within [0, 1)", w);
  if (!(class_dropout >= 0 && class_dropout < 1)) fail("config: '{}.class_dropout' must be within [0, 1)", w);
  if (!(label_dropout >= 0 && label_dropout < 1)) fail("config: '{}.label_dropout' must be within [0, 1)", w);
  for (auto m : channel_mults) {
    int64_t ch = base_channels * m;
    if (ch % attention_heads != 0) fail("config: '{}.attention_heads' ({}) must divide every level's channels ({})", w, attention_heads, ch);
  }
}

torch::Tensor timestep_embedding(const torch::Tensor& t, int64_t dim) {
  int64_t half = dim / 2;
  auto freqs = torch::exp(-std::log(10000.0) * torch::arange(half, torch::TensorOptions().dtype(torch::kFloat).device(t.device())) /
                          static_cast<double>(half));                 // [half]
  auto args = t.to(torch::kFloat).unsqueeze(1) * freqs.unsqueeze(0);  // [B, half]
  auto emb = torch::cat({torch::cos(args), torch::sin(args)}, 1);     // [B, 2*half]
  if (dim % 2) emb = torch::cat({emb, torch::zeros({t.size(0), 1}, emb.options())}, 1);
  return emb;
}

FiLMResBlockImpl::FiLMResBlockImpl(int64_t in, int64_t out, int64_t emb_dim, double dropout) {
  norm1 = register_module("norm1", group_norm(in, 1e-5));
  conv1 = register_module("conv1", torch::nn::Conv3d(torch::nn::Conv3dOptions(in, out, 3).padding(1)));
  film = register_module("film", torch::nn::Linear(emb_dim, 2 * out));
  norm2 = register_module("norm2", group_norm(out, 1e-5));
  drop = register_module("drop", torch::nn::Dropout(dropout));
  conv2 = register_module("conv2", torch::nn::Conv3d(torch::nn::Conv3dOptions(out, out, 3).padding(1)));
  torch::NoGradGuard ng;
  conv2->weight.zero_();  // each block starts as the identity
  conv2->bias.zero_();
  if (in != out) skip = register_module("skip", torch::nn::Conv3d(torch::nn::Conv3dOptions(in, out, 1)));
  fn = [this](const std::vector<torch::Tensor>& in) { return forward_impl(in[0], in[1]); };
}

torch::Tensor FiLMResBlockImpl::forward(const torch::Tensor& x, const torch::Tensor& emb) {
  return checkpointing && is_training() ? recompute(fn, {x, emb}) : forward_impl(x, emb);
}

torch::Tensor FiLMResBlockImpl::forward_impl(const torch::Tensor& x, const torch::Tensor& emb) {
  auto h = ops::conv3d(conv1, ops::norm_act(norm1, x));  // [B, out, d, h, w]
  auto ss = film(torch::silu(emb));                         // [B, 2*out]
  auto scale = ss.slice(1, 0, h.size(1)), shift = ss.slice(1, h.size(1));
  h = ops::norm_act(norm2, h, scale, shift);                // GN, FiLM (Perez et al. 2018), SiLU
  h = ops::conv3d(conv2, drop(h));
  return h + (skip ? ops::conv3d(skip, x) : x);
}

AttentionBlock3dImpl::AttentionBlock3dImpl(int64_t c, int64_t h, int64_t max_tokens) : heads(h), max_full_tokens(max_tokens) {
  norm = register_module("norm", group_norm(c, 1e-5));
  qkv = register_module("qkv", torch::nn::Conv3d(torch::nn::Conv3dOptions(c, 3 * c, 1)));
  proj = register_module("proj", torch::nn::Conv3d(torch::nn::Conv3dOptions(c, c, 1)));
  torch::NoGradGuard ng;
  proj->weight.zero_();
  proj->bias.zero_();
  fn = [this](const std::vector<torch::Tensor>& in) { return forward_impl(in[0]); };
}

torch::Tensor AttentionBlock3dImpl::forward(const torch::Tensor& x) {
  return checkpointing && is_training() ? recompute(fn, {x}) : forward_impl(x);
}

torch::Tensor AttentionBlock3dImpl::forward_impl(const torch::Tensor& x) {
  const int64_t B = x.size(0), C = x.size(1), D = x.size(2), H = x.size(3), W = x.size(4), dh = C / heads;
  auto qkv5 = ops::conv3d(qkv, ops::norm_act(norm, x, {}, {}, false)).view({B, 3, heads, dh, D, H, W});
  auto q = qkv5.select(1, 0), k = qkv5.select(1, 1), v = qkv5.select(1, 2);  // [B, heads, dh, D, H, W] views
  auto out = torch::empty({B, heads, dh, D, H, W}, q.options());
  // The attention op takes the views as they are (its CUDA kernel reads them in place; the LibTorch
  // path copies them contiguous) and writes into views of `out`.
  if (D * H * W <= max_full_tokens) {
    auto o = ops::spatial_tokens(out);
    ops::attention_into(ops::spatial_tokens(q), ops::spatial_tokens(k), ops::spatial_tokens(v), o);
  } else {
    ops::axial_attention_into(q, k, v, out);
  }
  return x + ops::conv3d(proj, out.view({B, C, D, H, W}));
}

namespace {
struct DownsampleImpl : torch::nn::Module {
  DownsampleImpl(int64_t c, std::array<int64_t, 3> f) {
    conv = register_module("conv", torch::nn::Conv3d(torch::nn::Conv3dOptions(c, c, 3).stride({f[0], f[1], f[2]}).padding(1)));
  }
  torch::Tensor forward(const torch::Tensor& x) { return ops::conv3d(conv, x); }
  torch::nn::Conv3d conv{nullptr};
};
TORCH_MODULE(Downsample);

struct UpsampleImpl : torch::nn::Module {
  UpsampleImpl(int64_t c, std::array<int64_t, 3> f) : factor(f) {
    conv = register_module("conv", torch::nn::Conv3d(torch::nn::Conv3dOptions(c, c, 3).padding(1)));
  }
  torch::Tensor forward(const torch::Tensor& x, const std::vector<int64_t>& size) {
    namespace F = torch::nn::functional;
    return ops::conv3d(conv, F::interpolate(x, F::InterpolateFuncOptions().size(size).mode(torch::kNearest)));
  }
  std::array<int64_t, 3> factor;
  torch::nn::Conv3d conv{nullptr};
};
TORCH_MODULE(Upsample);
}  // namespace

UNet3dImpl::UNet3dImpl(const UNetParams& p, int64_t ch, int64_t n_classes, int64_t cond_ch)
    : params(p), channels(ch), num_classes(p.conditional ? n_classes : 0), cond_channels(cond_ch) {
  p.validate();
  const int64_t base = p.base_channels, emb = 4 * base;
  time_mlp = register_module("time_mlp", torch::nn::Sequential(torch::nn::Linear(base, emb), torch::nn::SiLU(),
                                                               torch::nn::Linear(emb, emb)));
  if (num_classes > 0) class_emb = register_module("class_emb", torch::nn::Embedding(num_classes + 1, emb));
  conv_in = register_module("conv_in", torch::nn::Conv3d(torch::nn::Conv3dOptions(ch + cond_ch, base, 3).padding(1)));
  down_blocks = register_module("down_blocks", torch::nn::ModuleList());
  down_attn = register_module("down_attn", torch::nn::ModuleList());
  down_samplers = register_module("down_samplers", torch::nn::ModuleList());
  up_blocks = register_module("up_blocks", torch::nn::ModuleList());
  up_attn = register_module("up_attn", torch::nn::ModuleList());
  up_samplers = register_module("up_samplers", torch::nn::ModuleList());
  const auto levels = static_cast<int64_t>(p.channel_mults.size());
  auto has_attn = [&](int64_t l) { return std::find(p.attention_levels.begin(), p.attention_levels.end(), l) != p.attention_levels.end(); };
  std::vector<int64_t> skip_ch{base};
  int64_t cur = base;
  for (int64_t l = 0; l < levels; ++l) {
    int64_t out = base * p.channel_mults[static_cast<size_t>(l)];
    for (int64_t r = 0; r < p.num_res_blocks; ++r) {
      down_blocks->push_back(FiLMResBlock(cur, out, emb, p.dropout));
      if (has_attn(l)) down_attn->push_back(AttentionBlock3d(out, p.attention_heads, p.max_full_attention_tokens));
      else down_attn->push_back(torch::nn::Identity());
      cur = out;
      skip_ch.push_back(cur);
    }
    if (l + 1 < levels) {
      down_samplers->push_back(Downsample(cur, p.downsample[static_cast<size_t>(l)]));
      skip_ch.push_back(cur);
    }
  }
  mid1 = register_module("mid1", FiLMResBlock(cur, cur, emb, p.dropout));
  mid_attn = register_module("mid_attn", AttentionBlock3d(cur, p.attention_heads, p.max_full_attention_tokens));
  mid2 = register_module("mid2", FiLMResBlock(cur, cur, emb, p.dropout));
  for (int64_t l = levels - 1; l >= 0; --l) {
    int64_t out = base * p.channel_mults[static_cast<size_t>(l)];
    for (int64_t r = 0; r < p.num_res_blocks + 1; ++r) {
      int64_t s = skip_ch.back();
      skip_ch.pop_back();
      up_blocks->push_back(FiLMResBlock(cur + s, out, emb, p.dropout));
      if (has_attn(l)) up_attn->push_back(AttentionBlock3d(out, p.attention_heads, p.max_full_attention_tokens));
      else up_attn->push_back(torch::nn::Identity());
      cur = out;
    }
    if (l > 0) up_samplers->push_back(Upsample(cur, p.downsample[static_cast<size_t>(l - 1)]));
  }
  norm_out = register_module("norm_out", group_norm(cur, 1e-5));
  conv_out = register_module("conv_out", torch::nn::Conv3d(torch::nn::Conv3dOptions(cur, ch, 3).padding(1)));
  torch::NoGradGuard ng;
  conv_out->weight.zero_();
  conv_out->bias.zero_();
}

torch::Tensor UNet3dImpl::forward(const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& cls, const torch::Tensor& cond) {
  auto emb = time_mlp->forward(timestep_embedding(t, params.base_channels));  // [B, 4*base]
  if (class_emb) {
    auto c = cls.defined() && cls.numel() > 0 ? cls : torch::full({x.size(0)}, num_classes, t.options());
    emb = emb + class_emb(c);
  }
  auto apply_attn = [](const std::shared_ptr<torch::nn::Module>& m, const torch::Tensor& h) {
    if (auto a = std::dynamic_pointer_cast<AttentionBlock3dImpl>(m)) return a->forward(h);
    return h;
  };
  torch::Tensor h;
  if (cond_channels > 0) {  // the label condition joins the input; none given = the null condition (zeros)
    auto c = cond.defined() ? cond.to(x.dtype())
                            : torch::zeros({x.size(0), cond_channels, x.size(2), x.size(3), x.size(4)}, x.options());
    h = ops::conv3d(conv_in, torch::cat({x, c}, 1));
  } else {
    h = ops::conv3d(conv_in, x);  // [B, base, d, h, w]
  }
  std::vector<torch::Tensor> skips{h};
  const auto levels = static_cast<int64_t>(params.channel_mults.size());
  size_t bi = 0, si = 0;
  for (int64_t l = 0; l < levels; ++l) {
    for (int64_t r = 0; r < params.num_res_blocks; ++r, ++bi) {
      h = down_blocks[bi]->as<FiLMResBlockImpl>()->forward(h, emb);
      h = apply_attn(down_attn[bi], h);
      skips.push_back(h);
    }
    if (l + 1 < levels) {
      h = down_samplers[si++]->as<DownsampleImpl>()->forward(h);  // halves the chosen axes
      skips.push_back(h);
    }
  }
  h = mid2(mid_attn(mid1(h, emb)), emb);
  bi = 0;
  si = 0;
  for (int64_t l = levels - 1; l >= 0; --l) {
    for (int64_t r = 0; r < params.num_res_blocks + 1; ++r, ++bi) {
      auto s = skips.back();
      skips.pop_back();
      h = up_blocks[bi]->as<FiLMResBlockImpl>()->forward(torch::cat({h, s}, 1), emb);
      h = apply_attn(up_attn[bi], h);
    }
    if (l > 0) {
      auto target = skips.back().sizes();  // the size before this level's downsampling
      h = up_samplers[si++]->as<UpsampleImpl>()->forward(h, {target[2], target[3], target[4]});
    }
  }
  return ops::conv3d(conv_out, ops::norm_act(norm_out, h));  // [B, C, d, h, w]
}

}  // namespace meddiff
