#include <doctest/doctest.h>

#include "core/checkpoint.h"
#include "core/fs.h"
#include "models/autoencoder_kl.h"
#include "models/monai_controlnet.h"
#include "models/monai_unet.h"
#include "models/patch_discriminator.h"
#include "models/state_dict.h"
#include "models/vqgan.h"
#include "ops/nearest_code.h"
#include "test_support.h"

using namespace meddiff;

namespace {
VQGANParams small(std::array<int64_t, 3> down) {
  VQGANParams p;
  p.n_hiddens = 4;
  p.downsample = down;
  p.embedding_dim = 3;
  p.n_codes = 16;
  return p;
}
}  // namespace

TEST_CASE("VQ-GAN shapes for every downsampling configuration") {
  torch::manual_seed(0);
  struct Case {
    std::array<int64_t, 3> down, shape;
  };
  for (const auto& c : {Case{{2, 2, 2}, {16, 16, 16}}, Case{{4, 4, 4}, {16, 16, 16}}, Case{{8, 8, 8}, {16, 16, 16}},
                        Case{{1, 4, 4}, {8, 32, 32}}, Case{{2, 4, 8}, {8, 16, 32}}}) {
    auto p = small(c.down);
    VQGAN m(p);
    auto x = torch::rand({2, 1, c.shape[0], c.shape[1], c.shape[2]}) * 2 - 1;
    auto z = m->encode(x);
    INFO("downsample " << c.down[0] << "," << c.down[1] << "," << c.down[2]);
    CHECK((z.sizes() == torch::IntArrayRef({2, 3, c.shape[0] / c.down[0], c.shape[1] / c.down[1], c.shape[2] / c.down[2]})));
    auto out = m->forward(x);
    CHECK((out.reconstruction.sizes() == x.sizes()));
    CHECK((out.vq.codes.sizes() == torch::IntArrayRef({2, z.size(2), z.size(3), z.size(4)})));
    auto lat = latent_shape(p, c.shape, "data.shape");
    CHECK(lat[1] == z.size(2));
  }
  CHECK_THROWS_WITH_AS(latent_shape(small({4, 4, 4}), {16, 18, 16}, "data.shape"), doctest::Contains("data.shape[1]"), Error);
  auto bad = small({3, 4, 4});  // [D, H, W] in memory: D is z, typed last (x,y,z)
  CHECK_THROWS_WITH_AS(bad.validate(), doctest::Contains("vqgan.downsample[2]"), Error);
}

TEST_CASE("VQ-GAN with 4 image channels: 4 in and out - the latent as with one - only the first and last convolutions differ") {
  torch::manual_seed(0);
  auto p = small({2, 2, 2});
  VQGAN one(p), four(p, 4);
  CHECK(four->channels == 4);
  auto x = torch::rand({2, 4, 8, 8, 8}) * 2 - 1;
  auto out = four->forward(x);
  CHECK((out.reconstruction.sizes() == x.sizes()));
  CHECK((four->encode(x).sizes() == one->encode(x.slice(1, 0, 1)).sizes()));
  auto a = one->named_parameters(), b = four->named_parameters();
  REQUIRE(a.size() == b.size());
  std::vector<std::string> differ;
  for (const auto& kv : a)
    if (kv.value().sizes() != b[kv.key()].sizes()) differ.push_back(kv.key());
  CHECK(differ.size() == 3);  // encoder conv_first's weight, decoder conv_last's weight and bias
  CHECK_THROWS_WITH_AS(four->forward(torch::rand({1, 1, 8, 8, 8})), doctest::Contains("channels"), c10::Error);
}

TEST_CASE("quantiser EMA update matches hand-computed values") {
  VQGANParams p = small({2, 2, 2});
  p.embedding_dim = 1;
  p.n_codes = 2;
  p.ema_decay = 0.5;
  p.ema_eps = 1e-7;
  p.restart_threshold = 1.0;
  VectorQuantizer q(p);
  q->train();
  q->embeddings.copy_(torch::tensor({{0.0f}, {10.0f}}));
  q->embed_avg.copy_(q->embeddings);
  q->cluster_size.fill_(1.0);
  q->initialized.fill_(1.0);
  auto z = torch::tensor({1.0f, 2.0f, 9.0f}).view({1, 1, 1, 1, 3});  // [B, E, d, h, w]
  auto out = q->forward(z);
  // assignments 0, 0, 1; counts [2, 1]; sums [3, 9]
  CHECK((out.codes.flatten() == torch::tensor({0, 0, 1})).all().item<bool>());
  // cluster_size = 0.5 * 1 + 0.5 * [2, 1] = [1.5, 1.0]; embed_avg = 0.5 * [0, 10] + 0.5 * [3, 9] = [1.5, 9.5]
  CHECK(q->cluster_size[0].item<float>() == doctest::Approx(1.5));
  CHECK(q->cluster_size[1].item<float>() == doctest::Approx(1.0));
  CHECK(q->embed_avg[1][0].item<float>() == doctest::Approx(9.5));
  // smoothed counts (n = 2.5): (cs + eps) / (n + 2 eps) * n ~= cs -> embeddings [1.0, 9.5]
  CHECK(q->embeddings[0][0].item<float>() == doctest::Approx(1.0).epsilon(1e-5));
  CHECK(q->embeddings[1][0].item<float>() == doctest::Approx(9.5).epsilon(1e-5));
  CHECK(out.restarted.item<int64_t>() == 0);
  // commitment = 0.25 * mean((z - e)^2) with e = [0, 0, 10]: codes are looked up before the update
  CHECK(out.commitment.item<float>() == doctest::Approx(0.25 * (1 + 4 + 1) / 3.0).epsilon(1e-5));
  CHECK((out.quantized.flatten() == torch::tensor({0.0f, 0.0f, 10.0f})).all().item<bool>());
  CHECK(out.usage.item<double>() == doctest::Approx(1.0));
  // perplexity of the code histogram [2/3, 1/3]
  CHECK(out.perplexity.item<double>() == doctest::Approx(std::exp(-(2.0 / 3 * std::log(2.0 / 3) + 1.0 / 3 * std::log(1.0 / 3)))).epsilon(1e-4));
}

TEST_CASE("dead codes restart from encoder outputs and start at the threshold count") {
  VQGANParams p = small({2, 2, 2});
  p.embedding_dim = 1;
  p.n_codes = 3;
  p.ema_decay = 0.5;
  p.restart_threshold = 0.9;
  VectorQuantizer q(p);
  q->train();
  q->embeddings.copy_(torch::tensor({{0.0f}, {10.0f}, {100.0f}}));
  q->embed_avg.copy_(q->embeddings);
  q->cluster_size.fill_(1.0);
  q->initialized.fill_(1.0);
  auto z = torch::tensor({1.0f, 2.0f, 9.0f, 11.0f}).view({1, 1, 1, 1, 4});
  auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
  auto out = q->forward(z, gen);
  // code 2 got nothing: cluster_size 0.5 < 0.9 -> restarted to one of the encoder outputs, its count
  // set to the threshold and its EMA sum to threshold x vector (so the next update keeps the vector)
  CHECK(out.restarted.item<int64_t>() == 1);
  float e2 = q->embeddings[2][0].item<float>();
  CHECK((e2 == 1.0f || e2 == 2.0f || e2 == 9.0f || e2 == 11.0f));
  CHECK(q->cluster_size[2].item<float>() == doctest::Approx(0.9));
  CHECK(q->embed_avg[2][0].item<float>() == doctest::Approx(0.9 * e2));
  CHECK(q->embeddings[0][0].item<float>() == doctest::Approx(1.0).epsilon(1e-4));  // (0.5*0 + 0.5*3) / 1.5
}

TEST_CASE("a code used in this batch but restarted keeps its pre-step vector for the batch's output") {
  // Code 1 is the nearest for every position, but its EMA count stays under the threshold after
  // this step (0.5 * 0 + 0.5 * 1 = 0.5 < 1): it is restarted. The batch's output must still be the
  // vector it was assigned (the reference looks codes up before the update), not the restart.
  VQGANParams p = small({2, 2, 2});
  p.embedding_dim = 1;
  p.n_codes = 2;
  p.ema_decay = 0.5;
  p.restart_threshold = 1.0;
  VectorQuantizer q(p);
  q->train();
  q->embeddings.copy_(torch::tensor({{-50.0f}, {5.0f}}));
  q->embed_avg.copy_(torch::zeros({2, 1}));
  q->cluster_size.copy_(torch::tensor({2.0f, 0.0f}));
  q->initialized.fill_(1.0);
  auto z = torch::tensor({4.0f}).view({1, 1, 1, 1, 1});
  auto gen = at::make_generator<at::CPUGeneratorImpl>(7);
  auto out = q->forward(z, gen);
  CHECK(out.codes.item<int64_t>() == 1);
  CHECK(out.restarted.item<int64_t>() >= 1);
  CHECK(out.quantized.item<float>() == doctest::Approx(5.0));  // the pre-step code 1, not a restarted vector
  CHECK(out.commitment.item<float>() == doctest::Approx(0.25 * 1.0));
}

TEST_CASE("nearest code: chunked fp32 search equals float64 brute force and ignores bf16 inputs' rounding") {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(11);
  auto codebook = torch::randn({300, 8}, gen);
  auto z = torch::randn({2000, 8}, gen);
  auto ref = ops::nearest_code_reference(z, codebook);
  for (int64_t chunk : {int64_t{4} << 10, int64_t{64} << 20}) {  // 4 KiB: many chunks; 64 MiB: one
    auto got = ops::nearest_code(z, codebook, chunk);
    CHECK(torch::equal(got.index, ref.index));
    CHECK(torch::allclose(got.distance, ref.distance, 1e-4, 1e-4));
  }
  // bf16 encoder outputs (bf16 training): codes are those of the bf16 values searched in fp32, the
  // same that fp32 inference assigns; a bf16 search would misassign close codes.
  auto zb = z.to(torch::kBFloat16);
  auto exact = ops::nearest_code_reference(zb.to(torch::kDouble), codebook);
  CHECK(torch::equal(ops::nearest_code(zb, codebook).index, exact.index));
  auto bf16_search = ((zb.unsqueeze(1) - codebook.to(torch::kBFloat16).unsqueeze(0)).pow(2).sum(2)).argmin(1);
  CHECK_FALSE(torch::equal(bf16_search, exact.index));  // the bug this guards against is real on this data
  VQGANParams p = small({2, 2, 2});
  p.embedding_dim = 8;
  p.n_codes = 300;
  VectorQuantizer q(p);
  q->embeddings.copy_(codebook);
  q->chunk_bytes = 4 << 10;
  CHECK(torch::equal(q->nearest(zb), exact.index));
}

TEST_CASE("codebook initialises from the first batch") {
  VQGANParams p = small({2, 2, 2});
  p.embedding_dim = 2;
  p.n_codes = 4;
  VectorQuantizer q(p);
  q->train();
  auto z = torch::randn({1, 2, 2, 2, 2}) + 50;  // far from the random initial codes
  q->forward(z);
  CHECK(q->initialized.item<float>() == 1.0f);
  CHECK(q->embeddings.min().item<float>() > 40);
}

TEST_CASE("gradients reach every encoder and decoder parameter") {
  torch::manual_seed(1);
  VQGAN m(small({2, 4, 4}));
  m->train();
  auto x = torch::rand({2, 1, 8, 16, 16}) * 2 - 1;
  auto out = m->forward(x);
  auto loss = torch::l1_loss(out.reconstruction, x) + out.vq.commitment;
  loss.backward();
  int checked = 0;
  for (auto* part : {static_cast<torch::nn::Module*>(m->encoder.get()), static_cast<torch::nn::Module*>(m->decoder.get())})
    for (const auto& p : part->named_parameters()) {
      INFO(p.key());
      REQUIRE(p.value().grad().defined());
      CHECK(p.value().grad().abs().sum().item<double>() > 0);
      ++checked;
    }
  CHECK(checked > 20);
}

TEST_CASE("a label-conditioned decoder starts as the plain one - its label term is a 1x1x1 map of the label fractions - dropped maps decode as none") {
  auto p0 = small({4, 2, 1});
  auto p = p0;
  p.decoder_labels = 3;
  torch::manual_seed(3);
  VQGAN plain(p0), labelled(p);
  {
    torch::NoGradGuard ng;
    auto theirs = plain->named_parameters();
    for (auto& q : labelled->named_parameters())
      if (theirs.contains(q.key())) q.value().copy_(theirs[q.key()]);
      else CHECK(q.value().abs().sum().item<double>() == 0);  // the label convolutions start at zero
  }
  plain->eval();
  labelled->eval();
  torch::NoGradGuard ng;
  auto q = torch::randn({2, 3, 2, 4, 8});                           // a latent of an 8x8x8 volume
  auto labels = torch::randint(0, 3, {2, 8, 8, 8}, torch::kLong);  // labels 0..2
  CHECK(torch::equal(labelled->decoder->forward(q, labels), plain->decoder->forward(q)));
  CHECK(torch::equal(labelled->decoder->forward(q), plain->decoder->forward(q)));
  // the term of each stage against a sum over the voxels a stage voxel covers, computed by hand
  REQUIRE(labelled->decoder->label_pool.size() == 3);  // two up-stages and the output
  CHECK((labelled->decoder->label_pool[0] == Int3{2, 2, 1}));  // after the first up-stage: 4x4x8 of 8x8x8
  CHECK((labelled->decoder->label_pool[1] == Int3{1, 1, 1}));
  CHECK((labelled->decoder->label_pool[2] == Int3{1, 1, 1}));
  for (size_t k = 0; k < 3; ++k) {
    auto conv = labelled->decoder->label_in->ptr(k)->as<torch::nn::Conv3d>();
    conv->weight.copy_(torch::randn_like(conv->weight));
    const auto f = labelled->decoder->label_pool[k];
    auto term = labelled->decoder->label_term(k, labels);  // [2, C, 8/f0, 8/f1, 8/f2]
    const int64_t C = conv->weight.size(0);
    REQUIRE((term.sizes() == torch::IntArrayRef({2, C, 8 / f[0], 8 / f[1], 8 / f[2]})));
    auto w = conv->weight.accessor<float, 5>();
    auto l = labels.accessor<int64_t, 4>();
    auto got = term.accessor<float, 5>();
    double worst = 0;
    for (int64_t b = 0; b < 2; ++b)
      for (int64_t c = 0; c < C; ++c)
        for (int64_t i = 0; i < 8 / f[0]; ++i)
          for (int64_t j = 0; j < 8 / f[1]; ++j)
            for (int64_t m = 0; m < 8 / f[2]; ++m) {
              double sum = 0;
              for (int64_t di = 0; di < f[0]; ++di)
                for (int64_t dj = 0; dj < f[1]; ++dj)
                  for (int64_t dm = 0; dm < f[2]; ++dm) sum += w[c][l[b][i * f[0] + di][j * f[1] + dj][m * f[2] + dm]][0][0][0];
              worst = std::max(worst, std::abs(got[b][c][i][j][m] - sum / static_cast<double>(f[0] * f[1] * f[2])));
            }
    CHECK(worst < 1e-5);
  }
  // with the terms active: a kept map changes the output, a dropped one (keep 0) decodes as no map
  auto with = labelled->decoder->forward(q, labels), without = labelled->decoder->forward(q);
  CHECK((with - without).abs().max().item<double>() > 1e-3);
  auto mixed = labelled->decoder->forward(q, labels, torch::tensor({1.0f, 0.0f}));
  CHECK(torch::allclose(mixed[0], with[0], 1e-5, 1e-6));
  CHECK(torch::allclose(mixed[1], without[1], 1e-5, 1e-6));
  // labels out of the decoder's range are one error naming where they came from
  test::check_error([&] { check_decoder_labels(labels + 1, 3, "seg.nii.gz"); }, {"seg.nii.gz", "1..3", "0..2", "decoder_labels = 3"});
  test::check_error([&] { check_decoder_labels(labels[0], 3, "seg.nii.gz"); }, {"seg.nii.gz", "[B, D, H, W]"});
}

TEST_CASE("label heads: each voxel adds the head of its own label - zero heads decode as without them - a dropped map adds nothing") {
  auto p0 = small({2, 2, 2});
  p0.decoder_labels = 3;
  auto p = p0;
  p.decoder_label_heads = true;
  torch::manual_seed(5);
  VQGAN without(p0, 2), with(p, 2);  // two image channels
  {
    torch::NoGradGuard ng;
    auto theirs = without->named_parameters();
    for (auto& q : with->named_parameters())
      if (theirs.contains(q.key())) q.value().copy_(theirs[q.key()] + 0.05 * torch::randn_like(q.value()));  // active label terms
      else CHECK(q.value().abs().sum().item<double>() == 0);  // the heads start at zero
    for (auto& q : without->named_parameters()) q.value().copy_(with->named_parameters()[q.key()]);
  }
  with->eval();
  without->eval();
  torch::NoGradGuard ng;
  auto q = torch::randn({2, 3, 4, 4, 4});
  auto labels = torch::randint(0, 3, {2, 8, 8, 8}, torch::kLong);
  CHECK(torch::equal(with->decoder->forward(q, labels), without->decoder->forward(q, labels)));
  // the term: voxel v of sample b, channel c takes head channel labels[b, v] * C + c (C = 2 image channels here)
  auto heads = torch::randn({2, 3 * 2, 8, 8, 8});
  auto term = with->decoder->head_term(heads, labels);
  REQUIRE((term.sizes() == torch::IntArrayRef({2, 2, 8, 8, 8})));
  auto h = heads.accessor<float, 5>();
  auto l = labels.accessor<int64_t, 4>();
  auto t = term.accessor<float, 5>();
  int64_t wrong = 0;
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t c = 0; c < 2; ++c)
      for (int64_t i = 0; i < 8; ++i)
        for (int64_t j = 0; j < 8; ++j)
          for (int64_t m = 0; m < 8; ++m) wrong += t[b][c][i][j][m] != h[b][l[b][i][j][m] * 2 + c][i][j][m];
  CHECK(wrong == 0);
  auto dropped = with->decoder->head_term(heads, labels, torch::tensor({0.0f, 1.0f}));
  CHECK(dropped[0].abs().max().item<double>() == 0);
  CHECK(torch::equal(dropped[1], term[1]));
  // active heads: a voxel's output moves with its own label's head only
  with->decoder->label_heads->conv->bias.copy_(torch::tensor({0.0f, 0.0f, 0.0f, 0.0f, 3.0f, -1.0f}));  // label 2: +3 and -1
  auto moved = with->decoder->forward(q, labels) - without->decoder->forward(q, labels);
  auto expected = torch::stack({(labels == 2).to(torch::kFloat) * 3.0, (labels == 2).to(torch::kFloat) * -1.0}, 1);
  CHECK(torch::allclose(moved, expected, 1e-5, 1e-5));
  auto mixed = with->decoder->forward(q, labels, torch::tensor({1.0f, 0.0f})), none = with->decoder->forward(q);
  CHECK(torch::allclose(mixed[1], none[1], 1e-5, 1e-6));
  CHECK(torch::equal(none, without->decoder->forward(q)));
}

TEST_CASE("PatchGAN discriminators: patch logits and features") {
  PatchDiscriminator d2(2, 1, 8, 3, "batch"), d3(3, 1, 8, 2, "group");
  auto [l2, f2] = d2->forward(torch::randn({2, 1, 32, 32}));
  CHECK(l2.size(1) == 1);
  CHECK(f2.size() == 4);
  auto [l3, f3] = d3->forward(torch::randn({1, 1, 16, 16, 16}));
  CHECK(l3.dim() == 5);
  CHECK(f3.size() == 3);
}

TEST_CASE("checkpoint save -> load gives identical outputs and bad checkpoints are named") {
  test::ScratchDir dir("ckpt");
  torch::manual_seed(2);
  auto p = small({2, 2, 2});
  VQGAN a(p), b(p);
  a->train();
  auto x = torch::rand({1, 1, 8, 8, 8}) * 2 - 1;
  a->forward(x);  // initialise the codebook
  a->eval();
  Checkpoint c;
  c.kind = "vqgan";
  c.step = 7;
  c.config = {{"k", 1}};
  c.put_module("model", *a);
  save_checkpoint(c, dir / "a.pt");
  Checkpoint r = load_checkpoint(dir / "a.pt");
  CHECK(r.step == 7);
  CHECK(r.kind == "vqgan");
  CHECK(r.config["k"] == 1);
  r.load_module("model", *b);
  b->eval();
  torch::NoGradGuard ng;
  CHECK(torch::equal(a->forward(x).reconstruction, b->forward(x).reconstruction));
  VQGAN wide(small({4, 4, 4}));
  CHECK_THROWS_WITH_AS(r.load_module("model", *wide), doctest::Contains("model."), Error);
  write_text_atomically(dir / "junk.pt", "not a checkpoint");
  CHECK_THROWS_WITH_AS(load_checkpoint(dir / "junk.pt"), doctest::Contains("junk.pt"), Error);
}

// MONAI's AutoencoderKL and MAISI's AutoencoderKlMaisi, built by MONAI with random weights and saved with torch.save
// (scripts/make_monai_fixtures.py): meddiff loads the state dicts by name and reproduces MONAI's encode and decode.
namespace {
void check_close_to_monai(const torch::Tensor& ours, const torch::Tensor& monai, const char* what) {
  INFO(what);
  REQUIRE(ours.sizes() == monai.sizes());
  double range = (monai.max() - monai.min()).item<double>();
  double diff = (ours - monai).abs().max().item<double>();
  MESSAGE(std::string(what) << ": max |meddiff - MONAI| " << diff << " over a range of " << range);
  CHECK(range > 0);
  CHECK(diff <= 1e-4 * range);
}
}  // namespace

TEST_CASE("KL autoencoders with MONAI weights: encode and decode equal MONAI's AutoencoderKL and MAISI's AutoencoderKlMaisi") {
  auto nets = nlohmann::json::parse(read_text(test::fixture("monai/networks.json")));
  for (std::string name : {"autoencoder_kl", "autoencoder_maisi"}) {
    CAPTURE(name);
    auto def = nets.at(name);
    def["_target_"] = name == "autoencoder_maisi" ? "monai.apps.generation.maisi.networks.autoencoderkl_maisi.AutoencoderKlMaisi"
                                                  : "monai.networks.nets.AutoencoderKL";
    auto m = kl_from_monai(def, nets, name);
    bool maisi = m.maisi;
    CHECK(m.params.upsample == (maisi ? "trilinear" : "nearest"));
    AutoencoderKL ae(m.params, m.in_channels);
    ae->eval();
    auto sd = read_state_dict(test::fixture("monai/" + name + ".pt"));
    load_state_dict(*ae, sd, name, maisi ? std::function<std::string(const std::string&)>(maisi_autoencoder_key)
                                         : std::function<std::string(const std::string&)>());
    auto io = read_state_dict(test::fixture("monai/" + name + "_io.pt"));
    torch::NoGradGuard ng;
    auto q = ae->encode(io.at("input"));
    check_close_to_monai(q.mu, io.at("mu"), "mu");
    check_close_to_monai(q.sigma, io.at("sigma"), "sigma");
    check_close_to_monai(ae->decode(io.at("mu")), io.at("decoded"), "decoded");
  }
}

// NVIDIA's config_network_rflow.json sets norm_float16: MAISI's GroupNorm output rounded to float16, scaled and shifted in
// float16. The reference is MONAI's network with that setting (its convolutions fed float32 by a hook, as MONAI's
// fp32 forward refuses float16 input). With autograd recording, meddiff's convolutions take LibTorch's own path, as
// MONAI's do: on a CPU where LibTorch picks the kernels of the machine that built the fixture the outputs are identical,
// elsewhere (another CPU) the convolutions' float32 rounding differs in the last bits and the float16 rounding
// downstream turns some of those into a float16 step; the same holds at inference, where meddiff's convolutions run
// oneDNN (ops/conv.h). So the rounding is shown by the error it removes: on average at most half of the error of the
// same weights without it, and the largest difference within 1e-3 of the range.
TEST_CASE("MAISI autoencoder with norm_float16: encode and decode follow MONAI's rounding of the normalised values") {
  auto nets = nlohmann::json::parse(read_text(test::fixture("monai/networks.json")));
  auto def = nets.at("autoencoder_maisi_fp16norm");
  def["_target_"] = "monai.apps.generation.maisi.networks.autoencoderkl_maisi.AutoencoderKlMaisi";
  auto m = kl_from_monai(def, nets, "autoencoder_maisi_fp16norm");
  CHECK(m.params.norm_float16);
  auto plain_params = m.params;
  plain_params.norm_float16 = false;
  AutoencoderKL ae(m.params, m.in_channels), plain(plain_params, m.in_channels);
  auto sd = read_state_dict(test::fixture("monai/autoencoder_maisi.pt"));
  for (auto* net : {&ae, &plain}) {
    (*net)->eval();
    load_state_dict(**net, sd, "autoencoder_maisi.pt", maisi_autoencoder_key);
  }
  auto io = read_state_dict(test::fixture("monai/autoencoder_maisi_fp16norm_io.pt"));
  const auto& ref = io.at("decoded");
  const double range = (ref.max() - ref.min()).item<double>();
  auto max_diff = [&](const torch::Tensor& a, const torch::Tensor& b) { return (a.detach() - b).abs().max().item<double>(); };
  {  // autograd recording: the same convolution path as MONAI's
    auto mu = ae->encode(io.at("input")).mu;
    auto decoded = ae->decode(io.at("mu"));
    CHECK((decoded.scalar_type() == torch::kFloat));
    MESSAGE("norm_float16 with LibTorch's convolutions: max |meddiff - MONAI| mu " << max_diff(mu, io.at("mu")) << ", decoded "
            << max_diff(decoded, ref) << " over a range of " << range);
    auto mean_diff = [&](const torch::Tensor& a, const torch::Tensor& b) { return (a.detach() - b).abs().mean().item<double>(); };
    const double mu_range = (io.at("mu").max() - io.at("mu").min()).item<double>();
    const double mu_err = mean_diff(mu, io.at("mu")), mu_plain = mean_diff(plain->encode(io.at("input")).mu, io.at("mu"));
    const double dec_err = mean_diff(decoded, ref), dec_plain = mean_diff(plain->decode(io.at("mu")), ref);
    MESSAGE("mean |meddiff - MONAI|: mu " << mu_err << " (without the float16 rounding " << mu_plain << "), decoded " << dec_err
            << " (" << dec_plain << ")");
    CHECK(max_diff(mu, io.at("mu")) <= 1e-3 * mu_range);
    CHECK(max_diff(decoded, ref) <= 1e-3 * range);
    CHECK(mu_err <= 0.5 * mu_plain);
    CHECK(dec_err <= 0.5 * dec_plain);
  }
  torch::NoGradGuard ng;
  const double inference = max_diff(ae->decode(io.at("mu")), ref), without = max_diff(plain->decode(io.at("mu")), ref);
  MESSAGE("at inference (oneDNN): max difference " << inference << "; without the float16 rounding " << without);
  CHECK(inference <= 1e-3 * range);
  CHECK(without > 1e-4 * range);
  // AutoencoderKL (not MAISI's) has no such setting
  auto kl = nets.at("autoencoder_kl");
  kl["norm_float16"] = true;
  CHECK_FALSE(kl_from_monai(kl, nets, "autoencoder_kl").params.norm_float16);
}

TEST_CASE("KL autoencoder weights that do not fit: one error listing the missing - unexpected and mis-shaped keys") {
  auto nets = nlohmann::json::parse(read_text(test::fixture("monai/networks.json")));
  AutoencoderKL ae(kl_from_monai(nets.at("autoencoder_kl"), nets, "autoencoder_kl").params, 1);
  auto sd = read_state_dict(test::fixture("monai/autoencoder_kl.pt"));
  sd.erase("decoder.blocks.0.conv.bias");
  sd["encoder.extra.weight"] = torch::zeros({2});
  sd["quant_conv_mu.conv.weight"] = torch::zeros({3, 3, 1, 1, 2});
  try {
    load_state_dict(*ae, sd, "model_autoencoder.pt");
    FAIL("no error");
  } catch (const Error& e) {
    std::string m = e.what();
    CHECK(m.find("model_autoencoder.pt: the weights do not fit the network") == 0);
    CHECK(m.find("1 missing (decoder.blocks.0.conv.bias)") != std::string::npos);
    CHECK(m.find("1 unexpected (encoder.extra.weight)") != std::string::npos);
    CHECK(m.find("quant_conv_mu.conv.weight [3,3,1,1,2] (expected [3,3,1,1,1])") != std::string::npos);
    CHECK(m.find('\n') == std::string::npos);
  }
  auto def = nets.at("autoencoder_kl");
  def["latent_channels"] = "@latent_channels";
  CHECK_THROWS_WITH_AS(kl_from_monai(def, nets, "net.json: autoencoder_def"), "net.json: autoencoder_def: 'latent_channels' refers to '@latent_channels', which the config does not define", Error);
  nets["latent_channels"] = 4;
  CHECK(kl_from_monai(def, nets, "x").params.latent_channels == 4);
  def["attention_levels"] = "no";
  CHECK_THROWS_WITH_AS(kl_from_monai(def, nets, "n"), "n: 'attention_levels' has the wrong type (\"no\")", Error);
  CHECK_THROWS_WITH_AS(read_state_dict(test::fixture("monai/networks.json")), doctest::Contains("not a file written by torch.save"), Error);
  CHECK_THROWS_WITH_AS(read_state_dict(test::fixture("monai/autoencoder_kl.pt"), "unet_state_dict"), doctest::Contains("has no 'unet_state_dict' entry"), Error);
}

// MAISI's ControlNetMaisi (NV-Generate-CTMR's file format, include_fc as NVIDIA's controlnet_def) built by MONAI with
// random weights: its residuals from a label map's bit planes equal MONAI's, and so does the MAISI U-Net's output with
// them (which also checks that MAISI's in-place addition reaches the middle block's input).
TEST_CASE("MAISI ControlNet with MONAI weights: the residuals and the U-Net output with them equal ControlNetMaisi's") {
  auto nets = nlohmann::json::parse(read_text(test::fixture("monai/networks.json")));
  auto def = nets.at("controlnet_maisi");
  def["_target_"] = "monai.apps.generation.maisi.networks.controlnet_maisi.ControlNetMaisi";
  auto cp = monai_controlnet_from_json(def, nets, "controlnet_maisi");
  CHECK(cp.unet.maisi);
  CHECK(cp.cond_downsample() == 4);
  MonaiControlNet cn(cp);
  cn->eval();
  load_state_dict(*cn, read_state_dict(test::fixture("monai/controlnet_maisi.pt"), "controlnet_state_dict"), "controlnet");
  auto udef = nets.at("unet_maisi");
  udef["_target_"] = "DiffusionModelUNetMaisi";
  MonaiUNet unet(monai_unet_from_json(udef, nets, "unet_maisi"));
  unet->eval();
  load_state_dict(*unet, read_state_dict(test::fixture("monai/unet_maisi.pt"), "unet_state_dict"), "unet");
  auto io = read_state_dict(test::fixture("monai/controlnet_maisi_io.pt"));
  torch::NoGradGuard ng;
  auto planes = label_bit_planes(io.at("label").unsqueeze(0));
  // bit b of label 200 (0b11001000) and of 23 (0b00010111), as NV-Generate-CTMR's binarize_labels
  CHECK((label_bit_planes(torch::tensor({{200, 23}})).squeeze(0).t().equal(torch::tensor({{0, 0, 0, 1, 0, 0, 1, 1}, {1, 1, 1, 0, 1, 0, 0, 0}}, torch::kFloat))));
  auto whole = cn->embed_condition(planes);
  // In slabs along x (one output row each, and the default budget: one slab): the same embedding
  for (int64_t bytes : {int64_t{1}, int64_t{256} << 20}) {
    CAPTURE(bytes);
    auto slabs = cn->embed_label(io.at("label"), bytes);
    REQUIRE(slabs.sizes() == whole.sizes());
    CHECK((slabs - whole).abs().max().item<double>() <= 1e-6 * whole.abs().max().item<double>());
  }
  auto r = cn->residuals(io.at("x"), io.at("t"), whole, io.at("class"));
  REQUIRE(r.down.size() == 12);
  for (size_t i = 0; i < r.down.size(); ++i) check_close_to_monai(r.down[i], io.at("down_" + std::to_string(i)), "ControlNet down residual");
  check_close_to_monai(r.mid, io.at("mid"), "ControlNet middle residual");
  MonaiUNetInputs in;
  in.class_labels = io.at("class");
  in.spacing = io.at("spacing");
  in.down_residuals = r.down;
  in.mid_residual = r.mid;
  check_close_to_monai(unet->forward(io.at("x"), io.at("t"), in), io.at("out"), "U-Net output with the ControlNet");
  // MAISI's in-place addition also feeds the last residual to the middle block: with it x 1000 that shows.
  in.down_residuals.back() = r.down.back() * 1000;
  check_close_to_monai(unet->forward(io.at("x"), io.at("t"), in), io.at("out_last_x1000"), "U-Net output, last residual x 1000");
  unet->params.maisi = false;  // as MONAI's own DiffusionModelUNet adds them: not the same
  auto without = unet->forward(io.at("x"), io.at("t"), in);
  unet->params.maisi = true;
  const auto& want = io.at("out_last_x1000");
  CHECK((without - want).abs().max().item<double>() > 1e-3 * (want.max() - want.min()).item<double>());
  CHECK_THROWS_WITH(label_bit_planes(torch::tensor({256})), doctest::Contains("within 0..255"));
  def["conditioning_embedding_num_channels"] = nlohmann::json::array();
  CHECK_THROWS_WITH_AS(monai_controlnet_from_json(def, nets, "net.json: controlnet_def"),
                       "net.json: controlnet_def: 'conditioning_embedding_num_channels' must list at least one width", Error);
}

// MONAI's DiffusionModelUNet (the BraTS bundle's structure) and MAISI's DiffusionModelUNetMaisi (residual-block
// resampling, no attention output projection, modality classes, spacing input; in NV-Generate-CTMR's file format)
// built by MONAI with random weights: meddiff's forward equals MONAI's.
TEST_CASE("MONAI diffusion U-Nets with MONAI weights: the forward equals DiffusionModelUNet and DiffusionModelUNetMaisi") {
  auto nets = nlohmann::json::parse(read_text(test::fixture("monai/networks.json")));
  for (std::string name : {"unet_monai", "unet_maisi"}) {
    CAPTURE(name);
    const bool maisi = name == "unet_maisi";
    auto def = nets.at(name);
    def["_target_"] = maisi ? "monai.apps.generation.maisi.networks.diffusion_model_unet_maisi.DiffusionModelUNetMaisi"
                            : "monai.networks.nets.diffusion_model_unet.DiffusionModelUNet";
    auto p = monai_unet_from_json(def, nets, name);
    CHECK(p.maisi == maisi);
    CHECK(p.include_fc == !maisi);
    MonaiUNet net(p);
    net->eval();
    auto sd = read_state_dict(test::fixture("monai/" + name + ".pt"), maisi ? "unet_state_dict" : "");
    load_state_dict(*net, sd, name);
    auto io = read_state_dict(test::fixture("monai/" + name + "_io.pt"));
    MonaiUNetInputs in;
    if (maisi) {
      in.class_labels = io.at("class");
      in.spacing = io.at("spacing");
      CHECK((io.at("t").scalar_type() == torch::kHalf));
    }
    torch::NoGradGuard ng;
    check_close_to_monai(net->forward(io.at("x"), io.at("t"), in), io.at("out"), "U-Net output");
  }
  // A class-conditional network without classes, a spacing-conditioned one without spacing: an error, not garbage.
  auto def = nets.at("unet_maisi");
  def["_target_"] = "DiffusionModelUNetMaisi";
  MonaiUNet net(monai_unet_from_json(def, nets, "unet_maisi"));
  torch::NoGradGuard ng;
  auto x = torch::zeros({1, 4, 8, 8, 8});
  CHECK_THROWS_WITH(net->forward(x, torch::tensor({5.0})), doctest::Contains("needs class labels"));
  MonaiUNetInputs only_class;
  only_class.class_labels = torch::tensor({1});
  CHECK_THROWS_WITH(net->forward(x, torch::tensor({5.0}), only_class), doctest::Contains("needs spacing [1, 3]"));
  def["with_conditioning"] = true;
  CHECK_THROWS_WITH_AS(monai_unet_from_json(def, nets, "net.json: diffusion_unet_def"),
                       "net.json: diffusion_unet_def: 'with_conditioning' (cross-attention on a context) is not supported", Error);
}
