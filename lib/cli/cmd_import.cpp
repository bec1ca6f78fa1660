// meddiff import maisi|monai-bundle ... --out DIR: models trained elsewhere (MAISI-v2, a MONAI bundle) as meddiff
// checkpoints DIR/autoencoder.pt and DIR/ldm.pt (pipeline/model_import.h).
#include "cli/args.h"
#include "cli/commands.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/log.h"
#include "core/output_policy.h"
#include "pipeline/model_import.h"

#include <fmt/format.h>

#include <iostream>

namespace meddiff::cli {
namespace fs = std::filesystem;

int run_import(const Args_t& args) {
  Args a("import",
         "Import a model trained elsewhere from the files you downloaded: 'maisi' (NV-Generate-CTMR's network config, the "
         "autoencoder and the rectified-flow U-Net of MAISI-v2) or 'monai-bundle' (a MONAI bundle folder such as the model zoo's "
         "brats_mri_generative_diffusion). Writes OUT/autoencoder.pt and OUT/ldm.pt: the weights checked against the network "
         "definition, with the sampling recipe and the source files' SHA-256. No weights are downloaded.",
         "maisi|monai-bundle [BUNDLE_DIR]");
  a.add()("format", "maisi or monai-bundle", cxxopts::value<std::string>())
      ("bundle", "The bundle folder (monai-bundle)", cxxopts::value<std::string>())
      ("network-config", "maisi: NV-Generate-CTMR's configs/config_network_rflow.json", cxxopts::value<std::string>())
      ("autoencoder", "maisi: the autoencoder weights (autoencoder_v1.pt)", cxxopts::value<std::string>())
      ("unet", "maisi: the U-Net file (diff_unet_3d_rflow-ct.pt, diff_unet_3d_rflow-mr.pt, ...)", cxxopts::value<std::string>())
      ("controlnet", "maisi: MAISI's ControlNet (controlnet_3d_rflow-ct.pt), for images generated from your label maps "
       "(sample --labels); written as OUT/controlnet.pt", cxxopts::value<std::string>())
      ("guidance", "maisi: classifier-free guidance of the recipe (NV-Generate-CTMR: rflow-ct 0, rflow-mr 15, rflow-mr-brain 2)",
       cxxopts::value<double>()->default_value("0"))
      ("steps", "maisi: Euler steps of the recipe", cxxopts::value<int64_t>()->default_value("30"))
      ("out", "Folder for autoencoder.pt and ldm.pt", cxxopts::value<std::string>())
      ("force", "Replace an earlier import in --out");
  a.positional({"format", "bundle"});
  auto r = a.parse(args);
  const std::string format = required(r, "format");
  const fs::path out = required(r, "out");
  std::vector<fs::path> inputs;
  ImportedModel m;
  auto check_out = [&] {
    OutputRules rules;
    rules.force = r.count("force") > 0;
    rules.folder = true;
    rules.owned_what = "an import written by meddiff";
    rules.inputs = inputs;
    rules.foreign_entry = [](const fs::path& d) -> std::string {
      for (const auto& e : fs::directory_iterator(d)) {
        auto n = e.path().filename().string();
        if (n != "autoencoder.pt" && n != "ldm.pt" && n != "controlnet.pt" && n.rfind(".meddiff", 0) != 0) return "'" + n + "'";
      }
      return "";
    };
    check_output(out, rules);
  };
  if (format == "maisi") {
    if (r.count("bundle")) usage_fail("maisi takes --network-config, --autoencoder and --unet, not a folder");
    MaisiFiles f{required(r, "network-config"), required(r, "autoencoder"), required(r, "unet"), r["guidance"].as<double>(),
                 r["steps"].as<int64_t>()};
    if (r.count("controlnet")) f.controlnet = r["controlnet"].as<std::string>();
    inputs = {f.network_config, f.autoencoder, f.unet};
    if (!f.controlnet.empty()) inputs.push_back(f.controlnet);
    check_out();
    m = import_maisi(f);
  } else if (format == "monai-bundle") {
    if (r.count("controlnet")) usage_fail("--controlnet is for maisi (a MONAI bundle's networks are its config's)");
    const fs::path dir = required(r, "bundle");
    inputs = {dir};
    check_out();
    m = import_monai_bundle(dir);
  } else {
    usage_fail("unknown format '{}' (maisi, monai-bundle)", format);
  }
  for (const auto& w : m.warnings) log_warn("{}", w);
  fs::create_directories(out);
  save_checkpoint(m.autoencoder, out / "autoencoder.pt");
  save_checkpoint(m.unet, out / "ldm.pt");
  if (m.controlnet) save_checkpoint(*m.controlnet, out / "controlnet.pt");
  else if (fs::exists(out / "controlnet.pt")) fs::remove(out / "controlnet.pt");  // an earlier import's (--force)
  auto params = [](const Checkpoint& c) {
    int64_t n = 0;
    for (const auto& [k, t] : c.tensors) n += t.numel();
    return n;
  };
  std::cout << fmt::format("imported {} ({} family): autoencoder {:.2f} M parameters, U-Net {:.2f} M parameters; recipe {}\n"
                           "wrote {} and {}\n",
                           format, m.unet.config["family"].get<std::string>(), params(m.autoencoder) / 1e6, params(m.unet) / 1e6,
                           m.unet.config["recipe"].dump(), (out / "autoencoder.pt").string(), (out / "ldm.pt").string());
  if (m.controlnet)
    std::cout << fmt::format("ControlNet {:.2f} M parameters: wrote {} (sample --labels MAPS generates an image for each map)\n",
                             params(*m.controlnet) / 1e6, (out / "controlnet.pt").string());
  return 0;
}

}  // namespace meddiff::cli
