// meddiff reconstruct: encode and decode a volume through a trained VQ-GAN.
#include "cli/args.h"
#include "cli/commands.h"
#include "core/error.h"
#include "core/log.h"
#include "data/intensity.h"
#include "data/metrics.h"
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
         "Pass a volume through a trained VQ-GAN and write the reconstruction with the input's geometry; prints PSNR and "
         "SSIM (on the [-1,1] intensity scale of the training config).",
         "--vqgan CKPT IN OUT");
  a.add()("vqgan", "VQ-GAN checkpoint (last.pt)", cxxopts::value<std::string>())
      ("input", "Volume file or DICOM folder", cxxopts::value<std::string>())
      ("output", "Reconstruction (file or DICOM folder)", cxxopts::value<std::string>())
      ("device", "auto, cpu, cuda", cxxopts::value<std::string>()->default_value("auto"))
      ("series", "DICOM Series Instance UID", cxxopts::value<std::string>()->default_value(""))
      ("max-memory", "Memory budget of the autoencoder in GiB (default: sample.max_memory_gib of the checkpoint, else "
                     "automatic: min(6 GiB, 40 % of RAM) on the CPU, min(16 GiB, half the GPU)); larger volumes run in slabs",
       cxxopts::value<double>())
      ("force", "Replace an existing output (a DICOM folder only if meddiff wrote it)");
  a.positional({"input", "output"});
  auto r = a.parse(args);
  std::string ckpt = required(r, "vqgan"), in = required(r, "input"), out = required(r, "output");
  const bool force = r.count("force") > 0;
  io::check_volume_output(out, {in, ckpt}, force);
  torch::Device device = choose_device(r["device"].as<std::string>());
  LoadedVQGAN vq = load_vqgan(ckpt, device);
  const auto& dp = vq.data;
  double gib = r.count("max-memory") ? r["max-memory"].as<double>() : vq.sample.max_memory_gib;
  if (!(gib >= 0)) usage_fail("--max-memory must be a positive number of GiB (got {})", gib);
  AutoencoderRun run;
  run.budget_bytes = memory_budget_bytes(gib, device);
  io::ReadOptions ro;
  ro.modality = dp.modality_enum();
  ro.series_uid = r["series"].as<std::string>();
  Volume v = io::read_volume(in, ro);
  for (size_t a2 = 0; a2 < 3; ++a2)
    if (dp.spacing[a2] > 0 && std::abs(v.geometry.spacing[a2] - dp.spacing[a2]) > 0.1 * dp.spacing[a2])
      log_warn("{}: spacing {} mm differs from the training spacing {} mm", in, v.geometry.spacing[a2], dp.spacing[a2]);
  IntensityWindow w = window_for(v, dp.intensity());
  auto x = normalise(v.image, w);  // [D, H, W]
  v.image = torch::Tensor();       // the scanner values are no longer needed
  // Pad every axis to a multiple of its downsampling factor (at -1), run, crop back.
  std::array<int64_t, 3> padded{};
  for (size_t a2 = 0; a2 < 3; ++a2) {
    int64_t f = vq.vqgan.downsample[a2];
    padded[a2] = (x.size(static_cast<int64_t>(a2)) + f - 1) / f * f;
  }
  Volume nv;
  nv.image = x;
  torch::Tensor rec;
  {
    auto input = extract_window(nv, {0, 0, 0}, padded, -1.0).image.unsqueeze(0).unsqueeze(0).to(device);  // [1, 1, D', H', W']
    std::array<int64_t, 3> lat{padded[0] / vq.vqgan.downsample[0], padded[1] / vq.vqgan.downsample[1], padded[2] / vq.vqgan.downsample[2]};
    if (decode_splits(vq.model, lat, 1, run, device))
      log_info("{}: {} x {} x {} runs through the autoencoder in slabs (budget {:.1f} GiB)", in, padded[0], padded[1], padded[2],
               static_cast<double>(run.budget_bytes) / (1 << 30));
    auto z = encode_volume(vq.model, input, run);
    input = torch::Tensor();
    rec = decode_latent(vq.model, z, run).clamp(-1, 1).to(torch::kCPU, torch::kFloat);
  }
  using torch::indexing::Slice;
  rec = rec[0][0].index({Slice(0, x.size(0)), Slice(0, x.size(1)), Slice(0, x.size(2))}).contiguous();
  double p = psnr(x, rec), s = ssim3d(x, rec);
  Volume outv = v;
  outv.image = denormalise(rec, w, /*round=*/true);
  outv.label.reset();
  io::WriteOptions wo;
  wo.overwrite = force;
  wo.description = fmt::format("meddiff VQ-GAN reconstruction (step {})", vq.step);
  wo.dicom.series_description = "meddiff VQ-GAN reconstruction";
  wo.dicom.image_comments = "reconstruction by a meddiff VQ-GAN of a converted volume; patient identity not copied";
  io::write_volume(outv, out, wo);
  std::cout << fmt::format("{}: PSNR {:.2f} dB, SSIM {:.4f} (VQ-GAN step {})\n", in, p, s, vq.step);
  return 0;
}

}  // namespace meddiff::cli
