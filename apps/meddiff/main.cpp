// meddiff: one binary, subcommands dispatched from this table to library functions in lib/cli.
#include "cli/commands.h"

int main(int argc, char** argv) {
  using namespace meddiff::cli;
  static const std::vector<Command> table = {
      {"phantoms", "generate a two-class MR or CT phantom dataset with labels and a manifest", run_phantoms},
      {"convert", "convert between NIfTI, NRRD, MHA and DICOM series keeping geometry and values", run_convert},
      {"info", "describe a volume (shape, spacing, origin, direction, modality, intensities)", run_info},
      {"preview", "PNG of axial, coronal and sagittal mid-slices", run_preview},
  };
  return dispatch(table, argc, argv);
}
