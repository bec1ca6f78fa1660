// GPU tests (label gpu): the training steps, the quantiser, split decoding and the samplers on CUDA,
// each against the same computation on the CPU. Without a CUDA device every case says so and passes.
#include <doctest/doctest.h>

#include "core/fs.h"
#include "data/phantom.h"
#include "diffusion/samplers.h"
#include "models/autoencoder_kl.h"
#include "models/kl_params.h"
#include "models/monai_controlnet.h"
#include "models/monai_unet.h"
#include "models/recompute.h"
#include "models/state_dict.h"
#include "models/unet3d.h"
#include "models/vqgan.h"
#include "ops/kernel_support.h"
#include "ops/nearest_code.h"
#include "pipeline/autoencoder.h"
#include "pipeline/denoiser.h"
#include "pipeline/device.h"
#include "pipeline/loaded_models.h"
#include "train/imported_ldm_trainer.h"
#include "train/ldm_step.h"
#include "train/vqgan_step.h"
#include "test_support.h"

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

// The maximum difference of `got` (any device) from `want` as a share of want's range.
double of_range(const torch::Tensor& got, const torch::Tensor& want) {
  auto w = want.detach().to(torch::kCPU, torch::kFloat);
  return (got.detach().to(torch::kCPU, torch::kFloat) - w).abs().max().item<double>() / (w.max() - w.min()).item<double>();
}

// The MAISI U-Net of the MONAI fixtures (tests/fixtures/monai, built by MONAI) with its weights `sd`, on `device`.
MonaiUNet fixture_unet(const nlohmann::json& nets, const TensorMap& sd, const torch::Device& device) {
  auto def = nets.at("unet_maisi");
  def["_target_"] = "DiffusionModelUNetMaisi";
  MonaiUNet net(monai_unet_from_json(def, nets, "unet_maisi"));
  load_state_dict(*net, sd, "unet");
  net->to(device);
  return net;
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

// The networks meddiff imports from MAISI-v2 (tests/fixtures/monai: MONAI-built, random weights) on CUDA against the
// same networks on the CPU, with TF32 off (float32 both sides): the ControlNet's label embedding in slabs, one sampling
// step of the ControlNet denoiser with the null class made on the CPU (what sample runs per step), one fine-tuning
// loss with its gradients (train-ldm --init's rule: the uniform draws stay on the CPU), and the autoencoder's decode.
TEST_CASE("gpu: imported MAISI networks on CUDA equal the CPU - ControlNet step and label embedding and fine-tuning loss and decode") {
  if (!have_cuda()) return;
  const torch::Device cuda(torch::kCUDA, 0);
  const bool tf32_default = at::globalContext().allowTF32CuDNN(), tf32_blas = at::globalContext().allowTF32CuBLAS();
  at::globalContext().setAllowTF32CuDNN(false);
  at::globalContext().setAllowTF32CuBLAS(false);
  auto nets = nlohmann::json::parse(read_text(test::fixture("monai/networks.json")));
  auto cdef = nets.at("controlnet_maisi");
  cdef["_target_"] = "monai.apps.generation.maisi.networks.controlnet_maisi.ControlNetMaisi";
  const auto cp = monai_controlnet_from_json(cdef, nets, "controlnet_maisi");
  auto io = read_state_dict(test::fixture("monai/controlnet_maisi_io.pt"));
  const auto unet_sd = read_state_dict(test::fixture("monai/unet_maisi.pt"), "unet_state_dict");
  const auto cn_sd = read_state_dict(test::fixture("monai/controlnet_maisi.pt"), "controlnet_state_dict");
  std::vector<torch::Tensor> outs;
  torch::Tensor embedded_cpu;
  for (int on_gpu = 0; on_gpu < 2; ++on_gpu) {
    const torch::Device device = on_gpu ? cuda : torch::Device(torch::kCPU);
    MonaiControlNet cn(cp);
    load_state_dict(*cn, cn_sd, "controlnet");
    cn->to(device);
    cn->eval();
    MonaiControlNetDenoiser den(fixture_unet(nets, unet_sd, device), 0, cn);
    den.net->eval();
    den.set_spacing(io.at("spacing").slice(0, 0, 1));  // on the CPU, as sample sets it
    torch::NoGradGuard ng;
    // the label map stays on the CPU: the embedding moves each slab (here one output row each) to the network's device
    auto e = cn->embed_label(io.at("label"), on_gpu ? 1 : int64_t{1} << 30);
    CHECK((e.device() == device));
    if (on_gpu) {
      MESSAGE("label embedding, CUDA in slabs vs CPU: " << of_range(e, embedded_cpu) << " of the range");
      CHECK(of_range(e, embedded_cpu) <= 1e-5);
    } else {
      embedded_cpu = e;
    }
    const auto x = io.at("x").to(device), t = io.at("t").to(device);
    for (const auto& cls : {io.at("class").to(device), torch::Tensor()}) outs.push_back(den.forward(x, t, cls, e));
  }
  for (size_t i = 0; i < 2; ++i) {
    CHECK((outs[i + 2].device() == cuda));
    MESSAGE("ControlNet denoiser, " << std::string(i ? "null class" : "class given") << ": CUDA vs CPU " << of_range(outs[i + 2], outs[i]));
    CHECK(of_range(outs[i + 2], outs[i]) <= 1e-4);
  }

  auto step = read_state_dict(test::fixture("monai/train_step.pt"));
  std::vector<torch::Tensor> losses, grads;
  for (const auto& device : {torch::Device(torch::kCPU), cuda}) {
    auto net = fixture_unet(nets, unet_sd, device);
    LoadedLDM l;
    l.maisi = MaisiRFlowParams{};
    MonaiUNetInputs in;
    in.class_labels = step.at("maisi_class").to(device);
    in.spacing = step.at("maisi_spacing").to(device);
    net->zero_grad();
    auto loss = imported_ldm_loss(l, net, step.at("maisi_x0").to(device), step.at("maisi_noise").to(device), step.at("maisi_u"), in);
    loss.backward();
    losses.push_back(loss.detach().cpu());
    grads.push_back(net->conv_in->conv->weight.grad().cpu());
  }
  MESSAGE("fine-tuning loss CPU " << losses[0].item<double>() << ", CUDA " << losses[1].item<double>() << "; MONAI "
          << step.at("maisi_loss").item<double>());
  CHECK(losses[1].item<double>() == doctest::Approx(losses[0].item<double>()).epsilon(1e-5));
  const double gscale = grads[0].abs().max().item<double>(), gdiff = (grads[1] - grads[0]).abs().max().item<double>();
  MESSAGE("conv_in gradient, CUDA vs CPU: " << gdiff << " of " << gscale);
  CHECK(gdiff <= 1e-4 * gscale);

  auto adef = nets.at("autoencoder_maisi");
  adef["_target_"] = "monai.apps.generation.maisi.networks.autoencoderkl_maisi.AutoencoderKlMaisi";
  auto m = kl_from_monai(adef, nets, "autoencoder_maisi");
  auto aio = read_state_dict(test::fixture("monai/autoencoder_maisi_io.pt"));
  const auto ae_sd = read_state_dict(test::fixture("monai/autoencoder_maisi.pt"));
  std::vector<torch::Tensor> decoded;
  for (const auto& device : {torch::Device(torch::kCPU), cuda}) {
    AutoencoderKL ae(m.params, m.in_channels);
    load_state_dict(*ae, ae_sd, "autoencoder", maisi_autoencoder_key);
    ae->to(device);
    ae->eval();
    torch::NoGradGuard ng;
    decoded.push_back(ae->decode(aio.at("mu").to(device)));
  }
  CHECK((decoded[1].device() == cuda));
  MESSAGE("MAISI autoencoder decode, CUDA vs CPU: " << of_range(decoded[1], decoded[0]) << " of the range");
  CHECK(of_range(decoded[1], decoded[0]) <= 1e-4);
  at::globalContext().setAllowTF32CuDNN(tf32_default);
  at::globalContext().setAllowTF32CuBLAS(tf32_blas);
}
