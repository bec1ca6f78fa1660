// meddiff index SOURCE [--out manifest.json]: the cases meddiff finds in a dataset (nnU-Net raw, MSD, BraTS, a DICOM
// tree, or a list), as a per-case table, one line per case left out and why, and a JSON manifest that data.manifest
// can name.
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/run_options.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/output_policy.h"
#include "io/dataset_index.h"
#include "train/train_config.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <iostream>

namespace meddiff::cli {

int run_index(const Args_t& args) {
  Args a("index",
         "List the cases of a dataset as meddiff reads it: an nnU-Net raw folder (dataset.json, imagesTr CASE_XXXX, labelsTr), an "
         "MSD task folder (4-D images), a BraTS folder of case folders (sequences by file-name suffix, *_seg as the label map), a "
         "DICOM tree (one case per series; localisers, scouts and secondary captures left out), a folder of images, a CSV or a "
         "JSON manifest. Prints a table of the cases and one line per case or series left out; --out writes the manifest "
         "(data.manifest may also name SOURCE itself).",
         "SOURCE");
  a.add()("source", "Dataset folder, glob, CSV or JSON manifest", cxxopts::value<std::string>())
      ("out", "Write the cases as a JSON manifest here (paths relative to it)", cxxopts::value<std::string>())
      ("config", "Take data.source (BraTS suffixes, classes, DICOM rules) from this config file, and keep the DICOM series "
                 "of its data.modality as training does", cxxopts::value<std::string>()->default_value(""))
      ("set", "Override a config key, e.g. data.source.dicom.modality=[\"CT\"] (repeatable)", cxxopts::value<std::vector<std::string>>())
      ("json", "Print the manifest and the report as JSON instead of the table")
      ("strict", "Exit 1 when any case is left out for a problem (missing or inconsistent files)")
      ("force", "Replace an existing --out file");
  a.positional({"source"});
  auto r = a.parse(args);
  const std::string source = required(r, "source");
  RunConfig cfg = resolve_config(r["config"].as<std::string>(), set_overrides(r));
  if (r.count("out")) {
    OutputRules rules;
    rules.force = r.count("force") > 0;
    check_output(r["out"].as<std::string>(), rules);
  }
  const bool as_training = !r["config"].as<std::string>().empty();
  auto d = io::index_dataset(source, as_training ? cfg.data.effective_source() : cfg.data.source);
  const auto& m = d.manifest;
  const bool refused = r.count("strict") && !d.report.problems.empty();
  if (r.count("out") && !refused) save_manifest_json(m, r["out"].as<std::string>());
  if (r.count("json")) {
    // the manifest as --out writes it (paths as found), and the report
    nlohmann::json j = {{"source", source}, {"manifest", manifest_json(m, {})}, {"problems", d.report.problems},
                        {"skipped", d.report.skipped}, {"unreadable", d.report.unreadable}};
    std::cout << j.dump(2) << "\n";
  } else {
    std::string out = fmt::format("{}: {} layout, {} case(s), {} channel(s){}{}\n", source, m.layout, m.entries.size(), m.num_channels(),
                                  m.channel_names.empty() ? "" : fmt::format(" ({})", fmt::join(m.channel_names, ", ")),
                                  m.label_names.empty() ? "" : fmt::format(", labels {}", fmt::join(m.label_names, ", ")));
    size_t width = 4;
    for (const auto& e : m.entries) width = std::max(width, (e.id.empty() ? e.image.filename().string() : e.id).size());
    out += fmt::format("  {:<{}}  class  label  files\n", "case", width);
    for (const auto& e : m.entries) {
      const auto files = e.channel_files();
      std::string what;
      for (size_t c = 0; c < files.size(); ++c) {
        what += (c ? ", " : "") + files[c].path.filename().string();
        if (files[c].component >= 0) what += fmt::format("[{}]", files[c].component);
      }
      if (!e.info.empty()) what += " (" + e.info + ")";
      out += fmt::format("  {:<{}}  {:>5}  {:>5}  {}\n", e.id.empty() ? e.image.filename().string() : e.id, width, e.class_label,
                         e.label ? "yes" : "no", what);
    }
    for (const auto& p : d.report.problems) out += "left out: " + p + "\n";
    for (const auto& p : d.report.skipped) out += "series left out: " + p + "\n";
    for (const auto& p : d.report.unreadable) out += "unreadable DICOM file: " + p + "\n";
    if (r.count("out") && !refused) out += fmt::format("wrote {} ({} cases)\n", r["out"].as<std::string>(), m.entries.size());
    std::cout << out << std::flush;
  }
  if (refused) {
    std::cerr << fmt::format("meddiff index: error: {}: {} case(s) left out for problems (--strict; nothing written)\n", source,
                             d.report.problems.size());
    return 1;
  }
  return 0;
}

}  // namespace meddiff::cli
