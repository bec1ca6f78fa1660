#pragma once
// Internal to lib/io: the one place where ITK's (x, y, z) image meets the [D, H, W] tensor.
// ITK stores voxels x-fastest, so its buffer is already laid out as a C-contiguous [z][y][x] tensor.
#include "data/volume.h"

#include <itkImage.h>

#include <cstdio>
#include <string>

namespace meddiff::io {

using FloatImage3 = itk::Image<float, 3>;

Geometry geometry_of(const itk::ImageBase<3>* image);
void set_geometry(itk::ImageBase<3>* image, const Geometry& g);

// Copies an ITK image into a float tensor [D, H, W].
template <typename TPixel>
torch::Tensor tensor_from_itk(const itk::Image<TPixel, 3>* image);

// A new ITK image of pixel type TPixel holding `t` [D, H, W] (converted with a cast) and geometry g.
template <typename TPixel>
typename itk::Image<TPixel, 3>::Pointer itk_from_tensor(const torch::Tensor& t, const Geometry& g);

// A new 4-D ITK image holding `channels` [C, D, H, W] as (x, y, z, channel): geometry g on the first three
// axes, spacing 1 and origin 0 on the fourth (the MSD / NIfTI 4-D layout).
template <typename TPixel>
typename itk::Image<TPixel, 4>::Pointer itk4_from_tensor(const torch::Tensor& channels, const Geometry& g);

// Registers the ImageIO factories meddiff uses (NIfTI, NRRD, Meta, GDCM, PNG), once.
void register_io_factories();

// First line of an ITK exception's description, without the file/line noise and the
// "ITK ERROR: Class(0x...):" prefix.
std::string itk_message(const std::exception& e);

// While alive, what ITK's C libraries (nifti1_io, MetaIO, NrrdIO, GDCM) print to stderr goes to a
// buffer instead: meddiff reports every failure in one line of its own. text() is what was caught.
// Thread-safe: captures alive at once share one redirection (the last one to end restores stderr).
class CapturedStderr {
 public:
  CapturedStderr();
  ~CapturedStderr();
  CapturedStderr(const CapturedStderr&) = delete;
  CapturedStderr& operator=(const CapturedStderr&) = delete;
  std::string text();      // stops the capture and returns what was printed
  std::string first_line();

 private:
  void stop();
  bool active_ = false;
  long start_ = 0;  // offset in the shared file where this capture began
  std::string text_;
};

}  // namespace meddiff::io
