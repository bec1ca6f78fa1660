// meddiff: one binary, subcommands dispatched from this table to library functions in lib/cli.
#include "cli/commands.h"

#include <cstdio>
#include <cstdlib>
#include <iostream>

int main(int argc, char** argv) {
  using namespace meddiff::cli;
  // LibTorch's CPU allocations of 2 MB and more on transparent huge pages (unless the user set it): the large
  // activations of 3-D networks are otherwise mapped page by page at every allocation; measured here, MAISI's
  // full-size decode of a 16^3 latent took 2.97 s instead of 3.41 s (`meddiff bench --network ...`).
  setenv("THP_MEM_ALLOC_ENABLE", "1", /*overwrite=*/0);
  static const std::vector<Command> table = {
      {"demo", "the whole pipeline on built-in phantoms: data, VQ-GAN, diffusion, samples, report", run_demo},
      {"phantoms", "generate a two-class MR or CT phantom dataset with labels and a manifest", run_phantoms},
      {"index", "list the cases of a dataset (nnU-Net raw, MSD, BraTS, DICOM tree, list) and write its manifest", run_index},
      {"convert", "convert between NIfTI, NRRD, MHA and DICOM series keeping geometry and values", run_convert},
      {"train-vqgan", "train the 3-D VQ-GAN autoencoder (stage 1)", run_train_vqgan},
      {"reconstruct", "encode and decode a volume with a trained VQ-GAN; prints PSNR and SSIM", run_reconstruct},
      {"train-ldm", "train the class-conditional latent diffusion model (stage 2)", run_train_ldm},
      {"sample", "generate synthetic volumes (DDPM, DDIM, DPM-Solver++, guidance; resumable, shardable)", run_sample},
      {"eval", "compare synthetic with real volumes (Fréchet distance, precision/recall, MS-SSIM) and audit them for copies", run_eval},
      {"bench", "time and memory of the U-Net, VQ-GAN and samplers at each config's size and a sweep of latent sizes", run_bench},
      {"import", "import a model trained elsewhere (MAISI-v2 files, a MONAI bundle) as meddiff checkpoints", run_import},
      {"config", "list the config keys (--keys) or print a resolved config", run_config},
      {"info", "describe a volume (shape, spacing, ..., intensities) or a checkpoint (kind, step, config)", run_info},
      {"preview", "PNG of axial, coronal and sagittal mid-slices", run_preview},
  };
  const int rc = dispatch(table, argc, argv);
  // Every output is written and closed by now. The process ends without the libraries' static destructors:
  // Debian's ITK 5.2 has aborted in them at exit ("double free or corruption" in ITKCommon's __cxa_finalize)
  // after a command had already finished, turning its exit status into a crash and losing buffered output.
  std::cout.flush();
  std::fflush(nullptr);
  std::_Exit(rc);
}
