// The inference layer and the memory machinery: exact split encode/decode, activation checkpointing
// that leaves gradients unchanged, attention that stays on the fused path.
#include <doctest/doctest.h>

#include "models/unet3d.h"
#include "models/vqgan.h"
#include "ops/attention.h"
#include "pipeline/autoencoder.h"
#include "pipeline/device.h"
#include "pipeline/split_exec.h"
#include "test_support.h"

using namespace meddiff;

namespace {

VQGANParams params(std::array<int64_t, 3> down, int64_t hiddens = 8) {
  VQGANParams p;
  p.n_hiddens = hiddens;
  p.downsample = down;
  p.embedding_dim = 4;
  p.n_codes = 64;
  return p;
}

// A VQ-GAN with random weights whose GroupNorms have non-trivial affine parameters.
VQGAN random_vqgan(const VQGANParams& p, uint64_t seed) {
  torch::manual_seed(seed);
  VQGAN m(p);
  torch::NoGradGuard ng;
  for (auto& t : m->parameters()) t.add_(torch::randn_like(t) * 0.05);
  m->quantizer->embeddings.copy_(torch::randn({p.n_codes, p.embedding_dim}));
  m->eval();
  return m;
}

double max_rel_diff(const torch::Tensor& a, const torch::Tensor& b) {
  auto range = (b.max() - b.min()).item<double>();
  return (a - b).abs().max().item<double>() / std::max(1e-12, range);
}

}  // namespace

TEST_CASE("split decoding of a 64x96x96 volume equals the plain decoder (< 1e-4 of the range)") {
  auto m = random_vqgan(params({2, 2, 2}, 16), 3);
  auto z = torch::randn({1, 4, 32, 48, 48}) * 0.8;
  torch::NoGradGuard ng;
  auto plain = m->decoder->forward(m->quantizer->lookup(m->quantizer->quantize_codes(z)));  // [1, 1, 64, 96, 96]
  REQUIRE((plain.sizes() == torch::IntArrayRef({1, 1, 64, 96, 96})));
  for (int64_t budget : {int64_t{48} << 20, int64_t{200} << 20}) {  // small slabs and larger slabs
    AutoencoderRun run;
    run.budget_bytes = budget;
    run.force_split = true;
    auto split = decode_latent(m, z, run);
    const double d = max_rel_diff(split, plain);
    MESSAGE("budget " << (budget >> 20) << " MiB: max |split - plain| / range = " << d);
    CHECK(d < 1e-4);
  }
}

TEST_CASE("split encoding equals the plain encoder for anisotropic downsampling and every cut axis") {
  auto p = params({1, 4, 2});
  auto m = random_vqgan(p, 5);
  auto x = torch::rand({1, 1, 6, 40, 24}) * 2 - 1;
  torch::NoGradGuard ng;
  auto plain = m->encoder->forward(x);
  AutoencoderRun run;
  run.budget_bytes = 1;  // smallest slabs
  run.force_split = true;
  CHECK(max_rel_diff(encode_volume(m, x, run), plain) < 1e-4);
  // every axis as the cut axis, through the split primitives directly
  for (int64_t axis : {2, 3, 4}) {
    split::Plan plan;
    plan.axis = axis;
    plan.slab_bytes = 1;
    auto h = split::same_pad_conv(m->encoder->conv_first, x, nullptr, plan);
    CHECK(max_rel_diff(h, m->encoder->conv_first->forward(x)) < 1e-5);
    auto stage = m->encoder->down[0]->as<torch::nn::Sequential>();
    SamePadConv3d down(std::dynamic_pointer_cast<SamePadConv3dImpl>(stage->ptr(0)));
    auto hs = split::same_pad_conv(down, h, nullptr, plan);  // a strided layer (4^3 on halved axes)
    CHECK(max_rel_diff(hs, down->forward(h)) < 1e-5);
    h = hs;
    auto rb = std::dynamic_pointer_cast<ResBlock3dImpl>(stage->ptr(1));
    REQUIRE(rb);
    auto h2 = h.clone();
    split::residual_block_inplace(*rb, h2, plan);
    CHECK(max_rel_diff(h2, rb->forward_impl(h)) < 1e-4);
  }
}

TEST_CASE("activation checkpointing leaves the loss and every gradient unchanged") {
  auto p = params({2, 2, 2});
  auto x = torch::rand({2, 1, 8, 16, 16}) * 2 - 1;
  std::vector<std::vector<torch::Tensor>> grads;
  for (bool ckpt : {false, true}) {
    torch::manual_seed(9);
    VQGAN m(p);
    m->train();
    set_checkpointing(*m, ckpt);
    auto gen = at::make_generator<at::CPUGeneratorImpl>(1);
    auto out = m->forward(x, gen);
    auto loss = torch::l1_loss(out.reconstruction, x) + out.vq.commitment;
    loss.backward();
    std::vector<torch::Tensor> g;
    for (const auto& t : m->parameters()) g.push_back(t.grad().clone());
    grads.push_back(g);
  }
  REQUIRE(grads[0].size() == grads[1].size());
  for (size_t i = 0; i < grads[0].size(); ++i) CHECK(torch::allclose(grads[0][i], grads[1][i], 1e-5, 1e-6));
  // the U-Net's FiLM and attention blocks too, with dropout (the random state is replayed)
  UNetParams up;
  up.base_channels = 8;
  up.channel_mults = {1, 2};
  up.downsample = {{2, 2, 2}};
  up.attention_levels = {1};
  up.attention_heads = 2;
  up.dropout = 0.3;
  auto xl = torch::randn({2, 4, 8, 8, 8});
  auto t = torch::tensor({3, 7}, torch::kLong), c = torch::tensor({0, 1}, torch::kLong);
  std::vector<std::vector<torch::Tensor>> ug;
  for (bool ckpt : {false, true}) {
    torch::manual_seed(4);
    UNet3d u(up, 4, 2);
    {
      torch::NoGradGuard ng;
      for (auto& w : u->parameters()) w.add_(torch::randn_like(w) * 0.02);  // the zero-initialised convs too
    }
    u->train();
    set_checkpointing(*u, ckpt);
    torch::manual_seed(77);  // the dropout masks
    u->forward(xl, t, c).pow(2).mean().backward();
    std::vector<torch::Tensor> g;
    for (const auto& w : u->parameters()) g.push_back(w.grad().clone());
    ug.push_back(g);
  }
  for (size_t i = 0; i < ug[0].size(); ++i) CHECK(torch::allclose(ug[0][i], ug[1][i], 1e-4, 1e-6));
}

TEST_CASE("attention on the models' permuted q/k/v stays on a fused kernel (no N x N matrix)") {
  // 4096 tokens, 4 heads: the math path would hold 4 x 4096 x 4096 floats (256 MiB) at once.
  const int64_t B = 1, heads = 4, N = 4096, dh = 16;
  auto qkv = torch::randn({B, 3, heads, dh, N});          // the layout AttentionBlock3d produces
  auto t = qkv.permute({1, 0, 2, 4, 3});                   // [3, B, heads, N, dh], last dim not contiguous
  REQUIRE(t[0].stride(-1) != 1);
  torch::NoGradGuard ng;
  ops::attention(t[0], t[1], t[2]);  // warm up (thread pools, kernels)
  if (!reset_peak_rss()) {
    MESSAGE("skipped: this kernel does not allow resetting the peak resident memory");
    return;
  }
  double before = current_rss_mib();
  auto out = ops::attention(t[0], t[1], t[2]);
  double grew = peak_rss_mib() - before;
  INFO("peak grew by " << grew << " MiB");
  CHECK(grew < 96);
  // and it is attention: against the reference on a slice of queries
  auto ref = ops::attention_reference(t[0].slice(2, 0, 64), t[1], t[2]);
  CHECK(torch::allclose(out.slice(2, 0, 64), ref, 1e-4, 1e-5));
}
