// meddiff info VOLUME [--json]: shape, spacing, origin, direction, modality, intensity range.
#include "cli/args.h"
#include "cli/commands.h"
#include "core/checkpoint.h"
#include "core/fs.h"
#include "io/volume_reader.h"

#include <nlohmann/json.hpp>

#include <iostream>

namespace meddiff::cli {

int run_info(const Args_t& args) {
  Args a("info", "Describe a volume (shape, spacing, origin, direction, modality, intensity range) or, for a .pt file, a checkpoint (JSON: kind, step, config, parameter counts)", "VOLUME|CKPT");
  a.add()("input", "Volume file or DICOM series folder", cxxopts::value<std::string>())
      ("json", "Print JSON instead of text")
      ("series", "DICOM Series Instance UID (folders with several series)", cxxopts::value<std::string>()->default_value(""))
      ("modality", "ct or mr (default: from DICOM, else guessed)", cxxopts::value<std::string>()->default_value(""));
  a.positional({"input"});
  auto r = a.parse(args);
  std::string path = required(r, "input");
  if (full_extension(path) == "pt") {
    // A checkpoint: JSON with kind, step, resolved config and parameter counts per part.
    Checkpoint c = load_checkpoint(path);
    nlohmann::json params = nlohmann::json::object();
    for (const auto& [name, t] : c.tensors) {
      auto dot = name.find('.');
      std::string part = name.substr(0, dot);
      if (part == "optim" || !t.is_floating_point()) continue;
      params[part] = params.value(part, int64_t{0}) + t.numel();
    }
    nlohmann::json j = {{"path", path}, {"kind", c.kind}, {"step", c.step}, {"parameters", params},
                        {"config", c.config}, {"extra", c.extra}};
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  io::ReadOptions ro;
  ro.series_uid = r["series"].as<std::string>();
  ro.modality = parse_modality(r["modality"].as<std::string>());
  Volume v = io::read_volume(path, ro);
  const auto& g = v.geometry;
  nlohmann::json j = {{"path", path},
                      {"format", io::to_string(io::format_of(path))},
                      {"shape_dhw", {v.depth(), v.height(), v.width()}},
                      {"size_xyz", {v.width(), v.height(), v.depth()}},
                      {"spacing_xyz_mm", g.spacing},
                      {"origin_xyz_mm", g.origin},
                      {"direction", g.direction},
                      {"modality", to_string(v.modality)},
                      {"min", v.image.min().item<double>()},
                      {"max", v.image.max().item<double>()},
                      {"mean", v.image.mean().item<double>()}};
  if (r.count("json")) {
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  std::cout << fmt::format(
      "{} ({})\n  size x,y,z      {} x {} x {} voxels\n  spacing x,y,z   {:.6g}, {:.6g}, {:.6g} mm\n"
      "  origin x,y,z    {:.6g}, {:.6g}, {:.6g} mm\n  direction       [{:.4f} {:.4f} {:.4f}; {:.4f} {:.4f} {:.4f}; {:.4f} {:.4f} {:.4f}]\n"
      "  modality        {}\n  intensity       min {:.6g}, max {:.6g}, mean {:.6g}\n",
      path, j["format"].get<std::string>(), v.width(), v.height(), v.depth(), g.spacing[0], g.spacing[1], g.spacing[2],
      g.origin[0], g.origin[1], g.origin[2], g.direction[0], g.direction[1], g.direction[2], g.direction[3],
      g.direction[4], g.direction[5], g.direction[6], g.direction[7], g.direction[8], to_string(v.modality),
      j["min"].get<double>(), j["max"].get<double>(), j["mean"].get<double>());
  return 0;
}

}  // namespace meddiff::cli
