// meddiff reconstruct: encode and decode a volume through a trained VQ-GAN or KL autoencoder.
#include "cli/args.h"
#include "cli/autoencoder_option.h"
#include "cli/commands.h"
#include "core/error.h"
#include "core/log.h"
#include "data/intensity.h"
#include "data/metrics.h"
#include "data/ras_axes.h"
#include "data/spatial.h"
#include "io/volume_reader.h"
#include "io/volume_writer.h"
#include "pipeline/device.h"
#include "pipeline/autoencoder.h"
#include "pipeline/loaded_models.h"

#include <cmath>
#include <iostream>

namespace meddiff::cli {

int run_reconstruct(const Args_t& args) {
  Args a("reconstruct",
         "Pass a volume through a trained VQ-GAN or KL autoencoder and write the reconstruction with the input's geometry; prints PSNR and "
         "SSIM (on the [-1,1] intensity scale of the training config).",
         "--vqgan CKPT IN OUT  (a multi-channel VQ-GAN: IN and OUT list one file per channel, comma-separated, e.g. "
         "t1.nii.gz,t1ce.nii.gz,t2.nii.gz,flair.nii.gz)");
  a.add()("vqgan", "VQ-GAN or KL autoencoder checkpoint (train-vqgan's last.pt, or meddiff import's autoencoder.pt with --modality)",
          cxxopts::value<std::string>())
      ("input", "Volume file or DICOM folder", cxxopts::value<std::string>())
      ("output", "Reconstruction (file or DICOM folder)", cxxopts::value<std::string>())
      ("device", "auto, cpu, cuda", cxxopts::value<std::string>()->default_value("auto"))
      ("series", "DICOM Series Instance UID", cxxopts::value<std::string>()->default_value(""))
      ("label", "The input's label map (same grid), for a VQ-GAN whose decoder follows label maps (vqgan.decoder_labels): "
                "the reconstruction then keeps the map's edges, as synthetic pairs do",
       cxxopts::value<std::string>())
      ("modality", kAutoencoderModalityHelp, cxxopts::value<std::string>())
      ("max-memory", "Memory budget of the autoencoder in GiB (default: sample.max_memory_gib of the checkpoint, else "
                     "automatic: min(6 GiB, 40 % of RAM) on the CPU, min(16 GiB, half the GPU)); larger volumes run in slabs",
       cxxopts::value<double>())
      ("force", "Replace an existing output (a DICOM folder only if meddiff wrote it)");
  a.positional({"input", "output"});
  auto r = a.parse(args);
  std::string ckpt = required(r, "vqgan"), in = required(r, "input"), out = required(r, "output");
  const bool force = r.count("force") > 0;
  torch::Device device = choose_device(r["device"].as<std::string>());
  LoadedAutoencoder vq = load_autoencoder_option(ckpt, r.count("modality") ? r["modality"].as<std::string>() : "", device);
  const auto& dp = vq.data;
  double gib = r.count("max-memory") ? r["max-memory"].as<double>() : vq.sample.max_memory_gib;
  if (!(gib >= 0)) usage_fail("--max-memory must be a positive number of GiB (got {})", gib);
  AutoencoderRun run;
  run.budget_bytes = memory_budget_bytes(gib, device);
  io::ReadOptions ro;
  ro.modality = dp.modality_enum();
  ro.series_uid = r["series"].as<std::string>();
  // A multi-channel VQ-GAN takes one input and one output per channel, comma-separated, in its channel order.
  const auto ins = split_commas(in), outs = split_commas(out);
  const auto C = static_cast<size_t>(dp.image_channels());
  if (ins.size() != C || outs.size() != C)
    usage_fail("the VQ-GAN {} takes {} channel(s){}: give as many comma-separated inputs and outputs (got {} and {})", ckpt, C,
               dp.channels.empty() ? std::string() : fmt::format(" ({})", fmt::join(dp.channels, ", ")), ins.size(), outs.size());
  std::vector<std::filesystem::path> inputs(ins.begin(), ins.end());
  inputs.push_back(ckpt);
  const std::string label_file = r.count("label") ? r["label"].as<std::string>() : "";
  const int64_t decoder_labels = vq.ae->decoder_labels();
  if (!label_file.empty()) inputs.push_back(label_file);
  if (!label_file.empty() && decoder_labels == 0)
    log_warn("{}: the autoencoder's decoder does not see label maps (vqgan.decoder_labels = 0); --label is ignored", ckpt);
  if (label_file.empty() && decoder_labels > 0)
    log_info("{}: this decoder follows label maps; decoding without one (give --label for the reconstruction a pair would get)", ckpt);
  for (const auto& o : outs) io::check_volume_output(o, inputs, force);
  std::vector<Volume> vs;
  std::vector<IntensityWindow> ws;
  std::vector<torch::Tensor> xs;  // [D, H, W] each, normalised
  Volume label;                   // the --label map as an image, for a label-conditioned decoder
  for (size_t c = 0; c < C; ++c) {
    Volume v = io::read_volume(ins[c], ro);
    if (c == 0 && !label_file.empty() && decoder_labels > 0) {
      label.image = io::read_label_map(label_file, v).to(torch::kFloat);
      check_decoder_labels(label.image.unsqueeze(0), decoder_labels, label_file);
    }
    if (c > 0 && (v.image.sizes() != xs[0].sizes() || !v.geometry.approx_equal(vs[0].geometry, 1e-4)))
      fail("{}: not on the grid of {} (the channels of a volume must be co-registered on one grid)", ins[c], ins[0]);
    for (size_t a2 = 0; a2 < 3; ++a2)
      if (dp.spacing[a2] > 0 && std::abs(v.geometry.spacing[a2] - dp.spacing[a2]) > 0.1 * dp.spacing[a2])
        log_warn("{}: spacing {} mm differs from the training spacing {} mm", ins[c], v.geometry.spacing[a2], dp.spacing[a2]);
    ws.push_back(window_for(v, dp.intensity()));
    xs.push_back(normalise(v.image, ws.back()));
    v.image = torch::Tensor();  // the scanner values are no longer needed
    vs.push_back(std::move(v));
  }
  // An imported network sees MONAI's RAS (x, y, z) arrays; the reconstruction comes back to the input's [D, H, W].
  const RasAxes ras = ras_axes(vs.front().geometry);
  if (vq.network_xyz())
    for (auto& x : xs) x = to_ras_xyz(x, ras);
  const auto& x0 = xs.front();
  // Pad every axis to a multiple of its downsampling factor (at -1), run, crop back.
  std::array<int64_t, 3> padded{};
  for (size_t a2 = 0; a2 < 3; ++a2) {
    int64_t f = vq.ae->downsample()[a2];
    padded[a2] = (x0.size(static_cast<int64_t>(a2)) + f - 1) / f * f;
  }
  torch::Tensor rec;
  {
    std::vector<torch::Tensor> channels;
    for (const auto& x : xs) {
      Volume nv;
      nv.image = x;
      channels.push_back(extract_window(nv, {0, 0, 0}, padded, -1.0).image);
    }
    auto input = torch::stack(channels).unsqueeze(0).to(device);  // [1, C, D', H', W']
    channels.clear();
    const auto f = vq.ae->downsample();
    std::array<int64_t, 3> lat{padded[0] / f[0], padded[1] / f[1], padded[2] / f[2]};
    if (vq.model && decode_splits(vq.model, lat, 1, run, device))
      log_info("{}: {} x {} x {} runs through the autoencoder in slabs (budget {:.1f} GiB)", in, padded[0], padded[1], padded[2],
               static_cast<double>(run.budget_bytes) / (1 << 30));
    auto z = vq.ae->encode(input, run);
    input = torch::Tensor();
    torch::Tensor map;  // [1, D', H', W'], padded with background
    if (label.image.defined()) map = extract_window(label, {0, 0, 0}, padded, 0.0).image.to(torch::kLong).unsqueeze(0);
    rec = vq.ae->decode(z, run, map).clamp(-1, 1).to(torch::kCPU, torch::kFloat)[0];  // [C, D', H', W']
  }
  using torch::indexing::Slice;
  for (size_t c = 0; c < C; ++c) {
    const auto& x = xs[c];
    auto rc = rec[static_cast<int64_t>(c)].index({Slice(0, x.size(0)), Slice(0, x.size(1)), Slice(0, x.size(2))}).contiguous();
    double p = psnr(x, rc), s = ssim3d(x, rc);
    if (vq.network_xyz()) rc = from_ras_xyz(rc, ras);
    Volume outv = vs[c];
    outv.image = denormalise(rc, ws[c], /*round=*/true);
    outv.label.reset();
    io::WriteOptions wo;
    wo.overwrite = force;
    wo.description = fmt::format("meddiff {} reconstruction (step {})", vq.kind(), vq.step);
    wo.dicom.series_description = fmt::format("meddiff {} reconstruction", vq.kind());
    wo.dicom.image_comments = fmt::format("reconstruction by a meddiff {} of a converted volume; patient identity not copied", vq.kind());
    io::write_volume(outv, outs[c], wo);
    std::cout << fmt::format("{}: PSNR {:.2f} dB, SSIM {:.4f} ({} step {}{})\n", ins[c], p, s, vq.kind(), vq.step,
                             C > 1 ? ", channel " + dp.channels[c] : std::string());
  }
  return 0;
}

}  // namespace meddiff::cli
