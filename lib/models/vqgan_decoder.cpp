#include "models/vqgan_decoder.h"

#include "core/error.h"
#include "ops/conv.h"
#include "ops/norm_act.h"

namespace meddiff {

VQDecoderImpl::VQDecoderImpl(const VQGANParams& p, int64_t image_channels) : label_classes(p.decoder_labels) {
  auto strides = stage_strides(p);
  auto n = static_cast<int64_t>(strides.size());
  int64_t ch = p.n_hiddens << n;
  post_vq_conv = register_module("post_vq_conv", torch::nn::Conv3d(torch::nn::Conv3dOptions(p.embedding_dim, ch, 1)));
  up = register_module("up", torch::nn::ModuleList());
  if (label_classes > 0) label_in = register_module("label_in", torch::nn::ModuleList());
  for (int64_t i = n - 1; i >= 0; --i) {
    const auto& s = strides[static_cast<size_t>(i)];
    int64_t out = p.n_hiddens << i;
    torch::nn::Sequential stage;
    // kernel 4 / stride 2 / padding 1 doubles an axis; kernel 3 / stride 1 / padding 1 keeps it.
    stage->push_back(torch::nn::ConvTranspose3d(
        torch::nn::ConvTranspose3dOptions(ch, out, {s[0] == 2 ? 4 : 3, s[1] == 2 ? 4 : 3, s[2] == 2 ? 4 : 3})
            .stride({s[0], s[1], s[2]})
            .padding(1)));
    for (int64_t r = 0; r < p.n_res_blocks + 1; ++r) stage->push_back(ResBlock3d(out, out));
    up->push_back(stage);
    if (label_classes > 0) {
      torch::nn::Conv3d conv(torch::nn::Conv3dOptions(label_classes, out, 1).bias(false));
      torch::nn::init::zeros_(conv->weight);
      label_in->push_back(conv);
      Int3 pool{1, 1, 1};  // this stage's output has the resolution of encoder stage i's input
      for (int64_t j = 0; j < i; ++j)
        for (size_t a = 0; a < 3; ++a) pool[a] *= strides[static_cast<size_t>(j)][a];
      label_pool.push_back(pool);
    }
    ch = out;
  }
  final_norm = register_module("final_norm", group_norm(ch));
  conv_last = register_module("conv_last", SamePadConv3d(ch, image_channels, Int3{3, 3, 3}, Int3{1, 1, 1}));
  if (label_classes > 0) {  // the output's own term: an intensity offset per label and channel, sharp at the map's edges
    torch::nn::Conv3d conv(torch::nn::Conv3dOptions(label_classes, image_channels, 1).bias(false));
    torch::nn::init::zeros_(conv->weight);
    label_in->push_back(conv);
    label_pool.push_back(Int3{1, 1, 1});
    if (p.decoder_label_heads) {
      label_heads = register_module("label_heads", SamePadConv3d(ch, label_classes * image_channels, Int3{3, 3, 3}, Int3{1, 1, 1}));
      torch::nn::init::zeros_(label_heads->conv->weight);
      torch::nn::init::zeros_(label_heads->conv->bias);
    }
  }
}

torch::Tensor VQDecoderImpl::head_term(const torch::Tensor& heads, const torch::Tensor& labels, const torch::Tensor& keep) const {
  const int64_t B = heads.size(0), C = heads.size(1) / label_classes;
  auto v = heads.reshape({B, label_classes, C, heads.size(2), heads.size(3), heads.size(4)});
  auto idx = labels.to(torch::kLong).reshape({B, 1, 1, labels.size(1), labels.size(2), labels.size(3)}).expand({B, 1, C, -1, -1, -1});
  auto out = v.gather(1, idx).squeeze(1);  // [B, C, D', H', W']
  if (keep.defined()) out = out * keep.to(out.device(), out.scalar_type()).view({-1, 1, 1, 1, 1});
  return out;
}

torch::Tensor VQDecoderImpl::label_term(size_t k, const torch::Tensor& labels, const torch::Tensor& keep) const {
  const auto& f = label_pool[k];
  // one-hot in float, written straight into [B, N, D', H', W'] (torch::one_hot's int64 copy would be twice its size)
  auto idx = labels.to(torch::kLong).unsqueeze(1);
  auto size = idx.sizes().vec();
  size[1] = label_classes;
  auto frac = torch::zeros(size, idx.options().dtype(torch::kFloat)).scatter_(1, idx, 1.0);
  if (f[0] * f[1] * f[2] > 1) frac = torch::avg_pool3d(frac, {f[0], f[1], f[2]});
  if (keep.defined()) frac = frac * keep.to(frac.device(), torch::kFloat).view({-1, 1, 1, 1, 1});
  return label_in->ptr(k)->as<torch::nn::Conv3d>()->forward(frac);
}

torch::Tensor VQDecoderImpl::forward(const torch::Tensor& z, const torch::Tensor& labels, const torch::Tensor& keep) {
  const bool with_labels = label_classes > 0 && labels.defined();
  const auto maps = with_labels ? labels.to(z.device()) : labels;
  auto h = ops::conv3d(post_vq_conv, z);  // [B, C_top, d, h, w]
  size_t k = 0;
  for (const auto& stage_module : *up) {
    auto stage = stage_module->as<torch::nn::Sequential>();
    h = stage->ptr(0)->as<torch::nn::ConvTranspose3d>()->forward(h);  // doubles the halved axes
    if (with_labels) h = h + label_term(k, maps, keep).to(h.scalar_type());
    for (size_t i = 1; i < stage->size(); ++i) h = stage->ptr(i)->as<ResBlock3d>()->forward(h);
    ++k;
  }
  auto a = ops::norm_act(final_norm, h);
  auto out = conv_last(a);  // [B, C, D, H, W]
  if (with_labels) out = out + label_term(k, maps, keep).to(out.scalar_type());
  if (with_labels && label_heads) out = out + head_term(label_heads(a), maps, keep);
  return out;
}

void check_decoder_labels(const torch::Tensor& labels, int64_t classes, const std::string& where) {
  if (labels.dim() != 4) fail("{}: a label map for the decoder must be [B, D, H, W] (got {} dimensions)", where, labels.dim());
  auto lo = labels.min().item<int64_t>(), hi = labels.max().item<int64_t>();
  if (lo < 0 || hi >= classes)
    fail("{}: label values {}..{}, but the VQ-GAN's decoder knows labels 0..{} (vqgan.decoder_labels = {})", where, lo, hi,
         classes - 1, classes);
}

}  // namespace meddiff
