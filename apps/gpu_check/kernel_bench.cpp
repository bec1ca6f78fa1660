#include "kernel_bench.h"

#include "core/fs.h"
#include "diffusion/samplers.h"
#include "models/unet3d.h"
#include "ops/attention.h"
#include "ops/kernel_support.h"
#include "ops/nearest_code.h"
#include "ops/norm_act.h"
#include "ops/sampler_update.h"
#include "pipeline/bench.h"
#include "pipeline/device.h"
#include "train/train_config.h"

#include <fmt/format.h>

namespace meddiff {

namespace {

struct Row {
  std::string name, unit;
  double kernel_s = 0, libtorch_s = 0, work = 0, peak = 0;  // work: bytes or FLOP of one call
  double max_error = 0;
};

double seconds(const std::function<void()>& fn, const torch::Device& d, int64_t reps) { return measure(fn, d, reps).median_s; }

// Times `fn` with every kernel off and with every kernel on; the largest difference of the results.
template <class F>
Row compare(const std::string& name, const std::string& unit, double work, double peak, const torch::Device& d, F fn) {
  Row r{name, unit, 0, 0, work, peak, 0};
  ops::set_enabled_kernels("none");
  auto want = fn();
  r.libtorch_s = seconds([&] { fn(); }, d, 20);
  ops::set_enabled_kernels("all");
  auto got = fn();
  r.kernel_s = seconds([&] { fn(); }, d, 20);
  r.max_error = (got.to(torch::kDouble) - want.to(torch::kDouble)).abs().max().template item<double>();
  ops::set_enabled_kernels("default");
  return r;
}

}  // namespace

nlohmann::json kernel_benchmark(const torch::Device& d, const std::string& configs_dir, std::string& text) {
  torch::NoGradGuard ng;
  torch::manual_seed(0);
  auto f32 = torch::TensorOptions().device(d).dtype(torch::kFloat);
  // Peaks measured on this card.
  auto big = torch::empty({int64_t{1} << 28}, f32);  // 1 GiB
  auto dst = torch::empty_like(big);
  const double copy_s = seconds([&] { dst.copy_(big); }, d, 10);
  const double peak_gbs = 2.0 * static_cast<double>(big.numel()) * 4 / copy_s / 1e9;
  big = dst = torch::Tensor();
  auto peak_tflops = [&](torch::ScalarType t) {
    auto a = torch::randn({8192, 8192}, f32).to(t), b = torch::randn({8192, 8192}, f32).to(t);
    return 2.0 * 8192.0 * 8192.0 * 8192.0 / seconds([&] { torch::mm(a, b); }, d, 10) / 1e12;
  };
  const double peak_bf16 = peak_tflops(torch::kBFloat16), peak_fp32 = peak_tflops(torch::kFloat);

  std::vector<Row> rows;
  {  // nearest code at brats-flair-64's codebook: 2 x 32^3 latent vectors, 16384 codes of 8
    auto z = torch::randn({2 * 32768, 8}, f32), cb = torch::randn({16384, 8}, f32);
    rows.push_back(compare("nearest_code N 65536 K 16384 E 8", "TFLOP/s", 3.0 * 65536 * 16384 * 8, peak_fp32, d,
                           [&] { return ops::nearest_code(z, cb).distance; }));
  }
  for (auto t : {torch::kFloat, torch::kBFloat16}) {  // GroupNorm + FiLM + SiLU at the VQ-GAN decoder's full-resolution stage
    auto x = torch::randn({1, 64, 64, 96, 96}, f32).to(t);
    auto w = torch::randn({64}, f32), b = torch::randn({64}, f32), sc = torch::randn({1, 64}, f32), sh = torch::randn({1, 64}, f32);
    const double bytes = 3.0 * static_cast<double>(x.numel() * x.element_size());  // read twice, write once
    rows.push_back(compare(fmt::format("norm_act 64x64x96x96 {}", t == torch::kFloat ? "fp32" : "bf16"), "GB/s", bytes, peak_gbs, d,
                           [&] { return ops::norm_act(x, 32, w, b, 1e-5, sc, sh, true); }));
  }
  for (auto t : {torch::kFloat, torch::kBFloat16}) {  // attention in the U-Net's layout: full over 16^3, axial over 32^3
    const char* tn = t == torch::kFloat ? "fp32" : "bf16";
    const double peak = t == torch::kFloat ? peak_fp32 : peak_bf16;
    {
      auto qkv = torch::randn({2, 3, 8, 64, 16, 16, 16}, f32).to(t);
      auto q = ops::spatial_tokens(qkv.select(1, 0)), k = ops::spatial_tokens(qkv.select(1, 1)), v = ops::spatial_tokens(qkv.select(1, 2));
      auto out = torch::empty({2, 8, 64, 16, 16, 16}, qkv.options());
      auto o = ops::spatial_tokens(out);
      rows.push_back(compare(fmt::format("attention full 4096 tokens d 64 {}", tn), "TFLOP/s", 4.0 * 2 * 8 * 4096.0 * 4096 * 64, peak, d, [&] {
        ops::attention_into(q, k, v, o);
        return out;
      }));
    }
    {
      auto qkv = torch::randn({2, 3, 8, 64, 32, 32, 32}, f32).to(t);
      auto q = qkv.select(1, 0), k = qkv.select(1, 1), v = qkv.select(1, 2);
      auto out = torch::empty({2, 8, 64, 32, 32, 32}, qkv.options());
      rows.push_back(compare(fmt::format("attention axial 32^3 d 64 {}", tn), "TFLOP/s", 3 * 4.0 * 2 * 8 * 32768.0 * 32 * 64, peak, d, [&] {
        ops::axial_attention_into(q, k, v, out);
        return out;
      }));
    }
  }
  {  // one guided DPM-Solver++ step of a batch of 2 brats-flair-64 latents
    auto mk = [&] { return torch::randn({2, 8, 32, 32, 32}, f32); };
    auto x = mk(), c = mk(), u = mk(), p = mk();
    ops::SamplerUpdate s;
    s.kind = ops::OutputKind::V;
    s.guidance = 3;
    s.a = 0.6;
    s.s = 0.8;
    s.clip = 1;
    s.c = {0.9, 0.3, 0, -0.1, 0};
    s.want_x0 = true;
    rows.push_back(compare("sampler_update guided v, clip, 2nd order", "GB/s", 6.0 * static_cast<double>(x.numel()) * 4, peak_gbs, d,
                           [&] { return ops::sampler_update(x, c, u, p, std::nullopt, std::nullopt, s).out; }));
  }

  nlohmann::json rec = {{"peak_copy_gb_per_s", peak_gbs}, {"peak_bf16_tflops", peak_bf16}, {"peak_fp32_tflops", peak_fp32}};
  text += fmt::format("kernels against LibTorch (median of 20; peaks measured: copy {:.0f} GB/s, bf16 {:.0f} TFLOP/s, fp32 {:.1f} TFLOP/s):\n",
                      peak_gbs, peak_bf16, peak_fp32);
  text += fmt::format("  {:<44} {:>10} {:>10} {:>7} {:>12} {:>8} {:>10}\n", "case", "kernel ms", "LibTorch", "ratio", "kernel rate", "of peak",
                      "max diff");
  std::vector<std::string> losers;
  for (const auto& r : rows) {
    const double rate = r.work / r.kernel_s / (r.unit == "GB/s" ? 1e9 : 1e12), ratio = r.libtorch_s / r.kernel_s;
    text += fmt::format("  {:<44} {:>10.3f} {:>10.3f} {:>6.2f}x {:>7.1f} {:<7} {:>6.0f} % {:>10.2e}\n", r.name, 1e3 * r.kernel_s, 1e3 * r.libtorch_s,
                        ratio, rate, r.unit, 100 * rate / r.peak, r.max_error);
    rec["cases"].push_back({{"case", r.name}, {"kernel_s", r.kernel_s}, {"libtorch_s", r.libtorch_s}, {"speedup", ratio}, {"rate", rate},
                            {"unit", r.unit}, {"fraction_of_peak", rate / r.peak}, {"max_abs_difference", r.max_error}});
    if (ratio < 1) losers.push_back(r.name);
  }
  rec["slower_than_libtorch"] = losers;
  text += losers.empty() ? "  every kernel case is faster than LibTorch\n" : fmt::format("  slower than LibTorch: {}\n", fmt::join(losers, "; "));

  // End to end: the U-Net of brats-flair-64 (latent 8x32^3, guidance pair = batch 2) and 10 DDIM steps.
  try {
    RunConfig c = resolve_config((fs::path(configs_dir) / "brats-flair-64.json").string(), {});
    UNet3d net(c.ldm.unet, 8, 2);
    for (auto& p : net->parameters()) p.add_(torch::randn_like(p) * 0.02);  // the zero-initialised output layers too
    net->to(d);
    net->eval();
    auto x = torch::randn({2, 8, 32, 32, 32}, f32);
    auto t = torch::full({2}, 500, torch::TensorOptions().device(d).dtype(torch::kLong));
    auto cls = torch::tensor({0, 2}, torch::TensorOptions().device(d).dtype(torch::kLong));
    auto sched = make_schedule(c.ldm.schedule, c.ldm.timesteps);
    text += "end to end (brats-flair-64 U-Net with random weights, latent 8x32^3; kernel sets, then bf16 autocast):\n";
    torch::Tensor fp32_volume;
    for (const std::string run : {"none", "default", "all", "default+bf16"}) {
      const bool bf16 = run == "default+bf16";
      ops::set_enabled_kernels(bf16 ? "default" : run);
      AutocastGuard autocast(bf16);
      const double fwd = seconds([&] { net->forward(x, t, cls); }, d, 10);
      SamplerParams sp;
      sp.steps = 10;
      sp.guidance = 3;
      ModelFn model = [&](const torch::Tensor& xx, const torch::Tensor& tt, const torch::Tensor& cc) { return net->forward(xx, tt, cc); };
      torch::Tensor volume;
      const double smp = seconds([&] { volume = sample(sched, parse_prediction(c.ldm.prediction), model, x.slice(0, 0, 1), cls.slice(0, 0, 1), 2, sp, nullptr); }, d, 3);
      if (!fp32_volume.defined()) fp32_volume = volume;
      const double diff = (volume - fp32_volume).abs().max().item<double>();
      rec["end_to_end"][run] = {{"unet_forward_batch2_s", fwd}, {"ddim10_guided_s", smp}, {"max_abs_difference_to_no_kernels", diff}};
      text += fmt::format("  {:<13} U-Net forward (batch 2) {:.1f} ms, DDIM 10 steps with guidance {:.3f} s per volume, latent max |diff| {:.2e}\n",
                          run, 1e3 * fwd, smp, diff);
    }
  } catch (const std::exception& e) {
    rec["end_to_end_error"] = e.what();
    text += fmt::format("  end to end: {}\n", e.what());
  }
  ops::set_enabled_kernels("default");
  return rec;
}

}  // namespace meddiff
