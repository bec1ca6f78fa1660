#pragma once
// `meddiff eval`'s command line as one request, parsed and checked in one place, and the rules of its
// output folder: new, empty, an unfinished eval (no eval.json: a killed or failed run, replaced
// without --force) or, with --force, a finished one; never a folder with anything else in it.
#include "cli/commands.h"
#include "pipeline/downstream_seg.h"
#include "pipeline/eval_features.h"

#include <array>
#include <filesystem>
#include <string>

namespace meddiff::cli {

struct EvalRequest {
  std::string real, synthetic, train, vqgan;  // train "": no memorisation audit
  // An imported autoencoder (cli/autoencoder_option.h): its modality, and the grid volumes are prepared on
  // (shape [D, H, W]: 0 = the first --real volume's, rounded up to the autoencoder's downsampling; spacing
  // [x, y, z] mm: 0 = as the files are).
  std::string modality;
  std::array<int64_t, 3> shape{0, 0, 0};
  std::array<double, 3> spacing{0, 0, 0};
  std::filesystem::path out;
  std::string features = "vqgan";             // vqgan, 3d:FILE or 2d:FILE
  FeatureInput feature_input;
  uint64_t seed = 0;
  int64_t pairs = 32, k = 5, max_shift = 2;
  std::string device = "auto";
  bool force = false;
  // --downstream seg: the segmentation check (pipeline/downstream_seg.h)
  bool downstream = false;
  std::string seg_train;   // real labelled training cases of the segmenter ("": --train)
  int64_t seg_cases = 0;   // use the first N of them (0: all)
  DownstreamParams seg;
  bool audited() const { return !train.empty(); }
};

// The options and their checks; the output folder's rules are checked here too, before any work,
// and a killed run's temporaries in it removed.
EvalRequest parse_eval_request(const Args_t& args);

// True for the names an eval writes in its folder (eval.json, report.md, the PNGs, temporaries).
bool eval_output_name(const std::string& filename);

}  // namespace meddiff::cli
