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
#include "data/spatial.h"
#include "io/dicom_series.h"
#include "io/volume_writer.h"

#include <nlohmann/json.hpp>

#include <algorithm>

namespace meddiff::cli {

namespace {

// Where case i's files go in each layout (relative to --out), and what else the layout writes.
struct PhantomLayout {
  std::string kind;                    // flat, brats, nnunet, msd, dicom-tree
  std::vector<std::string> sequences;  // empty: one image per case
  std::string case_id(int64_t i) const { return kind == "brats" ? fmt::format("BraTS2021_{:05d}", i) : fmt::format("case_{:04d}", i); }
  bool four_d() const { return kind == "msd"; }  // one 4-D file holds every channel
  bool dicom() const { return kind == "dicom-tree"; }  // DICOM series, no label maps
  fs::path study(int64_t i) const { return fs::path(fmt::format("patient_{:04d}", i)) / "study_1"; }
  fs::path image(int64_t i, size_t c) const {
    const std::string id = case_id(i);
    if (dicom()) return study(i) / fmt::format("series_{}", c + 1);
    if (kind == "msd") return fs::path("imagesTr") / (id + ".nii.gz");
    if (kind == "brats") return fs::path(id) / fmt::format("{}_{}.nii.gz", id, sequences.at(c));
    if (kind == "nnunet") return fs::path("imagesTr") / fmt::format("{}_{:04d}.nii.gz", id, c);
    return fs::path("images") / (sequences.empty() ? id + ".nii.gz" : fmt::format("{}_{}.nii.gz", id, sequences.at(c)));
  }
  fs::path label(int64_t i) const {
    const std::string id = case_id(i);
    if (kind == "brats") return fs::path(id) / (id + "_seg.nii.gz");
    if (kind == "nnunet" || kind == "msd") return fs::path("labelsTr") / (id + ".nii.gz");
    return fs::path("labels") / (id + ".nii.gz");
  }
  size_t channels() const { return std::max<size_t>(1, sequences.size()); }
  size_t files() const { return four_d() ? 1 : channels(); }  // image files per case
  // the layout's own index of the cases: manifest.json (flat), dataset.json (nnU-Net, MSD), classes.csv (BraTS);
  // a DICOM tree has none, but a stray text file (README.txt) that indexing must pass over
  fs::path index_file() const {
    return kind == "brats" ? "classes.csv" : kind == "flat" ? "manifest.json" : dicom() ? "README.txt" : "dataset.json";
  }
};

// One study of the DICOM tree: a series per sequence (or the CT), and the decoys indexing must leave out: a
// localiser, a derived secondary capture (odd cases), a second reconstruction of the same scan (case 0).
void write_dicom_study(const PhantomLayout& l, const fs::path& out, int64_t i, int64_t cls, const std::vector<Volume>& vs,
                       const PhantomParams& p, bool force) {
  io::WriteOptions wo;
  wo.overwrite = force;
  auto& d = wo.dicom;
  d.synthetic = true;
  d.study_uid = io::new_uid();
  d.frame_uid = io::new_uid();
  d.patient_id = fmt::format("PHANTOM-{:04d}", i);
  d.image_type = p.modality == Modality::CT ? "ORIGINAL\\PRIMARY\\AXIAL" : "ORIGINAL\\PRIMARY\\OTHER";
  const std::string what = fmt::format("seed={} case={} class={}", p.seed, i, cls);
  auto write = [&](const Volume& v, const fs::path& rel, const std::string& description, int number) {
    d.series_description = description;
    d.image_comments = fmt::format("SYNTHETIC meddiff phantom {}; {}; no patient data", what, description);
    d.series_number = number;
    fs::create_directories((out / rel).parent_path());
    io::write_volume(v, out / rel, wo);
  };
  for (size_t c = 0; c < vs.size(); ++c)
    write(vs[c], l.image(i, c), l.sequences.empty() ? std::string("phantom ") + (p.modality == Modality::CT ? "CT" : "MR")
                                                     : "phantom " + l.sequences[c], static_cast<int>(c) + 1);
  Volume loc = vs.front();  // the middle slice, as a localiser
  const int64_t mid = loc.depth() / 2;
  auto o = loc.geometry.index_to_world(0, 0, static_cast<double>(mid));
  loc.geometry.origin = o;
  loc.image = loc.image.narrow(0, mid, 1).contiguous();
  loc.label.reset();
  const std::string primary = d.image_type;
  d.image_type = "ORIGINAL\\PRIMARY\\LOCALIZER";
  write(loc, l.study(i) / "series_0_localizer", "LOCALIZER", 100);
  d.image_type = primary;
  if (i % 2 == 1) {
    d.image_type = "";  // the writer's default: DERIVED, SECONDARY
    write(vs.front(), l.study(i) / "series_8_secondary", "SECONDARY CAPTURE", 800);
    d.image_type = primary;
  }
  if (i == 0) {
    auto sp = vs.front().geometry.spacing;
    sp[2] *= 2;
    write(resample_to_spacing(vs.front(), sp), l.study(i) / "series_9_recon", "phantom reconstruction at twice the slice thickness", 900);
  }
}

void write_index(const PhantomLayout& l, const fs::path& out, Modality modality, int64_t count) {
  if (l.kind == "flat") {
    Manifest m;
    if (!l.sequences.empty()) m.channel_names = l.sequences;
    for (int64_t i = 0; i < count; ++i) {
      ManifestEntry e{out / l.image(i, 0), i % 2, out / l.label(i), "", {}, ""};
      if (!l.sequences.empty())
        for (size_t c = 0; c < l.channels(); ++c) e.channels.push_back(ChannelFile{out / l.image(i, c), -1, ""});
      m.entries.push_back(e);
    }
    save_manifest_json(m, out / l.index_file());
    return;
  }
  std::string text;
  if (l.dicom()) {
    text = "SYNTHETIC meddiff phantoms, no patient data: patient_NNNN/study_1/series_N (the volumes), series_0_localizer "
           "(a one-slice localiser per study), series_8_secondary (a derived secondary capture, odd cases) and "
           "series_9_recon (patient_0000: a second reconstruction of series_1 at twice the slice thickness).\n";
  } else if (l.kind == "brats") {  // the classes, for data.source.classes
    text = "id,class\n";
    for (int64_t i = 0; i < count; ++i) text += fmt::format("{},{}\n", l.case_id(i), i % 2);
  } else {
    nlohmann::json channels = nlohmann::json::object(), labels = nlohmann::json::object();
    if (l.sequences.empty()) channels["0"] = modality == Modality::CT ? "CT" : "MRI";
    for (size_t c = 0; c < l.sequences.size(); ++c) channels[std::to_string(c)] = l.sequences[c];
    const auto names = phantom_label_names(modality);
    nlohmann::json j{{"numTraining", count}, {"name", "meddiff phantoms"}, {"description", "SYNTHETIC meddiff phantoms; no patient data"}};
    if (l.kind == "nnunet") {  // nnU-Net v2 raw: names -> values
      for (size_t v = 0; v < names.size(); ++v) labels[names[v]] = v;
      j.update({{"channel_names", channels}, {"labels", labels}, {"file_ending", ".nii.gz"}});
    } else {  // the Medical Segmentation Decathlon: values -> names, a list of the training cases
      for (size_t v = 0; v < names.size(); ++v) labels[std::to_string(v)] = names[v];
      nlohmann::json training = nlohmann::json::array();
      for (int64_t i = 0; i < count; ++i)
        training.push_back({{"image", "./" + l.image(i, 0).string()}, {"label", "./" + l.label(i).string()}});
      j.update({{"modality", channels}, {"labels", labels}, {"training", training}, {"test", nlohmann::json::array()}});
    }
    text = j.dump(2) + "\n";
  }
  write_text_atomically(out / l.index_file(), text);
}

}  // namespace

int run_phantoms(const Args_t& args) {
  Args a("phantoms",
         "Generate a two-class phantom dataset (images, label maps and the layout's index). Case i has class i % 2: "
         "MR class 1 has 1-2 tumour-like lesions, CT class 1 has 1-3 lung nodules. MR cases can be several co-registered "
         "sequences of one anatomy (--sequences), laid out as a flat list (manifest.json), BraTS case folders or an nnU-Net "
         "raw dataset.");
  a.add()("modality", "mr or ct", cxxopts::value<std::string>()->default_value("mr"))
      ("count", "Number of cases", cxxopts::value<int64_t>()->default_value("8"))
      ("shape", "Volume size x,y,z (voxels; x,y,z as in every meddiff option and config key)",
       cxxopts::value<std::string>()->default_value("32,32,32"))
      ("spacing", "Voxel spacing x,y,z (mm)", cxxopts::value<std::string>()->default_value("1,1,1"))
      ("sequences", "MR: the sequences of each case, e.g. t1,t1ce,t2,flair (default: one image; brats: all four)",
       cxxopts::value<std::string>()->default_value(""))
      ("layout", "flat (images/, labels/, manifest.json), brats (BraTS2021_NNNNN/ folders with _<sequence> and _seg files, "
                 "classes.csv), nnunet (imagesTr/ CASE_XXXX, labelsTr/, dataset.json), msd (the Decathlon's 4-D images, "
                 "labelsTr/, dataset.json) or dicom-tree (patient/study/series DICOM folders with decoys: a localiser per "
                 "study, secondary captures, a second reconstruction, a stray README.txt; no label maps)",
       cxxopts::value<std::string>()->default_value("flat"))
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
  PhantomLayout layout;
  layout.kind = r["layout"].as<std::string>();
  if (layout.kind != "flat" && layout.kind != "brats" && layout.kind != "nnunet" && layout.kind != "msd" && !layout.dicom())
    usage_fail("--layout must be flat, brats, nnunet, msd or dicom-tree (got '{}')", layout.kind);
  if (layout.dicom() && p.shape[0] < 10) usage_fail("--layout dicom-tree: at least 10 slices (--shape z), as a series needs to be indexed");
  for (const auto& s : split_commas(r["sequences"].as<std::string>()))
    if (!s.empty()) layout.sequences.push_back(s);
  if (layout.sequences.empty() && (layout.kind == "brats" || layout.kind == "msd") && p.modality == Modality::MR)
    layout.sequences = phantom_sequences();
  if (!layout.sequences.empty() && p.modality != Modality::MR) usage_fail("--sequences: MR phantoms only");
  if (layout.kind == "brats" && p.modality != Modality::MR) usage_fail("--layout brats: MR phantoms only");
  for (const auto& s : layout.sequences) {
    const auto& known = phantom_sequences();
    if (std::find(known.begin(), known.end(), s) == known.end())
      usage_fail("--sequences: unknown MR sequence '{}' (known: {})", s, fmt::join(known, ", "));
    if (std::count(layout.sequences.begin(), layout.sequences.end(), s) > 1) usage_fail("--sequences names '{}' twice", s);
  }
  fs::path out = required(r, "out");
  const bool force = r.count("force") > 0;
  // Fail before any work if an earlier run's files are there and --force is not given.
  OutputRules rules;
  rules.force = force;
  check_output(out / layout.index_file(), rules);
  for (int64_t i = 0; i < count; ++i) {
    for (size_t c = 0; c < layout.files(); ++c) check_output(out / layout.image(i, c), rules);
    if (!layout.dicom()) check_output(out / layout.label(i), rules);
  }
  Progress progress("phantoms", count);
  for (int64_t i = 0; i < count; ++i) {
    const int64_t cls = i % 2;
    std::vector<Volume> vs = layout.sequences.empty() ? std::vector<Volume>{make_phantom(p, i, cls)}
                                                      : make_phantom_sequences(p, i, cls, layout.sequences);
    io::WriteOptions wo;
    wo.overwrite = force;
    if (layout.dicom()) {
      write_dicom_study(layout, out, i, cls, vs, p, force);
      progress.update(i + 1);
      continue;
    }
    if (layout.four_d()) {
      wo.description = fmt::format("SYNTHETIC meddiff phantom seed={} case={} class={}", p.seed, i, cls);
      fs::create_directories((out / layout.image(i, 0)).parent_path());
      io::write_volume_4d(vs, out / layout.image(i, 0), wo);
    }
    for (size_t c = 0; c < vs.size() && !layout.four_d(); ++c) {
      wo.description = fmt::format("SYNTHETIC meddiff phantom seed={} case={} class={}{}", p.seed, i, cls,
                                   layout.sequences.empty() ? std::string() : " " + layout.sequences[c]);
      fs::create_directories((out / layout.image(i, c)).parent_path());
      io::write_volume(vs[c], out / layout.image(i, c), wo);
    }
    wo.description = fmt::format("SYNTHETIC meddiff phantom label map seed={} case={} class={}", p.seed, i, cls);
    fs::create_directories((out / layout.label(i)).parent_path());
    io::write_label_map(*vs.front().label, vs.front().geometry, out / layout.label(i), wo);
    progress.update(i + 1);
  }
  write_index(layout, out, p.modality, count);
  progress.finish();
  log_info("wrote {} {} phantoms{} to {} ({} layout, {})", count, to_string(p.modality),
           layout.sequences.empty() ? std::string() : fmt::format(" ({})", fmt::join(layout.sequences, ", ")), out.string(), layout.kind,
           layout.index_file().string());
  return 0;
}

}  // namespace meddiff::cli
