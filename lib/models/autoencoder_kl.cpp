#include "models/autoencoder_kl.h"
#include "ops/attention.h"
#include "ops/conv.h"
#include "ops/norm_act.h"

namespace meddiff {
namespace {

namespace F = torch::nn::functional;

// GroupNorm whose weight and bias are the layer's own parameters ("blocks.N.weight" in MONAI's list).
struct KLNormImpl : KLLayer {
  KLNormImpl(int64_t channels, int64_t groups, double eps) : groups(groups), eps(eps) {
    weight = register_parameter("weight", torch::ones({channels}));
    bias = register_parameter("bias", torch::zeros({channels}));
  }
  torch::Tensor forward(const torch::Tensor& x) override { return ops::norm_act(x, groups, weight, bias, eps, {}, {}, false); }
  torch::Tensor norm_silu(const torch::Tensor& x) const { return ops::norm_act(x, groups, weight, bias, eps, {}, {}, true); }
  int64_t groups;
  double eps;
  torch::Tensor weight, bias;
};

std::shared_ptr<KLNormImpl> norm(const KLParams& p, int64_t c) { return std::make_shared<KLNormImpl>(c, p.norm_groups, p.norm_eps); }

struct KLResBlockImpl : KLLayer {
  KLResBlockImpl(const KLParams& p, int64_t in, int64_t out) {
    norm1 = register_module("norm1", norm(p, in));
    conv1 = register_module("conv1", std::make_shared<KLConvImpl>(in, out, 3));
    norm2 = register_module("norm2", norm(p, out));
    conv2 = register_module("conv2", std::make_shared<KLConvImpl>(out, out, 3));
    if (in != out) nin_shortcut = register_module("nin_shortcut", std::make_shared<KLConvImpl>(in, out, 1));
  }
  torch::Tensor forward(const torch::Tensor& x) override {
    auto h = conv1->forward(norm1->norm_silu(x));
    h = conv2->forward(norm2->norm_silu(h));
    return (nin_shortcut ? nin_shortcut->forward(x) : x) + h;
  }
  std::shared_ptr<KLNormImpl> norm1, norm2;
  std::shared_ptr<KLConvImpl> conv1, conv2, nin_shortcut;
};

// MONAI's SABlock with one head and separate projections (the "attn" child of the attention block).
struct KLSelfAttentionImpl : torch::nn::Module {
  explicit KLSelfAttentionImpl(int64_t c) {
    out_proj = register_module("out_proj", torch::nn::Linear(c, c));
    to_q = register_module("to_q", torch::nn::Linear(c, c));
    to_k = register_module("to_k", torch::nn::Linear(c, c));
    to_v = register_module("to_v", torch::nn::Linear(c, c));
  }
  torch::nn::Linear out_proj{nullptr}, to_q{nullptr}, to_k{nullptr}, to_v{nullptr};
};

struct KLAttentionImpl : KLLayer {
  KLAttentionImpl(const KLParams& p, int64_t c) {
    norm_ = register_module("norm", norm(p, c));
    attn = register_module("attn", std::make_shared<KLSelfAttentionImpl>(c));
  }
  torch::Tensor forward(const torch::Tensor& x) override {
    auto shape = x.sizes().vec();
    auto t = norm_->forward(x).flatten(2).transpose(1, 2);  // [B, N, C]
    auto q = attn->to_q(t).unsqueeze(1), k = attn->to_k(t).unsqueeze(1), v = attn->to_v(t).unsqueeze(1);  // [B, 1, N, C]
    auto o = attn->out_proj(ops::attention(q, k, v).squeeze(1));                                        // [B, N, C]
    return o.transpose(1, 2).reshape(shape) + x;
  }
  std::shared_ptr<KLNormImpl> norm_;
  std::shared_ptr<KLSelfAttentionImpl> attn;
};

// Stride-2 3^3 convolution after padding one zero at the end of every spatial axis.
struct KLDownsampleImpl : KLLayer {
  explicit KLDownsampleImpl(int64_t c) { conv = register_module("conv", std::make_shared<KLConvImpl>(c, c, 3, 2, 0)); }
  torch::Tensor forward(const torch::Tensor& x) override {
    return conv->forward(F::pad(x, F::PadFuncOptions({0, 1, 0, 1, 0, 1}).mode(torch::kConstant).value(0.0)));
  }
  std::shared_ptr<KLConvImpl> conv;
};

// x2 interpolation (nearest, or trilinear without aligned corners) then a 3^3 convolution.
struct KLUpsampleImpl : KLLayer {
  KLUpsampleImpl(int64_t c, bool trilinear) : trilinear(trilinear) {
    postconv = register_module("postconv", std::make_shared<KLConvImpl>(c, c, 3));
  }
  torch::Tensor forward(const torch::Tensor& x) override {
    auto o = F::InterpolateFuncOptions().scale_factor(std::vector<double>{2.0, 2.0, 2.0});
    if (trilinear) o.mode(torch::kTrilinear).align_corners(false);
    else o.mode(torch::kNearest);
    return postconv->forward(F::interpolate(x, o));
  }
  bool trilinear;
  std::shared_ptr<KLConvImpl> postconv;
};

}  // namespace

KLConvImpl::KLConvImpl(int64_t in, int64_t out, int64_t k, int64_t s, int64_t p) {
  conv = register_module("conv", torch::nn::Conv3d(torch::nn::Conv3dOptions(in, out, k).stride(s).padding(p < 0 ? k / 2 : p).bias(true)));
}

torch::Tensor KLConvImpl::forward(const torch::Tensor& x) { return ops::conv3d(conv, x); }

KLCoderImpl::KLCoderImpl(const KLParams& p, int64_t in_channels, int64_t out_channels, bool decoder) {
  blocks = register_module("blocks", torch::nn::ModuleList());
  auto add = [this](std::shared_ptr<KLLayer> l) {
    blocks->push_back(l);
    layers.push_back(std::move(l));
  };
  auto mid = [&](int64_t c) {
    add(std::make_shared<KLResBlockImpl>(p, c, c));
    add(std::make_shared<KLAttentionImpl>(p, c));
    add(std::make_shared<KLResBlockImpl>(p, c, c));
  };
  const int64_t L = p.levels();
  auto level_channels = [&](int64_t i) { return p.channels[static_cast<size_t>(decoder ? L - 1 - i : i)]; };
  int64_t c = level_channels(0);
  add(std::make_shared<KLConvImpl>(in_channels, c, 3));
  if (decoder && p.decoder_mid_attention) mid(c);
  for (int64_t i = 0; i < L; ++i) {
    int64_t level = decoder ? L - 1 - i : i;
    int64_t out = level_channels(i);
    for (int64_t r = 0; r < p.res_blocks(level); ++r) {
      add(std::make_shared<KLResBlockImpl>(p, c, out));
      c = out;
      if (p.attention_at(level)) add(std::make_shared<KLAttentionImpl>(p, c));
    }
    if (i + 1 < L) {
      if (decoder) add(std::make_shared<KLUpsampleImpl>(c, p.upsample == "trilinear"));
      else add(std::make_shared<KLDownsampleImpl>(c));
    }
  }
  if (!decoder && p.encoder_mid_attention) mid(c);
  add(norm(p, c));
  add(std::make_shared<KLConvImpl>(c, out_channels, 3));
}

torch::Tensor KLCoderImpl::forward(torch::Tensor x) {
  for (auto& l : layers) x = l->forward(x);
  return x;
}

AutoencoderKLImpl::AutoencoderKLImpl(const KLParams& p, int64_t image_channels) : params(p), channels(image_channels) {
  p.validate();
  encoder = register_module("encoder", KLCoder(p, image_channels, p.latent_channels, false));
  decoder = register_module("decoder", KLCoder(p, p.latent_channels, image_channels, true));
  quant_conv_mu = register_module("quant_conv_mu", std::make_shared<KLConvImpl>(p.latent_channels, p.latent_channels, 1));
  quant_conv_log_sigma = register_module("quant_conv_log_sigma", std::make_shared<KLConvImpl>(p.latent_channels, p.latent_channels, 1));
  post_quant_conv = register_module("post_quant_conv", std::make_shared<KLConvImpl>(p.latent_channels, p.latent_channels, 1));
}

KLPosterior AutoencoderKLImpl::encode(const torch::Tensor& x) {
  auto h = encoder->forward(x);
  auto log_var = torch::clamp(quant_conv_log_sigma->forward(h), -30.0, 20.0);
  return {quant_conv_mu->forward(h), torch::exp(log_var / 2)};
}

torch::Tensor AutoencoderKLImpl::decode(const torch::Tensor& z) { return decoder->forward(post_quant_conv->forward(z)); }

std::pair<torch::Tensor, KLPosterior> AutoencoderKLImpl::forward(const torch::Tensor& x, std::optional<at::Generator> gen) {
  auto q = encode(x);
  auto eps = torch::randn(q.sigma.sizes(), gen, q.sigma.options());
  return {decode(q.mu + eps * q.sigma), q};
}

std::string maisi_autoencoder_key(const std::string& key) {
  auto replace_first = [&](const std::string& from, const std::string& to) {
    auto i = key.find(from);
    return i == std::string::npos ? std::string() : key.substr(0, i) + to + key.substr(i + from.size());
  };
  bool coder = key.rfind("encoder.", 0) == 0 || key.rfind("decoder.", 0) == 0;
  if (!coder) return key;
  if (key.rfind("decoder.", 0) == 0) {
    auto up = replace_first(".conv.conv.conv.", ".postconv.conv.");
    if (!up.empty()) return up;
  }
  auto conv = replace_first(".conv.conv.", ".conv.");
  return conv.empty() ? key : conv;
}

torch::Tensor kl_divergence(const KLPosterior& q) {
  auto var = q.sigma.pow(2);
  auto kl = 0.5 * (q.mu.pow(2) + var - torch::log(var) - 1);
  return kl.flatten(1).sum(1).mean();
}

}  // namespace meddiff
