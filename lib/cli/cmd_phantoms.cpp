// meddiff phantoms: the built-in two-class dataset (MR heads with lesions, CT chests with nodules).
#include "cli/args.h"
#include "cli/commands.h"
#include "core/config.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/log.h"
#include "core/output_policy.h"
#include "core/progress.h"
#include "data/manifest.h"
#include "data/phantom.h"
#include "io/volume_writer.h"

namespace meddiff::cli {

int run_phantoms(const Args_t& args) {
  Args a("phantoms",
         "Generate a two-class phantom dataset (images, label maps, manifest.json). Case i has class i % 2: "
         "MR class 1 has 1-2 tumour-like lesions, CT class 1 has 1-3 lung nodules.");
  a.add()("modality", "mr or ct", cxxopts::value<std::string>()->default_value("mr"))
      ("count", "Number of cases", cxxopts::value<int64_t>()->default_value("8"))
      ("shape", "Volume size x,y,z (voxels; x,y,z as in every meddiff option and config key)",
       cxxopts::value<std::string>()->default_value("32,32,32"))
      ("spacing", "Voxel spacing x,y,z (mm)", cxxopts::value<std::string>()->default_value("1,1,1"))
      ("seed", "Random seed (same seed, same volumes)", cxxopts::value<uint64_t>()->default_value("0"))
      ("out", "Output folder", cxxopts::value<std::string>())
      ("force", "Overwrite the phantoms of an earlier run in --out");
  auto r = a.parse(args);
  PhantomParams p;
  p.modality = parse_modality(r["modality"].as<std::string>());
  p.shape = reversed_axes(parse_int3(r["shape"].as<std::string>(), "--shape"));  // x,y,z -> [D, H, W]
  p.spacing = parse_double3(r["spacing"].as<std::string>(), "--spacing");        // x, y, z
  p.seed = r["seed"].as<uint64_t>();
  int64_t count = r["count"].as<int64_t>();
  if (count < 1) usage_fail("--count must be at least 1");
  p.validate();
  fs::path out = required(r, "out");
  const bool force = r.count("force") > 0;
  // Fail before any work if an earlier run's files are there and --force is not given.
  OutputRules rules;
  rules.force = force;
  check_output(out / "manifest.json", rules);
  for (int64_t i = 0; i < count; ++i)
    for (const char* sub : {"images", "labels"}) check_output(out / sub / fmt::format("case_{:04d}.nii.gz", i), rules);
  fs::create_directories(out / "images");
  fs::create_directories(out / "labels");
  Manifest m;
  Progress progress("phantoms", count);
  for (int64_t i = 0; i < count; ++i) {
    int64_t cls = i % 2;
    Volume v = make_phantom(p, i, cls);
    std::string name = fmt::format("case_{:04d}.nii.gz", i);
    io::WriteOptions wo;
    wo.overwrite = force;
    wo.description = fmt::format("SYNTHETIC meddiff phantom seed={} case={} class={}", p.seed, i, cls);
    io::write_volume(v, out / "images" / name, wo);
    io::write_label_map(*v.label, v.geometry, out / "labels" / name, wo);
    m.entries.push_back(ManifestEntry{out / "images" / name, cls, out / "labels" / name, "", {}, ""});
    progress.update(i + 1);
  }
  save_manifest_json(m, out / "manifest.json");
  progress.finish();
  log_info("wrote {} {} phantoms to {} (manifest.json)", count, to_string(p.modality), out.string());
  return 0;
}

}  // namespace meddiff::cli
