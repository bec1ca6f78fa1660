#include <doctest/doctest.h>

#include "core/fs.h"
#include "core/error.h"
#include "diffusion/maisi_rflow.h"
#include "diffusion/samplers.h"
#include "models/autoencoder_kl.h"
#include "models/monai_unet.h"
#include "models/state_dict.h"
#include "models/unet3d.h"
#include "ops/attention.h"
#include "test_support.h"

#include <nlohmann/json.hpp>

#include <cmath>

using namespace meddiff;

namespace {
nlohmann::json reference() { return nlohmann::json::parse(read_text(test::fixture("diffusion_reference.json"))); }

torch::Tensor flat(const nlohmann::json& j) {
  std::vector<double> v;
  std::function<void(const nlohmann::json&)> walk = [&](const nlohmann::json& x) {
    if (x.is_array()) for (const auto& e : x) walk(e);
    else v.push_back(x.get<double>());
  };
  walk(j);
  return torch::tensor(v, torch::kDouble);
}

double max_abs(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<double>(); }
}  // namespace

TEST_CASE("schedules: alphas_cumprod equal diffusers' to 1e-6") {
  auto ref = reference();
  for (const char* kind : {"linear", "cosine", "scaled_linear"})
    for (int64_t T : {300, 1000}) {
      auto mine = make_schedule(kind, T).alphas_cumprod;
      auto theirs = flat(ref["schedules"][std::string(kind) + "_" + std::to_string(T)]);
      INFO(kind << " T=" << T << " max error " << max_abs(mine, theirs));
      CHECK(max_abs(mine, theirs) < 1e-6);
    }
  // closed form of the cosine schedule away from the clipped end: f(t)/f(0)
  auto s = make_schedule("cosine", 300);
  auto f = [](double t) { double c = std::cos((t / 300 + 0.008) / 1.008 * M_PI / 2); return c * c; };
  CHECK(s.alpha_bar(149) == doctest::Approx(f(150) / f(0)).epsilon(1e-9));
  CHECK_THROWS_WITH_AS(make_schedule("quadratic", 10), doctest::Contains("ldm.schedule"), Error);
}

TEST_CASE("one DDPM step equals diffusers' DDPMScheduler.step") {
  auto ref = reference();
  for (const auto& c : ref["ddpm_steps"]) {
    auto s = make_schedule(c["schedule"].get<std::string>(), c["T"].get<int64_t>());
    int64_t t = c["t"];
    double ab_t = s.alpha_bar(t), ab_s = s.alpha_bar(t - 1);
    auto x_t = flat(c["x_t"]), eps = flat(c["eps"]), noise = flat(c["noise"]);
    auto x0 = (x_t - std::sqrt(1 - ab_t) * eps) / std::sqrt(ab_t);
    auto prev = ddpm_step(x_t, x0, ab_t, ab_s, noise);
    INFO(c["schedule"].get<std::string>() << " t=" << t);
    CHECK(max_abs(prev, flat(c["prev"])) < 1e-6);
  }
}

TEST_CASE("one DDIM step (eta 0 and 0.5) equals diffusers' DDIMScheduler.step") {
  auto ref = reference();
  for (const auto& c : ref["ddim_steps"]) {
    auto s = make_schedule(c["schedule"].get<std::string>(), c["T"].get<int64_t>());
    int64_t t = c["t"], prev_t = c["prev_t"];
    double ab_t = s.alpha_bar(t), ab_s = prev_t >= 0 ? s.alpha_bar(prev_t) : 1.0;
    auto x_t = flat(c["x_t"]), eps = flat(c["eps"]), noise = flat(c["noise"]);
    auto x0 = (x_t - std::sqrt(1 - ab_t) * eps) / std::sqrt(ab_t);
    double eta = c["eta"];
    auto prev = ddim_step(x0, eps, ab_t, ab_s, eta, noise);
    INFO(c["schedule"].get<std::string>() << " t=" << t << " eta=" << eta);
    CHECK(max_abs(prev, flat(c["prev"])) < 1e-6);
  }
}

namespace {
// Gaussian data x0 ~ N(0, s^2): the exact denoiser is E[x0 | x_t] = sqrt(ab) s^2 / (ab s^2 + 1 - ab) x_t and
// the probability-flow ODE maps x_T to x_T * m(ab_end) / m(ab_T), m(ab) = sqrt(ab s^2 + 1 - ab).
double solve(const std::string& sampler, int64_t steps, double s2, const std::string& grid = "uniform") {
  auto sched = make_schedule("linear", 1000);
  auto ts = grid_timesteps(sched, steps, grid);
  torch::Tensor x = torch::tensor({1.0}, torch::kDouble);
  std::optional<torch::Tensor> x0_prev;
  double ab_prev = 0;
  for (size_t i = 0; i + 1 < ts.size(); ++i) {  // integrate from t = 999 to t = 0 (not to noise level zero)
    double ab_t = sched.alpha_bar(ts[i]), ab_s = sched.alpha_bar(ts[i + 1]);
    auto x0 = x * (std::sqrt(ab_t) * s2 / (ab_t * s2 + 1 - ab_t));
    if (sampler == "ddim") {
      x = ddim_step(x0, eps_from_x0(x0, x, ab_t), ab_t, ab_s, 0.0, std::nullopt);
    } else {
      x = dpmpp2m_step(x, x0, ab_t, ab_s, x0_prev, ab_prev);
      x0_prev = x0;
      ab_prev = ab_t;
    }
  }
  auto m = [&](double ab) { return std::sqrt(ab * s2 + 1 - ab); };
  double exact = m(sched.alpha_bar(0)) / m(sched.alpha_bar(999));
  return std::abs(x.item<double>() - exact);
}
}  // namespace

TEST_CASE("DPM-Solver++(2M) converges with order 2 on a problem with an exact solution and DDIM with order 1") {
  const double s2 = 0.25;
  for (int n : {10, 20, 40, 80, 160, 320})
    MESSAGE(n << " steps: error DDIM " << solve("ddim", n, s2) << ", DPM-Solver++(2M) " << solve("dpmpp2m", n, s2));
  // Observed order log2(err(N) / err(2N)) in the asymptotic regime (time-uniform steps put very unequal
  // log-SNR steps near t = 0, so coarse grids are pre-asymptotic).
  double ddim_order = std::log2(solve("ddim", 80, s2) / solve("ddim", 160, s2));
  double dpm_order = std::log2(solve("dpmpp2m", 80, s2) / solve("dpmpp2m", 160, s2));
  double dpm_order2 = std::log2(solve("dpmpp2m", 160, s2) / solve("dpmpp2m", 320, s2));
  MESSAGE("observed order: DDIM " << ddim_order << ", DPM-Solver++(2M) " << dpm_order << " and " << dpm_order2);
  CHECK(ddim_order == doctest::Approx(1.0).epsilon(0.1));
  CHECK(dpm_order > 1.8);
  CHECK(dpm_order2 > 1.8);
  CHECK(solve("dpmpp2m", 80, s2) < solve("ddim", 80, s2));
}

namespace {

// Rectified flow on Gaussian data x0 ~ N(mu, s^2) per element: the exact velocity
// E[eps - x0 | x_t] with m_t = (1 - t) mu and var_t = (1 - t)^2 s^2 + t^2, and the exact solution
// x_0 = mu + s x_1 of the ODE from x_1 ~ N(0, 1). Returns the largest error at t = 0.
double rflow_error(const std::string& method, int64_t steps, double shift, bool through_sampler = false) {
  const double mu = 0.7, s = 0.4;
  auto x1 = torch::linspace(-2.5, 2.5, 11, torch::kDouble);
  auto velocity = [&](const torch::Tensor& x, double t) {
    const double m = (1 - t) * mu, var = (1 - t) * (1 - t) * s * s + t * t;
    return (t - (1 - t) * s * s) / var * (x - m) - mu;
  };
  torch::Tensor x0;
  if (!through_sampler) {
    x0 = rflow_integrate(velocity, x1, rflow_time_grid(steps, shift), method);
  } else {  // the same through sample_rflow: a network that is handed 1000 t
    ModelFn net = [&](const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor&) {
      return velocity(x, t[0].item<double>() / 1000.0);
    };
    SamplerParams p;
    p.sampler = method;
    p.steps = steps;
    p.clip_x0 = false;
    x0 = sample_rflow(shift, net, x1.unsqueeze(0), torch::Tensor(), 0, p);
  }
  return (x0 - (mu + s * x1)).abs().max().item<double>();
}

}  // namespace

TEST_CASE("rectified flow: Euler converges with order 1 and Heun with order 2 to the exact Gaussian solution") {
  for (double shift : {1.0, 2.0}) {
    double euler = std::log2(rflow_error("euler", 80, shift) / rflow_error("euler", 160, shift));
    double heun = std::log2(rflow_error("heun", 80, shift) / rflow_error("heun", 160, shift));
    MESSAGE("shift " << shift << ": error Euler 40 steps " << rflow_error("euler", 40, shift) << ", Heun " << rflow_error("heun", 40, shift)
                     << "; observed order Euler " << euler << ", Heun " << heun);
    CHECK(euler == doctest::Approx(1.0).epsilon(0.1));
    CHECK(heun == doctest::Approx(2.0).epsilon(0.1));
    CHECK(rflow_error("heun", 20, shift) < rflow_error("euler", 40, shift));  // same number of evaluations
  }
  // the sampler (time as 1000 t in float32, guidance off) integrates as rflow_integrate
  CHECK(rflow_error("euler", 30, 1.5, true) == doctest::Approx(rflow_error("euler", 30, 1.5)).epsilon(1e-4));
  // the shift and its grid: s t / (1 + (s - 1) t), from 1 to 0
  CHECK(rflow_shift_time(0.5, 3.0) == doctest::Approx(0.75));
  auto g = rflow_time_grid(4, 3.0);
  REQUIRE(g.size() == 5);
  CHECK(g.front() == 1.0);
  CHECK(g.back() == 0.0);
  CHECK(g[2] == doctest::Approx(0.75));
  CHECK(rflow_resolution_shift(32768) == doctest::Approx(1.0));
  CHECK(rflow_resolution_shift(8 * 32768) == doctest::Approx(2.0));
  // interpolation and target: x_t = (1 - t) x0 + t eps, v = eps - x0
  auto x0 = torch::ones({2, 1, 2, 2, 2}), eps = torch::zeros({2, 1, 2, 2, 2});
  auto xt = rflow_interpolate(x0, eps, torch::tensor({0.25, 1.0}));
  CHECK(xt[0].mean().item<double>() == doctest::Approx(0.75));
  CHECK(xt[1].abs().max().item<double>() == 0.0);
  CHECK(rflow_velocity_target(x0, eps).mean().item<double>() == -1.0);
  SamplerParams bad;
  bad.sampler = "ddim";
  meddiff::test::check_error([&] { bad.validate(0); }, {"euler or heun"});
  bad.sampler = "heun";
  meddiff::test::check_error([&] { bad.validate(300); }, {"ddpm, ddim or dpmpp2m", "rectified flow"});
}

TEST_CASE("timestep grids: log-SNR and Karras grids span T-1..0, are uniform in their coordinate, and help DPM-Solver++ at few steps") {
  auto sched = make_schedule("cosine", 300);
  CHECK(grid_timesteps(sched, 4, "uniform") == sampling_timesteps(300, 4));
  for (const char* g : {"logsnr", "karras"}) {
    auto ts = grid_timesteps(sched, 12, g);
    INFO(g);
    CHECK(ts.front() == 299);
    CHECK(ts.back() == 0);
    for (size_t i = 1; i < ts.size(); ++i) CHECK(ts[i] < ts[i - 1]);
  }
  // log-SNR steps between consecutive visited timesteps are about equal (where the grid is not cut by
  // the integer timesteps): compare the middle steps
  auto ts = grid_timesteps(make_schedule("linear", 1000), 10, "logsnr");
  auto lin = make_schedule("linear", 1000);
  auto lam_lin = [&](int64_t t) { double ab = lin.alpha_bar(t); return std::log(ab / (1 - ab)); };
  REQUIRE(ts.size() == 10);
  double h0 = lam_lin(ts[4]) - lam_lin(ts[3]), h1 = lam_lin(ts[6]) - lam_lin(ts[5]);
  CHECK(h0 == doctest::Approx(h1).epsilon(0.02));
  const double s2 = 0.25;
  for (int n : {10, 20})
    MESSAGE(n << " steps: DPM-Solver++(2M) error uniform " << solve("dpmpp2m", n, s2) << ", logsnr " << solve("dpmpp2m", n, s2, "logsnr")
              << ", karras " << solve("dpmpp2m", n, s2, "karras") << "; DDIM uniform " << solve("ddim", n, s2) << ", logsnr "
              << solve("ddim", n, s2, "logsnr"));
  CHECK(solve("dpmpp2m", 10, s2, "logsnr") < 0.2 * solve("dpmpp2m", 10, s2));
  CHECK(solve("dpmpp2m", 10, s2, "logsnr") < solve("ddim", 10, s2));  // on time-uniform steps it trails DDIM
  SamplerParams p;
  p.sampler = "dpmpp2m";
  p.steps = 12;
  p.grid = "logsnr";
  CHECK(network_evaluations(p, sched) == static_cast<int64_t>(grid_timesteps(sched, 12, "logsnr").size()));
  p.sampler = "heun";
  CHECK(network_evaluations(p, sched) == 24);
  p.sampler = "dpmpp2m";
  p.grid = "cosine";
  meddiff::test::check_error([&] { p.validate(300); }, {"grid", "logsnr"});
}

TEST_CASE("sampling timesteps and thresholding") {
  auto ts = sampling_timesteps(300, 4);
  CHECK(ts == std::vector<int64_t>{299, 199, 100, 0});
  CHECK(sampling_timesteps(10, 10).size() == 10);
  auto x0 = torch::tensor({{3.0f, -0.5f, 0.2f, 0.1f}});
  CHECK(threshold_x0(x0, true, 0)[0][0].item<float>() == 1.0f);
  auto dyn = threshold_x0(x0, true, 0.75);  // s = 3rd smallest |x| of 4 = 0.5 -> clamp to 1 -> plain clip
  CHECK(dyn[0][0].item<float>() == 1.0f);
  auto big = threshold_x0(torch::tensor({{4.0f, -2.0f, 2.0f, 2.0f}}), true, 0.5);  // s = 2: clamp to [-2, 2], / 2
  CHECK(big[0][0].item<float>() == doctest::Approx(1.0));
  CHECK(big[0][1].item<float>() == doctest::Approx(-1.0));
  // standardised latents span more than [-1, 1]: clipping uses the data's bound
  auto wide = threshold_x0(torch::tensor({{2.5f, -4.0f}}), true, 0, 3.0);
  CHECK(wide[0][0].item<float>() == 2.5f);
  CHECK(wide[0][1].item<float>() == -3.0f);
}

TEST_CASE("objectives: eps / x0 / v targets map back to x0 and eps") {
  auto x0 = torch::randn({2, 3}), eps = torch::randn({2, 3});
  double ab = 0.3;
  auto abt = torch::full({2}, ab);
  auto x_t = q_sample(x0, eps, abt);
  for (auto p : {Prediction::Eps, Prediction::X0, Prediction::V}) {
    auto target = prediction_target(p, x0, eps, abt);
    auto back = split_prediction(p, target, x_t, ab);
    CHECK(torch::allclose(back.x0, x0, 1e-4, 1e-5));
    CHECK(torch::allclose(back.eps, eps, 1e-4, 1e-5));
  }
}

TEST_CASE("U-Net: shapes with anisotropic down-sampling / full and axial attention / class conditioning") {
  torch::manual_seed(0);
  UNetParams p;
  p.base_channels = 8;
  p.channel_mults = {1, 2};
  p.downsample = {{1, 2, 2}};
  p.attention_levels = {0, 1};
  p.attention_heads = 2;
  p.max_full_attention_tokens = 64;  // level 0 (4x8x8 = 256 tokens) uses axial attention
  UNet3d net(p, 3, 2);
  auto x = torch::randn({2, 3, 4, 8, 8});
  auto t = torch::tensor({5, 100}, torch::kLong);
  auto y = net->forward(x, t, torch::tensor({0, 1}, torch::kLong));
  CHECK((y.sizes() == x.sizes()));
  // zero-initialised output layer: the untrained network predicts 0; after a step it depends on the class
  CHECK(y.abs().max().item<float>() == 0.0f);
  torch::optim::Adam opt(net->parameters(), 1e-2);
  for (int i = 0; i < 3; ++i) {
    opt.zero_grad();
    auto out = net->forward(x, t, torch::tensor({0, 1}, torch::kLong));
    (out - x).pow(2).mean().backward();
    opt.step();
  }
  torch::NoGradGuard ng;
  auto a = net->forward(x, t, torch::tensor({0, 0}, torch::kLong)), b = net->forward(x, t, torch::tensor({1, 1}, torch::kLong));
  CHECK((a - b).abs().max().item<float>() > 0);
  auto u = net->forward(x, t, torch::Tensor());  // unconditional branch (null class)
  CHECK((u.sizes() == x.sizes()));
}

TEST_CASE("attention op equals softmax(q k^T / sqrt(d)) v") {
  auto q = torch::randn({2, 3, 10, 4}), k = torch::randn({2, 3, 10, 4}), v = torch::randn({2, 3, 10, 4});
  CHECK(torch::allclose(ops::attention(q, k, v), ops::attention_reference(q, k, v), 1e-4, 1e-5));
}

TEST_CASE("each sampler's default step count (sample.steps = 0)") {
  CHECK(default_steps("ddpm", 300) == 300);
  CHECK(default_steps("ddim", 1000) == 10);
  CHECK(default_steps("ddim", 6) == 6);  // never more than the model's timesteps
  CHECK(default_steps("dpmpp2m", 1000) == 10);
  CHECK(default_steps("euler", 0) == 5);
  CHECK(default_steps("heun", 0) == 5);
  CHECK_THROWS_WITH_AS(default_steps("plms", 1000), doctest::Contains("plms"), Error);
}

// MONAI's RFlowScheduler as MAISI sets it (scripts/make_monai_fixtures.py): the timestep lists, bit for bit, and a
// whole 5-step run of a MAISI U-Net from the same noise (modality class, spacing, guidance 0 and 2 with the
// unconditional pass at class 0), decoded by a MAISI autoencoder after dividing by the scale factor.
TEST_CASE("MONAI's DDIM timesteps: the leading and monai grids and their step targets - MONAI's beta schedules") {
  auto sch = make_monai_schedule("scaled_linear_beta", 1000, 0.0015, 0.0195);
  // MONAI 1.6's DDIMScheduler.set_timesteps(10): round(linspace(999, 0, 10)); its step goes to t - 1000 // 10
  const std::vector<int64_t> monai{999, 888, 777, 666, 555, 444, 333, 222, 111, 0};
  CHECK(grid_timesteps(sch, 10, "monai") == monai);
  const std::vector<int64_t> monai_to{899, 788, 677, 566, 455, 344, 233, 122, 11, -1};
  CHECK(step_targets(monai, 1000, 10, "monai") == monai_to);
  // MONAI Generative's: k * (1000 // 10) from 900 down, each step to the next
  const std::vector<int64_t> leading{900, 800, 700, 600, 500, 400, 300, 200, 100, 0};
  CHECK(grid_timesteps(sch, 10, "leading") == leading);
  CHECK(step_targets(leading, 1000, 10, "leading") == std::vector<int64_t>{800, 700, 600, 500, 400, 300, 200, 100, 0, -1});
  // sqrt(beta) linear from sqrt(0.0015) to sqrt(0.0195) (float32)
  CHECK(sch.betas[0].item<double>() == doctest::Approx(0.0015).epsilon(1e-6));
  CHECK(sch.betas[999].item<double>() == doctest::Approx(0.0195).epsilon(1e-6));
  const double mid = std::pow((std::sqrt(0.0015) + std::sqrt(0.0195)) / 2, 2);
  CHECK((sch.betas[499].item<double>() + sch.betas[500].item<double>()) / 2 == doctest::Approx(mid).epsilon(1e-4));
  CHECK(sch.alpha_bar(1) == doctest::Approx((1 - sch.betas[0].item<double>()) * (1 - sch.betas[1].item<double>())).epsilon(1e-6));
  auto lin = make_monai_schedule("linear", 1000, 0.0001, 0.02);
  CHECK(lin.betas[999].item<double>() == doctest::Approx(0.02).epsilon(1e-6));
  test::check_error([] { make_monai_schedule("cosine", 1000, 0.0015, 0.0195); }, {"cosine", "scaled_linear_beta"});
}

TEST_CASE("MAISI rectified-flow training: the timestep transform of sampling (MONAI's lists) - the noisy latent interpolates data and noise") {
  MaisiRFlowParams p;
  auto lists = nlohmann::json::parse(read_text(test::fixture("monai/rflow_timesteps.json")));
  for (const auto& l : lists) {  // u = 1 - i/N gives sampling's t_i: the lists MONAI wrote, before their fp16 rounding
    auto shape = l.at("shape").get<std::vector<int64_t>>();
    const auto n = l.at("steps").get<int64_t>();
    auto u = 1.0 - torch::arange(n, torch::kDouble) / static_cast<double>(n);
    auto t = maisi_rflow_train_timesteps(p, u, shape[0] * shape[1] * shape[2]);
    auto want = torch::tensor(l.at("timesteps").get<std::vector<float>>());
    CHECK(torch::equal(t.to(torch::kHalf).to(torch::kFloat), want));
  }
  // without the transform t = u T; the transform of a 64^3 latent (r = 2): 2s / (1 + s) T
  MaisiRFlowParams plain = p;
  plain.timestep_transform = false;
  auto u = torch::tensor({0.0, 0.25, 0.5, 0.999});
  CHECK(torch::allclose(maisi_rflow_train_timesteps(plain, u, 512), torch::tensor({0.0f, 250.0f, 500.0f, 999.0f})));
  CHECK(torch::allclose(maisi_rflow_train_timesteps(p, u, 64 * 64 * 64), torch::tensor({0.0f, 400.0f, 2000.0f / 3.0f, 1998.0f / 1.999f}), 1e-6, 1e-3));
  plain.discrete = true;
  CHECK(torch::equal(maisi_rflow_train_timesteps(plain, torch::tensor({0.2507, 0.9999}), 512), torch::tensor({250.0f, 999.0f})));
  // (1 - t/T) x0 + (t/T) noise per sample
  auto x0 = torch::randn({3, 2, 2, 2, 2}), noise = torch::randn({3, 2, 2, 2, 2});
  auto xt = maisi_rflow_add_noise(p, x0, noise, torch::tensor({0.0f, 250.0f, 1000.0f}));
  CHECK(torch::allclose(xt[0], x0[0]));
  CHECK(torch::allclose(xt[1], 0.75 * x0[1] + 0.25 * noise[1]));
  CHECK(torch::allclose(xt[2], noise[2]));
}

TEST_CASE("MAISI rectified flow: timesteps identical to MONAI's and a 5-step run equal to MONAI's loop") {
  MaisiRFlowParams p;
  auto lists = nlohmann::json::parse(read_text(test::fixture("monai/rflow_timesteps.json")));
  for (const auto& l : lists) {
    auto shape = l.at("shape").get<std::vector<int64_t>>();
    CAPTURE(l.at("shape").dump());
    auto ours = maisi_rflow_timesteps(p, l.at("steps").get<int64_t>(), shape[0] * shape[1] * shape[2]);
    CHECK(ours == l.at("timesteps").get<std::vector<float>>());
  }
  CHECK_THROWS_WITH_AS(maisi_rflow_timesteps(p, 0, 512), "rectified flow: 0 steps; it takes 1 to 1000", Error);

  auto nets = nlohmann::json::parse(read_text(test::fixture("monai/networks.json")));
  MonaiUNet unet(monai_unet_from_json(nets.at("unet_maisi"), nets, "unet_maisi"));
  load_state_dict(*unet, read_state_dict(test::fixture("monai/unet_maisi.pt"), "unet_state_dict"), "unet");
  auto kl = kl_from_monai(nets.at("autoencoder_maisi"), nets, "autoencoder_maisi");
  kl.params.upsample = "trilinear";
  AutoencoderKL ae(kl.params, kl.in_channels);
  load_state_dict(*ae, read_state_dict(test::fixture("monai/autoencoder_maisi.pt")), "autoencoder", maisi_autoencoder_key);
  unet->eval();
  ae->eval();
  auto io = read_state_dict(test::fixture("monai/rflow_maisi.pt"));
  const auto noise = io.at("noise");
  const float scale_factor = io.at("scale_factor").item<float>();
  torch::NoGradGuard ng;
  for (double guidance : {0.0, 2.0}) {
    CAPTURE(guidance);
    MonaiUNetInputs in;
    in.spacing = io.at("spacing");
    in.class_labels = torch::tensor({int64_t{1}});
    auto velocity = [&](const torch::Tensor& x, const torch::Tensor& t) {
      auto v = unet->forward(x, t, in);
      if (guidance == 0) return v;
      MonaiUNetInputs un = in;
      un.class_labels = torch::zeros_like(in.class_labels);
      auto u = unet->forward(x, t, un);
      return u + guidance * (v - u);
    };
    auto steps = maisi_rflow_timesteps(p, 5, noise.size(2) * noise.size(3) * noise.size(4));
    auto latent = maisi_rflow_sample(p, noise.clone(), steps, velocity);
    auto image = ae->decode(latent / scale_factor);
    const std::string key = guidance == 0 ? "plain" : "cfg";
    for (auto [ours, theirs, what] : {std::tuple{latent, io.at("latent_" + key), std::string("latent")}, std::tuple{image, io.at("image_" + key), std::string("image")}}) {
      CAPTURE(what);
      REQUIRE(ours.sizes() == theirs.sizes());
      double range = (theirs.max() - theirs.min()).item<double>();
      double diff = (ours - theirs).abs().max().item<double>();
      MESSAGE(key << " " << what << ": max |meddiff - MONAI| " << diff << " over a range of " << range);
      CHECK(diff <= 1e-3 * range);
    }
  }
}
