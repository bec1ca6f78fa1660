// The inference layer and the memory machinery: exact split encode/decode, activation checkpointing
// that leaves gradients unchanged, attention that stays on the fused path.
#include <doctest/doctest.h>

#include "core/config.h"
#include "models/unet3d.h"
#include "models/vqgan.h"
#include "ops/attention.h"
#include "pipeline/autoencoder.h"
#include "data/phantom.h"
#include "pipeline/device.h"
#include "pipeline/downstream_seg.h"
#include "pipeline/eval_features.h"
#include "pipeline/generate.h"
#include "pipeline/kl_out_of_core.h"
#include "pipeline/split_exec.h"
#include "test_support.h"

#include <torch/script.h>

#include <fstream>

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

// Every weight moved by N(0, sd): non-trivial GroupNorm affines, and the zero-initialised layers active.
void perturb(torch::nn::Module& m, double sd) {
  torch::NoGradGuard ng;
  for (auto& t : m.parameters()) t.add_(torch::randn_like(t) * sd);
}

// A two-level U-Net of 8 base channels with attention at its second level.
UNetParams tiny_unet_params() {
  UNetParams up;
  up.base_channels = 8;
  up.channel_mults = {1, 2};
  up.downsample = {{2, 2, 2}};
  up.attention_levels = {1};
  up.attention_heads = 2;
  return up;
}

// A VQ-GAN with random weights whose GroupNorms have non-trivial affine parameters.
VQGAN random_vqgan(const VQGANParams& p, uint64_t seed) {
  torch::manual_seed(seed);
  VQGAN m(p);
  perturb(*m, 0.05);
  torch::NoGradGuard ng;
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

TEST_CASE("split decoding with a label-conditioned decoder equals its plain decode with the same label maps") {
  auto p = params({2, 4, 2});
  p.decoder_labels = 4;
  p.decoder_label_heads = true;
  auto m = random_vqgan(p, 11);  // perturbed: the label convolutions and heads are active
  auto z = torch::randn({1, 4, 12, 6, 10}) * 0.8;
  auto labels = torch::randint(0, 4, {1, 24, 24, 20}, torch::kLong);
  torch::NoGradGuard ng;
  auto q = m->quantizer->lookup(m->quantizer->quantize_codes(z));
  auto plain = m->decoder->forward(q, labels);  // [1, 1, 24, 24, 20]
  CHECK(max_rel_diff(m->decoder->forward(q), plain) > 1e-3);  // the maps matter
  for (int64_t budget : {int64_t{1}, int64_t{48} << 20}) {  // one plane per slab, and larger slabs
    AutoencoderRun run;
    run.budget_bytes = budget;
    run.force_split = true;
    CHECK(max_rel_diff(decode_latent(m, z, run, labels), plain) < 1e-4);
  }
  CHECK(max_rel_diff(decode_latent(m, z, AutoencoderRun{}, labels), plain) < 1e-6);
  // the label term added a plane at a time along every axis equals the whole term
  for (size_t k = 0; k < 3; ++k) {  // two up-stages and the output
    const auto f = m->decoder->label_pool[k];
    const int64_t C = m->decoder->label_in->ptr(k)->as<torch::nn::Conv3d>()->weight.size(0);
    auto h = torch::randn({1, C, 24 / f[0], 24 / f[1], 20 / f[2]});
    auto whole = h + m->decoder->label_term(k, labels);
    for (int64_t axis : {2, 3, 4}) {
      split::Plan plan;
      plan.axis = axis;
      plan.slab_bytes = 1;
      auto piecewise = h.clone();
      split::add_label_term(*m->decoder, k, piecewise, labels, plan);
      CHECK(torch::allclose(piecewise, whole, 1e-5, 1e-6));
    }
  }
  // the heads' term added a slab at a time along every axis equals the whole term
  {
    const int64_t C = m->decoder->final_norm->options.num_channels();
    auto h = torch::randn({1, C, 24, 24, 20});
    auto out = torch::randn({1, 1, 24, 24, 20});
    auto act = [&](const torch::Tensor& x) { return torch::silu(x * 0.5); };
    auto whole = out + m->decoder->head_term(m->decoder->label_heads(act(h)), labels);
    CHECK(max_rel_diff(whole, out) > 1e-3);  // the heads matter
    for (int64_t axis : {2, 3, 4}) {
      split::Plan plan;
      plan.axis = axis;
      plan.slab_bytes = 1;
      auto piecewise = out.clone();
      split::add_label_heads(*m->decoder, h, act, piecewise, labels, plan);
      CHECK(torch::allclose(piecewise, whole, 1e-5, 1e-5));
    }
  }
  // a map of another size, or with a label the decoder does not know, is refused
  test::check_error([&] { decode_latent(m, z, AutoencoderRun{}, labels.slice(1, 0, 16)); }, {"label map", "24, 24, 20"});
  test::check_error([&] { decode_latent(m, z, AutoencoderRun{}, labels * 2); }, {"decoder_labels = 4"});
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
  UNetParams up = tiny_unet_params();
  up.dropout = 0.3;
  auto xl = torch::randn({2, 4, 8, 8, 8});
  auto t = torch::tensor({3, 7}, torch::kLong), c = torch::tensor({0, 1}, torch::kLong);
  std::vector<std::vector<torch::Tensor>> ug;
  for (bool ckpt : {false, true}) {
    torch::manual_seed(4);
    UNet3d u(up, 4, 2);
    perturb(*u, 0.02);
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

namespace {

// A TorchScript module written here from TorchScript source (as a user's torch.jit.save would be),
// so the features it gives have a closed form.
std::string save_script(const std::filesystem::path& file, const std::string& forward) {
  torch::jit::Module m("FeatureNet");
  m.define(forward);
  m.save(file.string());
  return file.string();
}

TrainingVolume volume_of(torch::Tensor x) {
  TrainingVolume v;
  v.x = x.unsqueeze(0);
  return v;
}

}  // namespace

TEST_CASE("eval features: a user's 3-D and 2-D TorchScript networks give the features their closed forms predict") {
  meddiff::test::ScratchDir dir("eval-features");
  auto gen = at::make_generator<at::CPUGeneratorImpl>(11);
  std::vector<TrainingVolume> vols;
  for (int i = 0; i < 3; ++i) vols.push_back(volume_of(torch::rand({6, 8, 10}, gen) * 2 - 1));

  // 3-D: mean and maximum of each input channel, with the volumes resampled and repeated over 2 channels
  auto f3 = save_script(dir / "f3.pt", "def forward(self, x):\n  return torch.cat([x.mean(dim=[2, 3, 4]), x.amax(dim=[2, 3, 4])], 1)\n");
  FeatureNetwork net3("3d:" + f3, torch::kCPU);
  CHECK_FALSE(net3.slice_wise());
  FeatureInput in;
  in.norm = "raw";
  in.channels = 2;
  auto stacked = [&](const FeatureNetwork& net, const std::vector<TrainingVolume>& vs, const FeatureInput& fi) {
    std::vector<torch::Tensor> f;
    for (const auto& v : vs) f.push_back(net.features(v.x, fi).feature);
    return torch::stack(f);
  };
  auto r3 = stacked(net3, vols, in);
  REQUIRE(r3.sizes() == torch::IntArrayRef({3, 4}));
  for (int i = 0; i < 3; ++i) {
    CHECK(r3[i][0].item<double>() == doctest::Approx(vols[static_cast<size_t>(i)].x.mean().item<double>()).epsilon(1e-6));
    CHECK(r3[i][1].item<double>() == doctest::Approx(vols[static_cast<size_t>(i)].x.mean().item<double>()).epsilon(1e-6));
    CHECK(r3[i][3].item<double>() == doctest::Approx(vols[static_cast<size_t>(i)].x.max().item<double>()).epsilon(1e-6));
  }
  in.norm = "zscore";
  auto z = stacked(net3, vols, in);
  CHECK(z.select(1, 0).abs().max().item<double>() < 1e-6);  // a z-scored volume has mean 0
  in.norm = "unit";
  CHECK(net3.features(vols[0].x, in).feature[0].item<double>() ==
        doctest::Approx((vols[0].x.mean().item<double>() + 1) / 2).epsilon(1e-6));
  in.norm = "raw";
  in.size = {4, 4, 4};  // trilinear resampling keeps a constant volume constant
  auto c = net3.features(torch::full({1, 6, 8, 10}, 0.25), in).feature;
  CHECK(c[3].item<double>() == doctest::Approx(0.25).epsilon(1e-6));

  // 2-D: the network returns its input slices; spatial averaging gives each slice's mean
  auto f2 = save_script(dir / "f2.pt", "def forward(self, x):\n  return x * 1.0\n");
  FeatureNetwork net2("2d:" + f2, torch::kCPU);
  CHECK(net2.slice_wise());
  FeatureInput in2;
  in2.norm = "raw";
  in2.batch = 5;
  auto r2 = net2.features(vols[1].x, in2);  // 5 slices per forward pass: full and partial batches
  REQUIRE(r2.planes[0].sizes() == torch::IntArrayRef({6, 1}));  // axial: D slices
  REQUIRE(r2.planes[1].sizes() == torch::IntArrayRef({8, 1}));
  REQUIRE(r2.planes[2].sizes() == torch::IntArrayRef({10, 1}));
  auto x1 = vols[1].x[0].to(torch::kDouble);
  CHECK(torch::allclose(r2.planes[0].flatten(), x1.mean(std::vector<int64_t>{1, 2}), 1e-6, 1e-6));
  CHECK(torch::allclose(r2.planes[2].flatten(), x1.mean(std::vector<int64_t>{0, 1}), 1e-6, 1e-6));
  REQUIRE(r2.feature.sizes() == torch::IntArrayRef({3}));
  for (int p = 0; p < 3; ++p) CHECK(r2.feature[p].item<double>() == doctest::Approx(x1.mean().item<double>()).epsilon(1e-6));

  // bad networks and specs: one-line errors naming the file or the flag
  meddiff::test::check_error([&] { FeatureNetwork("resnet.pt", torch::kCPU); }, {"--features", "3d:FILE"});
  meddiff::test::check_error([&] { FeatureNetwork("3d:" + (dir / "none.pt").string(), torch::kCPU); }, {"none.pt", "no such file"});
  std::ofstream(dir / "junk.pt") << "not a zip";
  meddiff::test::check_error([&] { FeatureNetwork("3d:" + (dir / "junk.pt").string(), torch::kCPU); }, {"junk.pt", "TorchScript"});
  auto scalar = save_script(dir / "scalar.pt", "def forward(self, x):\n  return x.sum()\n");
  meddiff::test::check_error([&] { FeatureNetwork("3d:" + scalar, torch::kCPU).features(vols[0].x, in); }, {"scalar.pt", "expected [batch, features"});
  auto nan = save_script(dir / "nan.pt", "def forward(self, x):\n  return x.mean(dim=[2, 3, 4]) / 0.0 * 0.0\n");
  meddiff::test::check_error([&] { FeatureNetwork("3d:" + nan, torch::kCPU).features(vols[0].x, in); }, {"nan.pt", "NaN"});
  auto bad = save_script(dir / "bad.pt", "def forward(self, x):\n  return x.view(-1, 7, 13)\n");
  meddiff::test::check_error([&] { FeatureNetwork("2d:" + bad, torch::kCPU).features(vols[0].x, in2); }, {"bad.pt", "failed on an input of shape"});
}

namespace {

// A small KL autoencoder with 3 levels, random weights, eval mode: MONAI's (attention, nearest upsampling) or,
// with `maisi`, MAISI's kind (no attention, trilinear upsampling).
AutoencoderKL small_kl_autoencoder(bool maisi, uint64_t seed, int64_t channels) {
  KLParams p;
  p.channels = {4, 8, 8};
  p.num_res_blocks = {1, 2, 1};
  p.attention_levels = maisi ? std::vector<int64_t>{} : std::vector<int64_t>{2};
  p.latent_channels = 3;
  p.norm_groups = 2;
  p.encoder_mid_attention = p.decoder_mid_attention = !maisi;
  p.upsample = maisi ? "trilinear" : "nearest";
  torch::manual_seed(seed);
  AutoencoderKL ae(p, channels);
  perturb(*ae, 0.2);
  ae->eval();
  return ae;
}

}  // namespace

TEST_CASE("out-of-core KL decoding equals the whole decoder - in memory or in scratch files - any slab height") {
  for (int maisi = 0; maisi < 2; ++maisi) {
    AutoencoderKL ae = small_kl_autoencoder(maisi, 5 + maisi, 1);
    torch::NoGradGuard ng;
    // latent 5 x 4 x 3 -> image 20 x 16 x 12: cut along D, the longest axis; odd row counts at every level
    auto z = torch::randn({1, 3, 5, 4, 3});
    auto whole = ae->decode(z);
    for (int64_t rows : {1, 2, 7}) {
      for (int disk = 0; disk < 2; ++disk) {
        OutOfCoreRun run;
        run.rows = rows;
        run.all_on_disk = disk;
        auto got = decode_out_of_core(ae, z, run);
        INFO("maisi " << maisi << " rows " << rows << " disk " << disk);
        REQUIRE(got.sizes() == whole.sizes());
        CHECK(max_rel_diff(got, whole) < 1e-5);
      }
    }
    // cut along W when it is the longest axis
    auto zw = torch::randn({1, 3, 2, 3, 5});
    OutOfCoreRun run;
    run.rows = 3;
    CHECK(max_rel_diff(decode_out_of_core(ae, zw, run), ae->decode(zw)) < 1e-5);
  }
  // MAISI's norm_float16 (the GroupNorm output rounded to float16) block by block too: the slabs' statistics, taken in
  // float64, may round a normalised value to the neighbouring float16 (5e-4 of it), nothing more: well below the
  // difference the rounding itself makes
  AutoencoderKL plain = small_kl_autoencoder(true, 6, 1);
  KLParams p16 = plain->params;
  p16.norm_float16 = true;
  AutoencoderKL ae(p16, 1);
  torch::NoGradGuard ng;
  auto src = plain->named_parameters();
  for (auto& kv : ae->named_parameters()) kv.value().copy_(src[kv.key()]);
  ae->eval();
  auto z = torch::randn({1, 3, 5, 4, 3});
  auto whole = ae->decode(z);
  OutOfCoreRun run;
  run.rows = 2;
  run.all_on_disk = true;
  const double d = max_rel_diff(decode_out_of_core(ae, z, run), whole);
  MESSAGE("norm_float16: out-of-core vs whole decode, max difference " << d << " of the range; without the rounding "
          << max_rel_diff(plain->decode(z), whole));
  CHECK(d < 1e-3);
  CHECK(max_rel_diff(plain->decode(z), whole) > d);
}

TEST_CASE("out-of-core KL encoding equals the whole encoder - in memory or in scratch files - any slab height - odd sizes") {
  for (int maisi = 0; maisi < 2; ++maisi) {
    AutoencoderKL ae = small_kl_autoencoder(maisi, 15 + maisi, 2);
    torch::NoGradGuard ng;
    // 20 x 16 x 12 -> 10 -> 5 along D (cut), and 21 x 9 x 14: odd rows along the cut axis, where MONAI's padding
    // row is never read, and odd sizes across it
    for (auto shape : {std::vector<int64_t>{1, 2, 20, 16, 12}, std::vector<int64_t>{2, 2, 21, 9, 14}, std::vector<int64_t>{1, 2, 7, 10, 19}}) {
      auto x = torch::rand(shape);
      auto whole = ae->encode(x);
      for (int64_t rows : {1, 2, 7}) {
        for (int disk = 0; disk < 2; ++disk) {
          OutOfCoreRun run;
          run.rows = rows;
          run.all_on_disk = disk;
          auto got = encode_out_of_core(ae, x, run);
          INFO("maisi " << maisi << " shape " << torch::IntArrayRef(shape) << " rows " << rows << " disk " << disk);
          REQUIRE(got.mu.sizes() == whole.mu.sizes());
          CHECK(max_rel_diff(got.mu, whole.mu) < 1e-5);
          CHECK(max_rel_diff(got.sigma, whole.sigma) < 1e-5);
        }
      }
    }
    // the budget decides: a tiny one runs out of core, a large one whole, both the same posterior
    auto x = torch::rand({1, 2, 16, 12, 8});
    auto small = encode_within(ae, x, 1 << 16), large = encode_within(ae, x, int64_t{1} << 30);
    CHECK(max_rel_diff(small.mu, large.mu) < 1e-5);
  }
}

TEST_CASE("out-of-core KL decoding and encoding with MAISI-v2's full-size autoencoder equal its whole decode and encode (< 1e-4 of the range)") {
  const auto root = load_json_file(std::string(MEDDIFF_SOURCE_DIR) + "/configs/networks/maisi-rflow-ct.json");
  auto m = kl_from_monai(root["autoencoder_def"], root, "maisi-rflow-ct.json");
  REQUIRE(m.params.channels == std::vector<int64_t>{64, 128, 256});
  torch::manual_seed(3);
  AutoencoderKL ae(m.params, m.in_channels);
  perturb(*ae, 0.05);
  ae->eval();
  torch::NoGradGuard ng;
  auto z = torch::randn({1, 4, 6, 5, 4});  // -> 24 x 20 x 16
  auto whole = ae->decode(z);
  OutOfCoreRun run;
  run.rows = 5;
  run.all_on_disk = true;
  auto got = decode_out_of_core(ae, z, run);
  INFO("max relative difference " << max_rel_diff(got, whole));
  CHECK(max_rel_diff(got, whole) < 1e-4);
  // and its encoder, of a volume of that size
  auto x = torch::rand({1, 1, 24, 20, 16});
  auto enc = ae->encode(x), enc_ooc = encode_out_of_core(ae, x, run);
  INFO("encoder: max relative difference " << max_rel_diff(enc_ooc.mu, enc.mu));
  CHECK(max_rel_diff(enc_ooc.mu, enc.mu) < 1e-4);
  CHECK(max_rel_diff(enc_ooc.sigma, enc.sigma) < 1e-4);
}

TEST_CASE("batched network forwards give the one-volume forwards' volumes up to float rounding") {
  VQGANAutoencoder vq(random_vqgan(params({2, 2, 2}), 11));
  for (int labelled = 0; labelled < 2; ++labelled) {
    torch::manual_seed(12);
    LoadedLDM l;
    UNet3d net(tiny_unet_params(), 4, 2, labelled ? 3 : 0);
    perturb(*net, 0.05);
    net->eval();
    l.net = std::make_shared<UNet3dDenoiser>(net);
    l.schedule = make_schedule("linear", 100);
    l.prediction = Prediction::V;
    l.num_classes = 2;
    l.norm = {"none", {0, 0, 0, 0}, {1, 1, 1, 1}, 3.0};
    auto x_T = torch::randn({3, 4, 8, 8, 8});
    auto classes = torch::tensor({0, 1, 1}, torch::kLong);
    auto cond = labelled ? torch::rand({3, 3, 8, 8, 8}) : torch::Tensor();
    SamplerParams sp;
    sp.steps = 5;
    sp.guidance = 2.0;  // the guidance pair joins the batch
    auto noise = [&](int64_t) { return torch::zeros_like(x_T); };
    auto one = generate_volumes(l, vq, x_T, classes, cond, sp, noise);
    sp.batch_networks = true;
    auto batched = generate_volumes(l, vq, x_T, classes, cond, sp, noise);
    INFO("labelled " << labelled << ": largest difference " << (one - batched).abs().max().item<double>());
    CHECK(max_rel_diff(batched, one) < 1e-4);
    // and the batch is not collapsed: each volume differs from the others
    CHECK((one[0] - one[1]).abs().max().item<double>() > 1e-3);
  }
}

namespace {
// MR phantoms 16^3 as segmentation cases (images in [-1, 1], per-volume min-max as the demo).
std::vector<SegCase> phantom_cases(uint64_t seed, int64_t n) {
  PhantomParams pp;
  pp.shape = {16, 16, 16};
  pp.seed = seed;
  DataParams dp;
  dp.shape = {16, 16, 16};
  dp.mr_percentiles = {0.0, 100.0};
  std::vector<SegCase> out;
  for (int64_t i = 0; i < n; ++i) {
    auto tv = preprocess(make_phantom(pp, i, i % 2), dp, i % 2, "phantom");
    out.push_back({tv.x, tv.label, tv.geometry.spacing, fmt::format("seed{}_{}", seed, i)});
  }
  return out;
}

double mean_gain(const nlohmann::json& j) {
  double s = 0;
  int n = 0;
  for (const auto& row : j["labels"])
    if (row.contains("gain")) s += row["gain"]["mean"].get<double>(), ++n;
  return n ? s / n : 0;
}
}  // namespace

TEST_CASE("downstream verdict: a gain counts beyond the seed spread and the minimum effect") {
  CHECK(gain_verdict(-0.03, 0.02, 0.005) == "hurts");
  CHECK(gain_verdict(0.03, 0.02, 0.005) == "helps");
  CHECK(gain_verdict(-0.015, 0.02, 0.005) == "within the seed spread");
  // the CT demo's lung: 0.99996 -> 0.99974 on every seed, a spread of 0.0002: steady but negligible
  CHECK(gain_verdict(-0.00022, 0.00019, 0.005) == "within the seed spread");
  CHECK(gain_verdict(-0.00022, 0.00019, 0.0) == "hurts");
  CHECK(gain_verdict(0.008, 0.001, 0.005) == "helps");
}

TEST_CASE("downstream check: synthetic pairs whose labels are shuffled between volumes give a negative gain, true pairs do not") {
  auto real = phantom_cases(1, 3), held_out = phantom_cases(2, 4), pairs = phantom_cases(3, 6);
  auto shuffled = pairs;  // each image with the next case's label map
  for (size_t i = 0; i < pairs.size(); ++i) shuffled[i].label = pairs[(i + 1) % pairs.size()].label;
  DownstreamParams p;  // the defaults (8 channels, lr 3e-3), a shorter budget at 16^3 at a constant rate, one seed
  p.iterations = 150;
  p.lr_poly = 0;
  p.seeds = 1;
  const std::vector<std::string> names{"background", "skull", "brain", "ventricles", "lesion"};
  auto bad = downstream_segmentation(real, shuffled, held_out, 5, names, p, torch::kCPU);
  auto good = downstream_segmentation(real, pairs, held_out, 5, names, p, torch::kCPU);
  MESSAGE("mean gain over labels: shuffled " << mean_gain(bad) << ", true pairs " << mean_gain(good) << "; " << bad["summary"]);
  CHECK(mean_gain(bad) < 0);
  CHECK_FALSE(bad["hurt"].empty());
  CHECK(mean_gain(good) > mean_gain(bad) + 0.03);
  // the real-only runs are the same in both checks (same seeds): deterministic
  CHECK(bad["labels"][1]["dice"]["real"] == good["labels"][1]["dice"]["real"]);
  // Dice and surface distances for every configuration; the synthetic-only runs too
  CHECK(bad["labels"][1]["dice"].contains("synthetic"));
  CHECK(bad["labels"][1]["assd_mm"]["real"]["seeds"].size() == 1);
  CHECK_THROWS_WITH_AS(downstream_segmentation(real, pairs, {}, 5, names, p, torch::kCPU), doctest::Contains("held-out"), Error);
  p.lr_poly = -0.5;
  CHECK_THROWS_WITH_AS(downstream_segmentation(real, pairs, held_out, 5, names, p, torch::kCPU), doctest::Contains("decay exponent"), Error);
}

