#include "train/stage1_init.h"

#include "core/config.h"
#include "core/error.h"
#include "core/log.h"
#include "core/sha256.h"

namespace meddiff {

nlohmann::json Stage1Init::record() const {
  return {{"path", std::filesystem::absolute(path).string()}, {"sha256", sha256}, {"kind", checkpoint.kind}, {"imported", imported}};
}

Stage1Init read_stage1_init(const std::filesystem::path& path, RunConfig& cfg, int64_t image_channels) {
  Stage1Init init;
  init.path = path;
  init.checkpoint = load_checkpoint(path);
  init.sha256 = sha256_file(path);
  const Checkpoint& c = init.checkpoint;
  if (c.kind != "vqgan" && c.kind != "kl-autoencoder")
    fail("--init {}: is a '{}' checkpoint, not an autoencoder (a train-vqgan last.pt or meddiff import's autoencoder.pt)", path.string(),
         c.kind);
  const std::string before = config_to_json(cfg.autoencoder).dump() + config_to_json(cfg.vqgan).dump();
  int64_t channels = 0;
  if (c.config.contains("network")) {  // imported: MONAI's or MAISI's definition
    const auto def = kl_from_monai(c.config.at("network"), nlohmann::json::object(), path.string());
    if (def.in_channels != def.out_channels)
      fail("--init {}: takes {} image channels and gives {}; stage 1 reconstructs its input", path.string(), def.in_channels,
           def.out_channels);
    init.imported = true;
    channels = def.in_channels;
    cfg.autoencoder.kind = "kl";
    cfg.autoencoder.kl = def.params;
    log_info("--init {}: an imported {} autoencoder; it was trained on images mapped to [0, 1] by its own intensity rule "
             "(MAISI CT: -1000..1000 HU), so data.ct_window should match that rule ([-1000,1000] for MAISI CT) for fine-tuning to start "
             "where it left off",
             path.string(), c.config.value("family", "monai"));
  } else {
    const auto data = config_from_json<DataParams>(c.config.value("data", nlohmann::json::object()), "data");
    channels = data.image_channels();
    cfg.autoencoder = config_from_json<AutoencoderParams>(c.config.value("autoencoder", nlohmann::json::object()), "autoencoder");
    cfg.vqgan = config_from_json<VQGANParams>(c.config.value("vqgan", nlohmann::json::object()), "vqgan");
  }
  if (channels != image_channels)
    fail("--init {}: takes {} image channel(s); the data has {}", path.string(), channels, image_channels);
  if (config_to_json(cfg.autoencoder).dump() + config_to_json(cfg.vqgan).dump() != before)
    log_info("--init {}: training its architecture ({} autoencoder), not the config's", path.string(), cfg.autoencoder.kind);
  if (cfg.autoencoder.is_kl() && cfg.ldm.latent_norm == "codebook_minmax") {
    cfg.ldm.latent_norm = "channel_meanstd";  // a KL autoencoder has no codebook
    log_info("--init {}: ldm.latent_norm set to channel_meanstd for its latents", path.string());
  }
  cfg.validate();
  return init;
}

}  // namespace meddiff
