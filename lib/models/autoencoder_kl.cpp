#include "models/autoencoder_kl.h"

namespace meddiff {
namespace F = torch::nn::functional;

KLDownsampleImpl::KLDownsampleImpl(int64_t c) { conv = register_module("conv", MonaiConv(c, c, 3, 2, 0)); }

torch::Tensor KLDownsampleImpl::forward(const torch::Tensor& x) {
  return conv->forward(F::pad(x, F::PadFuncOptions({0, 1, 0, 1, 0, 1}).mode(torch::kConstant).value(0.0)));
}

KLResBlockImpl::KLResBlockImpl(const KLParams& p, int64_t in, int64_t out) {
  norm1 = register_module("norm1", MonaiNorm(in, p.norm_groups, p.norm_eps, p.norm_float16));
  conv1 = register_module("conv1", MonaiConv(in, out, 3));
  norm2 = register_module("norm2", MonaiNorm(out, p.norm_groups, p.norm_eps, p.norm_float16));
  conv2 = register_module("conv2", MonaiConv(out, out, 3));
  if (in != out) nin_shortcut = register_module("nin_shortcut", MonaiConv(in, out, 1));
}

torch::Tensor KLResBlockImpl::forward(const torch::Tensor& x) {
  auto h = conv1->forward(norm1->forward(x, true));
  h = conv2->forward(norm2->forward(h, true));
  return (nin_shortcut ? nin_shortcut->forward(x) : x) + h;
}

KLCoderImpl::KLCoderImpl(const KLParams& p, int64_t in_channels, int64_t out_channels, bool decoder) {
  blocks = register_module("blocks", torch::nn::ModuleList());
  auto add = [this](auto layer) {  // a shared_ptr to a module with forward(x)
    blocks->push_back(layer);
    layers.push_back([layer](const torch::Tensor& x) { return layer->forward(x); });
  };
  auto res = [&](int64_t in, int64_t out) { add(std::make_shared<KLResBlockImpl>(p, in, out)); };
  auto attention = [&](int64_t c) { add(MonaiAttention(c, 1, true, p.norm_groups, p.norm_eps).ptr()); };
  auto conv = [&](int64_t in, int64_t out) { add(MonaiConv(in, out, 3).ptr()); };
  auto mid = [&](int64_t c) {
    res(c, c);
    attention(c);
    res(c, c);
  };
  const int64_t L = p.levels();
  auto level_channels = [&](int64_t i) { return p.channels[static_cast<size_t>(decoder ? L - 1 - i : i)]; };
  int64_t c = level_channels(0);
  conv(in_channels, c);
  if (decoder && p.decoder_mid_attention) mid(c);
  for (int64_t i = 0; i < L; ++i) {
    int64_t level = decoder ? L - 1 - i : i;
    int64_t out = level_channels(i);
    for (int64_t r = 0; r < p.res_blocks(level); ++r) {
      res(c, out);
      c = out;
      if (p.attention_at(level)) attention(c);
    }
    if (i + 1 < L) {
      if (decoder) add(MonaiUpsample(c, p.upsample == "trilinear").ptr());
      else add(std::make_shared<KLDownsampleImpl>(c));
    }
  }
  if (!decoder && p.encoder_mid_attention) mid(c);
  add(MonaiNorm(c, p.norm_groups, p.norm_eps, p.norm_float16).ptr());
  conv(c, out_channels);
}

torch::Tensor KLCoderImpl::forward(torch::Tensor x) {
  for (auto& l : layers) x = l(x);
  return x;
}

AutoencoderKLImpl::AutoencoderKLImpl(const KLParams& p, int64_t image_channels) : params(p), channels(image_channels) {
  p.validate();
  encoder = register_module("encoder", KLCoder(p, image_channels, p.latent_channels, false));
  decoder = register_module("decoder", KLCoder(p, p.latent_channels, image_channels, true));
  quant_conv_mu = register_module("quant_conv_mu", MonaiConv(p.latent_channels, p.latent_channels, 1));
  quant_conv_log_sigma = register_module("quant_conv_log_sigma", MonaiConv(p.latent_channels, p.latent_channels, 1));
  post_quant_conv = register_module("post_quant_conv", MonaiConv(p.latent_channels, p.latent_channels, 1));
}

KLPosterior AutoencoderKLImpl::encode(const torch::Tensor& x) { return posterior(encoder->forward(x)); }

KLPosterior AutoencoderKLImpl::posterior(const torch::Tensor& h) {
  auto log_var = torch::clamp(quant_conv_log_sigma->forward(h), -30.0, 20.0);
  return {quant_conv_mu->forward(h), torch::exp(log_var / 2)};
}

torch::Tensor AutoencoderKLImpl::decode(const torch::Tensor& z) { return decoder->forward(post_quant_conv->forward(z)); }

}  // namespace meddiff
