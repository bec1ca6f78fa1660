// meddiff convert IN OUT: between NIfTI, NRRD, MHA and DICOM series, keeping geometry and values.
#include "cli/args.h"
#include "cli/commands.h"
#include "core/error.h"
#include "core/log.h"
#include "io/volume_reader.h"
#include "io/volume_writer.h"

namespace meddiff::cli {

int run_convert(const Args_t& args) {
  Args a("convert",
         "Convert a volume between NIfTI (.nii, .nii.gz), NRRD (.nrrd), MetaImage (.mha, .mhd) and DICOM series "
         "folders. OUT ending in '/' or without an image extension is a DICOM series folder. An existing OUT is "
         "replaced only with --force (a folder only if it holds a DICOM series meddiff wrote); OUT is never IN.",
         "IN OUT");
  a.add()("input", "Input file or DICOM folder", cxxopts::value<std::string>())
      ("output", "Output file or DICOM folder", cxxopts::value<std::string>())
      ("modality", "ct or mr (default: from DICOM, else guessed from intensities)", cxxopts::value<std::string>()->default_value(""))
      ("series", "DICOM Series Instance UID to read (folders with several series)", cxxopts::value<std::string>()->default_value(""))
      ("force", "Replace an existing output (a DICOM folder only if meddiff wrote it)");
  a.positional({"input", "output"});
  auto r = a.parse(args);
  std::string in = required(r, "input"), out = required(r, "output");
  const bool force = r.count("force") > 0;
  io::check_volume_output(out, {in}, force);
  io::ReadOptions ro;
  ro.modality = parse_modality(r["modality"].as<std::string>());
  ro.series_uid = r["series"].as<std::string>();
  Volume v = io::read_volume(in, ro);
  io::WriteOptions wo;
  wo.overwrite = force;
  io::write_volume(v, out, wo);
  log_info("{} -> {} ({} x {} x {}, {})", in, out, v.width(), v.height(), v.depth(), to_string(v.modality));
  return 0;
}

}  // namespace meddiff::cli
