// meddiff preview IN -o out.png: axial, coronal and sagittal mid-slices with the spacing's aspect ratio.
#include "cli/args.h"
#include "cli/commands.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/log.h"
#include "core/output_policy.h"
#include "data/intensity.h"
#include "data/preview.h"
#include "io/png.h"
#include "io/volume_reader.h"

namespace meddiff::cli {

int run_preview(const Args_t& args) {
  Args a("preview", "Write a PNG of the axial, coronal and sagittal mid-slices side by side", "IN -o OUT.png");
  a.add()("input", "Volume file or DICOM folder", cxxopts::value<std::string>())
      ("o,output", "PNG file to write", cxxopts::value<std::string>())
      ("window", "Intensity window LO,HI (default: CT -1000,1000; MR 0.5-99.5 percentiles)", cxxopts::value<std::string>())
      ("modality", "ct or mr", cxxopts::value<std::string>()->default_value(""))
      ("series", "DICOM Series Instance UID", cxxopts::value<std::string>()->default_value(""))
      ("force", "Replace an existing PNG");
  a.positional({"input"});
  auto r = a.parse(args);
  std::string in = required(r, "input"), out = required(r, "output");
  if (full_extension(out) != "png") usage_fail("-o {}: the preview is a PNG file; give a name ending in .png", out);
  OutputRules rules;
  rules.inputs = {in};
  rules.force = r.count("force") > 0;
  check_output(out, rules);
  IntensityWindow w;
  if (r.count("window")) {
    auto lh = parse_double2(r["window"].as<std::string>(), "--window");
    if (!(lh[1] > lh[0])) usage_fail("--window: HI must be above LO");
    w = {lh[0], lh[1]};
  }
  io::ReadOptions ro;
  ro.modality = parse_modality(r["modality"].as<std::string>());
  ro.series_uid = r["series"].as<std::string>();
  Volume v = io::read_volume(in, ro);
  if (!r.count("window")) {
    IntensityParams p;
    p.ct_lo = -1000;
    p.ct_hi = 1000;
    w = window_for(v, p);
  }
  io::write_png(orthogonal_panel(v.image, v.geometry, w), out, {{"Description", "meddiff preview of " + in}});
  log_info("{} -> {} (window {}, {})", in, out, w.lo, w.hi);
  return 0;
}

}  // namespace meddiff::cli
