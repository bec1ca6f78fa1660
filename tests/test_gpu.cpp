// GPU tests (label gpu): the training steps, the quantiser, split decoding and the samplers on CUDA,
// each against the same computation on the CPU. Without a CUDA device every case says so and passes.
#include <doctest/doctest.h>

#include "data/phantom.h"
#include "diffusion/samplers.h"
#include "models/recompute.h"
#include "models/unet3d.h"
#include "models/vqgan.h"
#include "ops/kernel_support.h"
#include "ops/nearest_code.h"
#include "pipeline/autoencoder.h"
#include "pipeline/device.h"
#include "train/ldm_step.h"
#include "train/vqgan_step.h"

using namespace meddiff;

namespace {

bool have_cuda() {
  if (torch::cuda::is_available()) return true;
  MESSAGE("no CUDA device: skipped");
  return false;
}

RunConfig tiny_config(const std::string& device) {
  RunConfig c;
  c.data.shape = {16, 16, 16};
  c.vqgan.n_hiddens = 8;
  c.vqgan.downsample = {2, 2, 2};
  c.vqgan.n_codes = 64;
  c.vqgan.disc_channels = 8;
  c.vqgan.disc_layers = 2;
  c.vqgan_train.batch_size = 2;
  c.vqgan_train.gan_start = 2;
  c.vqgan_train.device = device;
  c.ldm.timesteps = 50;
  c.ldm.unet.base_channels = 16;
  c.ldm.unet.channel_mults = {1, 2};
  c.ldm.unet.downsample = {{2, 2, 2}};
  c.ldm.unet.attention_levels = {1};
  c.ldm.unet.attention_heads = 2;
  c.ldm_train.batch_size = 2;
  c.ldm_train.device = device;
  return c;
}

Batch phantom_batch(int64_t step) {
  PhantomParams p;
  p.shape = {16, 16, 16};
  std::vector<torch::Tensor> xs;
  for (int64_t i = 0; i < 2; ++i) {
    auto v = make_phantom(p, step * 2 + i, i % 2);
    xs.push_back(((v.image / v.image.max()) * 2 - 1).unsqueeze(0));
  }
  return {step, torch::stack(xs), torch::tensor({0, 1}, torch::kLong), {}};
}

}  // namespace

TEST_CASE("gpu: VQ-GAN steps on CUDA (bf16 autocast) follow the CPU run, GAN phase included") {
  if (!have_cuda()) return;
  auto cpu_cfg = tiny_config("cpu"), gpu_cfg = tiny_config("cuda");
  VQGANStepper cpu(cpu_cfg, torch::kCPU), gpu(gpu_cfg, torch::Device(torch::kCUDA, 0));
  for (int64_t s = 0; s < 4; ++s) {
    auto a = cpu.step(s, [&](int64_t) { return phantom_batch(s); });
    auto b = gpu.step(s, [&](int64_t) { return phantom_batch(s); });
    INFO("step " << s << ": cpu l1 " << a.l1 << ", cuda l1 " << b.l1);
    CHECK(b.finite);
    CHECK(b.l1 == doctest::Approx(a.l1).epsilon(0.05));
  }
  CHECK((gpu.codebook().at(0).scalar_type() == torch::kFloat));  // the codebook stays fp32
}

TEST_CASE("gpu: KL autoencoder steps on CUDA (bf16 autocast) follow the CPU run - the posterior's noise is drawn on the CPU") {
  if (!have_cuda()) return;
  auto cpu_cfg = tiny_config("cpu"), gpu_cfg = tiny_config("cuda");
  for (auto* c : {&cpu_cfg, &gpu_cfg}) {
    c->autoencoder.kind = "kl";
    c->autoencoder.kl.channels = {16, 32};
    c->autoencoder.kl.num_res_blocks = {1};
    c->autoencoder.kl.norm_groups = 8;
  }
  VQGANStepper cpu(cpu_cfg, torch::kCPU), gpu(gpu_cfg, torch::Device(torch::kCUDA, 0));
  for (int64_t s = 0; s < 4; ++s) {
    auto a = cpu.step(s, [&](int64_t) { return phantom_batch(s); });
    auto b = gpu.step(s, [&](int64_t) { return phantom_batch(s); });
    INFO("step " << s << ": cpu l1 " << a.l1 << " kl " << a.regulariser << ", cuda l1 " << b.l1 << " kl " << b.regulariser);
    CHECK(b.finite);
    CHECK(b.l1 == doctest::Approx(a.l1).epsilon(0.05));
  }
  auto ae = gpu.model->inference();
  auto z = ae->encode(phantom_batch(0).x.to(torch::Device(torch::kCUDA, 0)), AutoencoderRun{});
  CHECK(z.is_cuda());
  CHECK(ae->decode(z, AutoencoderRun{}).is_cuda());
}

TEST_CASE("gpu: LDM steps on CUDA follow the CPU run") {
  if (!have_cuda()) return;
  auto cpu_cfg = tiny_config("cpu"), gpu_cfg = tiny_config("cuda");
  LDMStepper cpu(cpu_cfg, 8, 2, torch::kCPU), gpu(gpu_cfg, 8, 2, torch::Device(torch::kCUDA, 0));
  auto gen = at::make_generator<at::CPUGeneratorImpl>(5);
  auto latents = torch::randn({2, 8, 8, 8, 8}, gen);
  for (int64_t s = 0; s < 3; ++s) {
    auto batch = [&](int64_t) { return Batch{s, latents, torch::tensor({0, 1}, torch::kLong), {}}; };
    auto a = cpu.step(s, batch), b = gpu.step(s, batch);
    INFO("step " << s << ": cpu " << a.loss << ", cuda " << b.loss);
    CHECK(b.finite);
    CHECK(b.loss == doctest::Approx(a.loss).epsilon(0.05));
  }
}

TEST_CASE("gpu: nearest codes, quantiser training step and split decoding on CUDA equal the CPU") {
  if (!have_cuda()) return;
  torch::Device cuda(torch::kCUDA, 0);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(2);
  auto codebook = torch::randn({4096, 8}, gen), z = torch::randn({50000, 8}, gen);
  auto ref = ops::nearest_code_reference(z, codebook);
  CHECK(torch::equal(ops::nearest_code(z.to(cuda), codebook.to(cuda), int64_t{1} << 20).index.cpu(), ref.index));
  {
    AutocastGuard ac(true);  // bf16 autocast around the search: it must stay fp32
    CHECK(torch::equal(ops::nearest_code(z.to(cuda), codebook.to(cuda)).index.cpu(), ref.index));
  }
  VQGANParams p;
  p.n_hiddens = 8;
  p.downsample = {2, 2, 2};
  p.embedding_dim = 8;
  p.n_codes = 64;
  torch::manual_seed(3);
  VQGAN m(p);
  m->train();
  auto x = torch::rand({2, 1, 16, 16, 16}, gen) * 2 - 1;
  auto g1 = at::make_generator<at::CPUGeneratorImpl>(9);
  m->to(cuda);
  auto out = m->forward(x.to(cuda), g1);  // codebook initialisation draws on the CPU generator, moves to CUDA
  CHECK(out.vq.codes.is_cuda());
  CHECK(out.vq.perplexity.item<double>() > 1);
  m->eval();
  auto zl = torch::randn({1, 8, 24, 24, 24}, gen).to(cuda);
  torch::NoGradGuard ng;
  // Split decoding runs the same arithmetic per voxel as the whole decode. Exactness holds with TF32 off;
  // with TF32 on (LibTorch's default for cuDNN convolutions on Ampere and newer) slab and whole-volume
  // convolutions may take other algorithms and round their 10-bit-mantissa products differently:
  // README "Split decoding" states the tolerance below.
  const bool tf32_default = at::globalContext().allowTF32CuDNN();
  for (bool tf32 : {false, true}) {
    at::globalContext().setAllowTF32CuDNN(tf32);
    auto plain = m->decoder->forward(m->quantizer->lookup(m->quantizer->quantize_codes(zl)));
    AutoencoderRun run;
    run.force_split = true;
    run.budget_bytes = 64 << 20;
    auto split = decode_latent(m, zl, run);
    double range = (plain.max() - plain.min()).item<double>();
    double diff = (split - plain).abs().max().item<double>() / range;
    MESSAGE("split vs whole decode, TF32 " << (tf32 ? "on" : "off") << ": max difference " << diff << " of the range");
    CHECK(diff < (tf32 ? 5e-3 : 1e-4));
  }
  at::globalContext().setAllowTF32CuDNN(tf32_default);
}

TEST_CASE("gpu: activation checkpointing with MEDDIFF_KERNELS=all leaves the loss, the gradients and the dtype unchanged") {
  if (!have_cuda()) return;
  torch::Device cuda(torch::kCUDA, 0);
  ops::set_enabled_kernels("all");
  auto cfg = tiny_config("cuda");
  torch::manual_seed(7);
  UNet3d net(cfg.ldm.unet, 8, 2);
  net->to(cuda);
  net->train();
  auto gen = at::make_generator<at::CPUGeneratorImpl>(6);
  auto x = torch::randn({2, 8, 8, 8, 8}, gen).to(cuda);
  auto t = torch::tensor({3, 40}, torch::kLong).to(cuda), c = torch::tensor({0, 2}, torch::kLong).to(cuda);
  for (bool bf16 : {false, true}) {
    auto run = [&](bool ckpt) {
      set_checkpointing(*net, ckpt);
      net->zero_grad();
      torch::Tensor out;
      {
        AutocastGuard ac(bf16);
        out = net->forward(x, t, c);
      }
      auto loss = out.to(torch::kFloat).pow(2).mean();
      loss.backward();
      std::vector<torch::Tensor> grads;
      for (const auto& p : net->parameters()) grads.push_back(p.grad().defined() ? p.grad().clone() : torch::zeros_like(p));
      return std::make_tuple(loss.item<double>(), grads, out.scalar_type());
    };
    auto [l0, g0, d0] = run(false);
    auto [l1, g1, d1] = run(true);
    INFO("bf16 " << bf16 << ": loss " << l0 << " plain, " << l1 << " checkpointed");
    CHECK(l1 == doctest::Approx(l0).epsilon(1e-5));
    CHECK((d0 == d1));
    double worst = 0;
    for (size_t i = 0; i < g0.size(); ++i)
      worst = std::max(worst, ((g1[i] - g0[i]).abs().max() / (g0[i].abs().max() + 1e-12)).item<double>());
    MESSAGE("largest relative gradient difference (bf16 " << bf16 << "): " << worst);
    CHECK(worst < (bf16 ? 1e-2 : 1e-4));
  }
  set_checkpointing(*net, false);
  ops::set_enabled_kernels("default");
}

TEST_CASE("gpu: the samplers give the CPU's latents on CUDA, with and without class guidance, kernels on and off") {
  if (!have_cuda()) return;
  torch::Device cuda(torch::kCUDA, 0);
  auto schedule = make_schedule("cosine", 100, 0.008);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(4);
  auto x_T = torch::randn({2, 4, 8, 8, 8}, gen);
  auto step_noise = torch::randn({100, 2, 4, 8, 8, 8}, gen);
  // an analytic "network", the same on both devices: eps = 0.3 x without classes; with classes the null
  // class (2) predicts 0.3 x and class k 0.3 x + 0.1 (k + 1)
  ModelFn model = [](const torch::Tensor& x, const torch::Tensor&, const torch::Tensor& c) {
    if (!c.defined()) return x * 0.3;
    auto k = c.to(x.device(), torch::kFloat).view({-1, 1, 1, 1, 1});
    return x * 0.3 + torch::where(k >= 2, torch::zeros_like(k), 0.1 * (k + 1));
  };
  for (bool guided : {false, true})
    for (const char* name : {"ddpm", "ddim", "dpmpp2m"})
      for (const char* kernels : {"none", "all"}) {
        SamplerParams sp;
        sp.sampler = name;
        sp.steps = 20;
        sp.eta = 0.5;
        sp.guidance = guided ? 3.0 : 1.0;
        auto classes = guided ? torch::tensor({0, 1}, torch::kLong) : torch::Tensor();
        auto on = [&](const torch::Device& d) {
          return sample(schedule, Prediction::Eps, model, x_T.to(d), classes.defined() ? classes.to(d) : classes, 2, sp,
                        [&](int64_t i) { return step_noise[i].to(d); });
        };
        ops::set_enabled_kernels(kernels);
        auto a = on(torch::kCPU), b = on(cuda).cpu();
        INFO(name << " guided " << guided << " kernels " << kernels);
        CHECK(torch::allclose(a, b, 1e-4, 1e-4));
      }
  ops::set_enabled_kernels("default");
}
