// meddiff bench: latency, memory and counted FLOP rate of the networks at each config's size, seconds
// per volume for each sampler, and a sweep over latent sizes.
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/demo_config.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/log.h"
#include "core/output_policy.h"
#include "core/threads.h"
#include "core/version.h"
#include "data/plot.h"
#include "data/preview.h"
#include "diffusion/samplers.h"
#include "io/png.h"
#include "models/autoencoder_kl.h"
#include "models/monai_controlnet.h"
#include "models/monai_unet.h"
#include "models/unet3d.h"
#include "models/vqgan.h"
#include "pipeline/autoencoder.h"
#include "pipeline/bench.h"
#include "train/stage1_model.h"
#include "pipeline/kl_out_of_core.h"
#include "pipeline/device.h"

#include <iostream>
#include <set>

namespace meddiff::cli {
namespace {
namespace fs = std::filesystem;

nlohmann::json to_json(const Measured& m) {
  nlohmann::json j = {{"median_s", m.median_s}, {"min_s", m.min_s}, {"repeats", m.repeats}, {"peak_mib", m.peak_mib}};
  if (m.gflop > 0) j.update({{"gflop", m.gflop}, {"gflops_per_s", m.gflops_per_s()}});
  return j;
}

int64_t parameter_count(torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  return n;
}

struct Bench {
  torch::Device device;
  int64_t repeats;
  std::vector<int64_t> sizes;
  std::set<std::string> parts;  // unet, train, vqgan, samplers, sweep
  bool has(const char* p) const { return parts.count(p) > 0; }
  std::set<std::string> network_parts{"unet", "decode", "controlnet"};  // --network: unet, decode, controlnet
  int64_t max_memory = 0;                                // --network decode budget (bytes); 0: whole
};

nlohmann::json bench_config(const std::string& name, const RunConfig& cfg, const Bench& b) {
  const auto latent = cfg.latent_shape(cfg.data.shape, "data.shape");
  const int64_t E = latent[0];
  const int64_t classes = cfg.ldm.unet.conditional ? 2 : 0;
  const int64_t cond_ch = cfg.data.label_conditioned() ? std::max<int64_t>(2, static_cast<int64_t>(cfg.data.label_names.size())) : 0;
  const bool flow = cfg.ldm.rflow();
  nlohmann::json j = {{"config", name}, {"data_shape", cfg.data.shape}, {"latent_shape", latent}};
  log_info("bench {}: latent {}x{}x{}x{}", name, E, latent[1], latent[2], latent[3]);

  torch::manual_seed(0);
  UNet3d net(cfg.ldm.unet, E, classes, cond_ch);
  net->to(b.device);
  j["unet_parameters"] = parameter_count(*net);
  auto inputs = [&](int64_t batch, std::array<int64_t, 3> sp) {
    auto opt = torch::TensorOptions().device(b.device);
    auto x = torch::randn({batch, E, sp[0], sp[1], sp[2]}, opt);
    auto t = flow ? torch::full({batch}, 500.0, opt.dtype(torch::kFloat)) : torch::full({batch}, cfg.ldm.timesteps / 2, opt.dtype(torch::kLong));
    auto c = classes > 0 ? torch::zeros({batch}, opt.dtype(torch::kLong)) : torch::Tensor();
    auto cond = cond_ch > 0 ? torch::softmax(torch::randn({batch, cond_ch, sp[0], sp[1], sp[2]}, opt), 1) : torch::Tensor();
    return std::make_tuple(x, t, c, cond);
  };
  const std::array<int64_t, 3> lsp{latent[1], latent[2], latent[3]};
  net->eval();
  Measured fwd;
  {
    auto [x, t, c, cond] = inputs(1, lsp);
    fwd = measure([&] { torch::NoGradGuard ng; net->forward(x, t, c, cond); }, b.device, b.repeats, true);
  }
  j["unet_forward"] = to_json(fwd);
  if (b.has("train")) {
    net->train();
    const int64_t batch = cfg.ldm_train.batch_size;
    auto [x, t, c, cond] = inputs(batch, lsp);
    torch::optim::AdamW opt(net->parameters(), torch::optim::AdamWOptions(1e-6));
    auto step = measure([&] {
      opt.zero_grad();
      torch::mse_loss(net->forward(x, t, c, cond), x).backward();
      opt.step();
    }, b.device, std::max<int64_t>(1, b.repeats / 2), true);
    j["unet_train_step"] = to_json(step);
    j["unet_train_step"]["batch"] = batch;
    net->eval();
  }
  Measured dec;
  if (b.has("vqgan") || b.has("samplers")) {
  auto stage1 = make_stage1_model(cfg, cfg.data.image_channels());  // the config's autoencoder kind, random weights
  stage1->module().to(b.device);
  stage1->module().eval();
  auto ae = stage1->inference();
  j["autoencoder_kind"] = cfg.autoencoder.kind;
  j["vqgan_parameters"] = parameter_count(stage1->module());
  AutoencoderRun run;
  run.budget_bytes = memory_budget_bytes(cfg.sample.max_memory_gib, b.device);
  auto vol = torch::rand({1, cfg.data.image_channels(), cfg.data.shape[0], cfg.data.shape[1], cfg.data.shape[2]}, torch::TensorOptions().device(b.device)) * 2 - 1;
  torch::Tensor z;
  auto enc = measure([&] { torch::NoGradGuard ng; z = ae->encode(vol, run); }, b.device, b.repeats, true);
  dec = measure([&] { torch::NoGradGuard ng; ae->decode(z, run); }, b.device, b.repeats, true);
  j["vqgan_encode"] = to_json(enc);
  j["vqgan_decode"] = to_json(dec);
  if (auto* vq = dynamic_cast<VQGANAutoencoder*>(ae.get())) {
    // the decoder's blocks alone, from latents already on codebook entries (decode = code search + these)
    torch::Tensor q;
    {
      torch::NoGradGuard ng;
      q = vq->model->quantizer->lookup(vq->model->quantizer->quantize_codes(z));
    }
    auto blocks = measure([&] { torch::NoGradGuard ng; vq->model->decoder->forward(q); }, b.device, b.repeats, true);
    j["vqgan_decoder_blocks"] = to_json(blocks);
  }
  }

  // Seconds per volume: evaluations x (2 with guidance) x the forward's median, plus one decode.
  const bool guided = classes > 0 && cfg.sample.guidance != 1.0;
  std::vector<std::string> samplers = flow ? std::vector<std::string>{"euler", "heun"} : std::vector<std::string>{"ddpm", "ddim", "dpmpp2m"};
  std::vector<int64_t> steps_list{10, 25, 50};
  if (!flow) steps_list.push_back(cfg.ldm.timesteps);
  // x2 with guidance: the two branches run as two batch-1 forwards, as `meddiff sample` runs them
  const auto schedule = make_schedule(cfg.ldm.schedule, cfg.ldm.timesteps, cfg.ldm.cosine_s);
  nlohmann::json table = nlohmann::json::array();
  for (const auto& s : samplers)
    for (int64_t steps : steps_list) {
      if (!b.has("samplers")) break;
      if (!flow && steps > cfg.ldm.timesteps) continue;
      if (s == "ddpm" && steps != cfg.ldm.timesteps && steps != 50) continue;
      SamplerParams sp;
      sp.sampler = s;
      sp.steps = steps;
      sp.grid = flow ? "uniform" : cfg.sample.grid;
      const int64_t ev = network_evaluations(sp, schedule) * (guided ? 2 : 1);
      table.push_back({{"sampler", s}, {"steps", steps}, {"network_evaluations", ev},
                       {"seconds_per_volume", static_cast<double>(ev) * fwd.median_s + dec.median_s}});
    }
  j["samplers"] = table;
  j["samplers_note"] = fmt::format("network evaluations (x2 with guidance {}) x the U-Net forward's median + one decode",
                                   cfg.sample.guidance);

  // Sweep: the U-Net at cubic latents of each size its down-sampling divides.
  std::array<int64_t, 3> factor{1, 1, 1};
  for (const auto& d : cfg.ldm.unet.downsample)
    for (size_t a = 0; a < 3; ++a) factor[a] *= d[a];
  nlohmann::json sweep = nlohmann::json::array();
  for (int64_t s : b.sizes) {
    if (!b.has("sweep")) break;
    if (s % factor[0] || s % factor[1] || s % factor[2]) continue;
    auto [x, t, c, cond] = inputs(1, {s, s, s});
    auto m = measure([&] { torch::NoGradGuard ng; net->forward(x, t, c, cond); }, b.device, std::max<int64_t>(1, b.repeats / 2));
    sweep.push_back({{"latent", {E, s, s, s}}, {"voxels", s * s * s}, {"median_s", m.median_s}, {"peak_mib", m.peak_mib}});
    log_info("bench {}: U-Net forward at {}^3: {:.3f} s, {:.0f} MiB", name, s, m.median_s, m.peak_mib);
  }
  j["sweep"] = sweep;
  return j;
}

// A network config of MONAI / MAISI (NV-Generate-CTMR's config_network_rflow.json, a bundle's inference config):
// its diffusion U-Net ("diffusion_unet_def") forward and its KL autoencoder ("autoencoder_def") decode of that
// latent, with random weights, at batch 1.
nlohmann::json bench_network(const fs::path& file, const std::array<int64_t, 3>& latent, const Bench& b) {
  const nlohmann::json root = load_json_file(file.string());
  if (!root.contains("diffusion_unet_def") && !root.contains("autoencoder_def"))
    fail("{}: has neither 'diffusion_unet_def' nor 'autoencoder_def'", file.string());
  nlohmann::json j = {{"network", file.filename().string()}, {"latent_spatial", latent}};
  torch::manual_seed(0);
  torch::NoGradGuard ng;
  auto opt = torch::TensorOptions().device(b.device);
  if (root.contains("diffusion_unet_def") && b.network_parts.count("unet")) {
    auto p = monai_unet_from_json(root["diffusion_unet_def"], root, file.string() + ": diffusion_unet_def");
    for (auto s : latent)
      if (s % p.downsample()) fail("--network-latent: {} is not a multiple of the U-Net's downsampling {}", s, p.downsample());
    MonaiUNet net(p);
    net->to(b.device);
    net->eval();
    auto x = torch::randn({1, p.in_channels, latent[0], latent[1], latent[2]}, opt);
    auto t = torch::full({1}, 500.0, opt.dtype(torch::kFloat));
    MonaiUNetInputs in;
    if (p.num_class_embeds > 0) in.class_labels = torch::ones({1}, opt.dtype(torch::kLong));
    if (p.spacing_input) in.spacing = torch::full({1, 3}, 150.0, opt);
    if (p.top_region_input) in.top_region = torch::tensor({{0.0, 1.0, 0.0, 0.0}}, opt);
    if (p.bottom_region_input) in.bottom_region = torch::tensor({{0.0, 0.0, 1.0, 0.0}}, opt);
    j["unet_parameters"] = parameter_count(*net);
    j["unet_forward"] = to_json(measure([&] { net->forward(x, t, in); }, b.device, b.repeats, true));
    log_info("bench {}: U-Net forward {:.3f} s", file.string(), j["unet_forward"]["median_s"].get<double>());
  }
  if (root.contains("controlnet_def") && b.network_parts.count("controlnet")) {
    // MAISI's ControlNet: a label map at the image grid (latent x its downsampling) embedded once, then residuals per step
    auto p = monai_controlnet_from_json(root["controlnet_def"], root, file.string() + ": controlnet_def");
    for (auto s : latent)
      if (s % p.unet.downsample()) fail("--network-latent: {} is not a multiple of the ControlNet's downsampling {}", s, p.unet.downsample());
    MonaiControlNet net(p);
    net->to(b.device);
    net->eval();
    const int64_t f = p.cond_downsample();
    auto label = torch::randint(0, int64_t{1} << p.cond_in_channels, {latent[0] * f, latent[1] * f, latent[2] * f}, torch::kLong);
    torch::Tensor e;
    j["controlnet_parameters"] = parameter_count(*net);
    j["controlnet_embed_label"] = to_json(measure_once([&] { e = net->embed_label(label); }, b.device));
    auto x = torch::randn({1, p.unet.in_channels, latent[0], latent[1], latent[2]}, opt);
    auto t = torch::full({1}, 500.0, opt.dtype(torch::kFloat));
    auto cls = p.unet.num_class_embeds > 0 ? torch::ones({1}, opt.dtype(torch::kLong)) : torch::Tensor();
    j["controlnet_residuals"] = to_json(measure([&] { net->residuals(x, t, e, cls); }, b.device, b.repeats, true));
    log_info("bench {}: ControlNet label embedding {:.3f} s, residuals {:.3f} s", file.string(),
             j["controlnet_embed_label"]["median_s"].get<double>(), j["controlnet_residuals"]["median_s"].get<double>());
  }
  if (root.contains("autoencoder_def") && b.network_parts.count("decode")) {
    auto m = kl_from_monai(root["autoencoder_def"], root, file.string() + ": autoencoder_def");
    AutoencoderKL ae(m.params, m.in_channels);
    ae->to(b.device);
    ae->eval();
    auto z = torch::randn({1, m.params.latent_channels, latent[0], latent[1], latent[2]}, opt);
    j["autoencoder_parameters"] = parameter_count(*ae);
    // within --max-memory when given (block by block if the whole decoder would not fit), else whole
    // (one cold run then: at clinical sizes a decode takes minutes on a CPU)
    j["autoencoder_decode"] = to_json(b.max_memory > 0 ? measure_once([&] { decode_within(ae, z, b.max_memory); }, b.device)
                                                       : measure([&] { ae->decode(z); }, b.device, b.repeats, true));
    j["autoencoder_output"] = {latent[0] * m.params.downsample(), latent[1] * m.params.downsample(), latent[2] * m.params.downsample()};
    if (b.max_memory > 0) j["max_memory_gib"] = static_cast<double>(b.max_memory) / (int64_t{1} << 30);
    log_info("bench {}: decode {:.3f} s", file.string(), j["autoencoder_decode"]["median_s"].get<double>());
  }
  return j;
}

std::string table_text(const nlohmann::json& all) {
  std::string s = fmt::format("meddiff bench on {} ({} threads), LibTorch {}\n", all["device"].get<std::string>(),
                              all["threads"].get<int64_t>(), all["torch"].get<std::string>());
  for (const auto& c : all["configs"]) {
    auto row = [&](const char* what, const nlohmann::json& m) {
      return fmt::format("  {:<22} {:>9.4f} s  {:>8.0f} MiB{}\n", what, m["median_s"].get<double>(), m["peak_mib"].get<double>(),
                         m.contains("gflops_per_s") ? fmt::format("  {:>7.1f} GFLOP/s", m["gflops_per_s"].get<double>()) : "");
    };
    s += fmt::format("\n{}: latent {}, U-Net {:.2f} M parameters{}\n", c["config"].get<std::string>(),
                     fmt::join(c["latent_shape"].get<std::vector<int64_t>>(), "x"), c["unet_parameters"].get<double>() / 1e6,
                     c.contains("vqgan_parameters") ? fmt::format(", VQ-GAN {:.2f} M", c["vqgan_parameters"].get<double>() / 1e6) : "");
    s += row("U-Net forward", c["unet_forward"]);
    if (c.contains("unet_train_step"))
      s += row(fmt::format("U-Net train step (b{})", c["unet_train_step"]["batch"].get<int64_t>()).c_str(), c["unet_train_step"]);
    if (c.contains("vqgan_encode")) {
      const std::string ae = c.value("autoencoder_kind", "vqgan") == "kl" ? "KL autoencoder" : "VQ-GAN";
      s += row((ae + " encode").c_str(), c["vqgan_encode"]);
      s += row((ae + " decode").c_str(), c["vqgan_decode"]);
      if (c.contains("vqgan_decoder_blocks")) s += row("  of which decoder", c["vqgan_decoder_blocks"]);
    }
    if (!c["samplers"].empty()) s += "  sampler  steps  evaluations  s/volume\n";
    for (const auto& t : c["samplers"])
      s += fmt::format("  {:<8} {:>5} {:>12} {:>9.2f}\n", t["sampler"].get<std::string>(), t["steps"].get<int64_t>(),
                       t["network_evaluations"].get<int64_t>(), t["seconds_per_volume"].get<double>());
    for (const auto& w : c["sweep"])
      s += fmt::format("  sweep {:>3}^3 latent: {:>8.4f} s  {:>8.0f} MiB\n", w["latent"][1].get<int64_t>(), w["median_s"].get<double>(),
                       w["peak_mib"].get<double>());
  }
  for (const auto& n : all.value("networks", nlohmann::json::array())) {
    s += fmt::format("\n{}: latent {} (random weights)\n", n["network"].get<std::string>(),
                     fmt::join(n["latent_spatial"].get<std::vector<int64_t>>(), "x"));
    auto row = [&](const char* what, const nlohmann::json& m, double params) {
      return fmt::format("  {:<22} {:>9.4f} s  {:>8.0f} MiB  {:>7.2f} M parameters\n", what, m["median_s"].get<double>(),
                         m["peak_mib"].get<double>(), params / 1e6);
    };
    if (n.contains("unet_forward")) s += row("U-Net forward", n["unet_forward"], n["unet_parameters"].get<double>());
    if (n.contains("controlnet_residuals")) {
      s += row("ControlNet label embed", n["controlnet_embed_label"], n["controlnet_parameters"].get<double>());
      s += row("ControlNet residuals", n["controlnet_residuals"], n["controlnet_parameters"].get<double>());
    }
    if (n.contains("autoencoder_decode")) s += row("autoencoder decode", n["autoencoder_decode"], n["autoencoder_parameters"].get<double>());
  }
  return s;
}

}  // namespace

int run_bench(const Args_t& args) {
  Args a("bench",
         "Measure the U-Net (forward, training step), the VQ-GAN (encode, decode), seconds per volume for each sampler "
         "and step count, and the U-Net over a sweep of latent sizes: median time, peak memory and counted GFLOP/s, at each "
         "config's size (default: the MR demo's config).");
  a.add()("config", "Config files (comma-separated); default: the built-in MR demo config", cxxopts::value<std::string>()->default_value(""))
      ("device", "auto, cpu, cuda, cuda:N", cxxopts::value<std::string>()->default_value("auto"))
      ("repeat", "Timed repetitions after one warm-up (median reported)", cxxopts::value<int64_t>()->default_value("5"))
      ("sizes", "Cubic latent sizes of the sweep (comma-separated; none: '')", cxxopts::value<std::string>()->default_value("16,32,48,64"))
      ("parts", "What to measure (comma-separated): unet, train, vqgan, samplers, sweep", cxxopts::value<std::string>()->default_value("unet,train,vqgan,samplers,sweep"))
      ("out", "Folder for bench.json and bench.png (default: the table on stdout only)", cxxopts::value<std::string>())
      ("network", "A MONAI / MAISI network config (e.g. NV-Generate-CTMR's config_network_rflow.json): time its diffusion U-Net "
                  "forward and autoencoder decode with random weights instead of the configs'", cxxopts::value<std::string>())
      ("network-latent", "Latent size X,Y,Z of --network", cxxopts::value<std::string>()->default_value("16,16,16"))
      ("network-parts", "What of --network to time (comma-separated): unet, decode, controlnet (its label embedding, once per "
       "volume, and its residuals, every step)", cxxopts::value<std::string>()->default_value("unet,decode,controlnet"))
      ("max-memory", "--network: decode within this many GiB (block by block when the whole decoder would not fit; one "
                     "cold run, timed; default: whole, repeated)", cxxopts::value<double>())
      ("json", "Print the JSON on stdout instead of the table")
      ("force", "Replace an earlier bench in --out");
  auto r = a.parse(args);
  Bench b{choose_device(r["device"].as<std::string>()), r["repeat"].as<int64_t>(), {}, {}};
  b.network_parts.clear();
  for (const auto& p : split_commas(r["network-parts"].as<std::string>())) {
    if (p != "unet" && p != "decode" && p != "controlnet") usage_fail("--network-parts: unknown part '{}' (unet, decode, controlnet)", p);
    b.network_parts.insert(p);
  }
  if (r.count("max-memory")) {
    const double g = r["max-memory"].as<double>();
    if (!(g > 0 && g < 4096)) usage_fail("--max-memory must be a positive number of GiB (got {})", g);
    b.max_memory = static_cast<int64_t>(g * static_cast<double>(int64_t{1} << 30));
  }
  if (b.repeats < 1 || b.repeats > 1000) usage_fail("--repeat must be within 1..1000 (got {})", b.repeats);
  for (const auto& p : split_commas(r["parts"].as<std::string>())) {
    if (p != "unet" && p != "train" && p != "vqgan" && p != "samplers" && p != "sweep")
      usage_fail("--parts: unknown part '{}' (unet, train, vqgan, samplers, sweep)", p);
    b.parts.insert(p);
  }
  for (const auto& s : split_commas(r["sizes"].as<std::string>())) {
    if (s.empty()) continue;
    try {
      size_t pos = 0;
      int64_t v = std::stoll(s, &pos);
      if (pos != s.size() || v < 4 || v > 512) throw std::invalid_argument(s);
      b.sizes.push_back(v);
    } catch (const std::exception&) {
      usage_fail("--sizes: '{}' is not a size within 4..512", s);
    }
  }
  std::optional<fs::path> out;
  if (r.count("out")) {
    out = r["out"].as<std::string>();
    OutputRules rules;
    rules.force = r.count("force") > 0;
    rules.folder = true;
    rules.owned_what = "a bench written by meddiff";
    rules.foreign_entry = [](const fs::path& d) -> std::string {
      for (const auto& e : fs::directory_iterator(d)) {
        auto n = e.path().filename().string();
        if (n != "bench.json" && n != "bench.png" && n.rfind(".meddiff", 0) != 0) return "'" + n + "'";
      }
      return "";
    };
    for (const auto& c : split_commas(r["config"].as<std::string>()))
      if (!c.empty()) rules.inputs.push_back(c);
    if (r.count("network")) rules.inputs.push_back(r["network"].as<std::string>());
    check_output(*out, rules);
  }
  std::vector<std::pair<std::string, RunConfig>> configs;
  for (const auto& c : split_commas(r["config"].as<std::string>()))
    if (!c.empty()) configs.emplace_back(fs::path(c).stem().string(), resolve_config(c, {}));
  std::array<int64_t, 3> network_latent{};
  if (r.count("network")) {
    auto v = split_commas(r["network-latent"].as<std::string>());
    if (v.size() != 3) usage_fail("--network-latent: give X,Y,Z (got '{}')", r["network-latent"].as<std::string>());
    for (size_t i = 0; i < 3; ++i) {
      try {
        size_t pos = 0;
        network_latent[i] = std::stoll(v[i], &pos);
        if (pos != v[i].size() || network_latent[i] < 1 || network_latent[i] > 512) throw std::invalid_argument(v[i]);
      } catch (const std::exception&) {
        usage_fail("--network-latent: '{}' is not a size within 1..512", v[i]);
      }
    }
  }
  if (configs.empty() && !r.count("network")) configs.emplace_back("demo-mr (built-in)", demo_config(Modality::MR, false));

  nlohmann::json all = {{"meddiff", version() + "+" + git_hash()}, {"torch", torch_version()}, {"device", b.device.str()},
                        {"threads", static_cast<int64_t>(torch::get_num_threads())}, {"repeats", b.repeats},
                        {"note", "median of the repeats after one warm-up; peak memory: process RSS (CPU) or the CUDA allocator; "
                                 "GFLOP/s from the FLOPs LibTorch's profiler counts (convolutions, matrix products)"}};
  all["configs"] = nlohmann::json::array();
  for (const auto& [name, cfg] : configs) all["configs"].push_back(bench_config(name, cfg, b));
  if (r.count("network")) all["networks"] = nlohmann::json::array({bench_network(r["network"].as<std::string>(), network_latent, b)});

  if (r.count("json")) std::cout << all.dump(2) << "\n";
  else std::cout << table_text(all);
  if (out) {
    fs::create_directories(*out);
    // time (white) and memory (grey) of the U-Net sweep against the latent size, per config, side by side
    std::vector<torch::Tensor> panels;
    for (const auto& c : all["configs"]) {
      std::vector<double> x, t, m;
      for (const auto& w : c["sweep"]) {
        x.push_back(w["voxels"].get<double>());
        t.push_back(w["median_s"].get<double>());
        m.push_back(w["peak_mib"].get<double>());
      }
      if (x.size() >= 2) panels.push_back(line_plot(x, {t, m}));
    }
    if (!panels.empty())
      io::write_png(hconcat(panels, 8), *out / "bench.png",
                    {{"Description", "meddiff bench: U-Net forward time (white) and peak memory (grey) against latent voxels, "
                                     "each scaled to its maximum, one panel per config (see bench.json for the numbers)"}});
    write_text_atomically(*out / "bench.json", all.dump(2) + "\n");
  }
  return 0;
}

}  // namespace meddiff::cli
