#include "io/volume_writer.h"

#include "core/error.h"
#include "core/fs.h"
#include "io/itk_image.h"
#include "io/volume_reader.h"

#include <itkImageFileWriter.h>

namespace meddiff::io {
namespace {

template <typename TPixel>
void write_itk(const torch::Tensor& t, const Geometry& g, const std::filesystem::path& target) {
  register_io_factories();
  write_atomically(target, [&](const std::filesystem::path& tmp) {
    auto image = itk_from_tensor<TPixel>(t, g);
    auto writer = itk::ImageFileWriter<itk::Image<TPixel, 3>>::New();
    writer->SetFileName(tmp.string());
    writer->SetInput(image);
    writer->SetUseCompression(true);
    try {
      writer->Update();
    } catch (const std::exception& e) {
      fail("{}: cannot write: {}", target.string(), itk_message(e));
    }
  });
}

bool fits_int16(const torch::Tensor& t) {
  return (t == t.round()).all().item<bool>() && t.min().item<double>() >= -32768 && t.max().item<double>() <= 32767;
}

}  // namespace

void write_volume(const Volume& v, const std::filesystem::path& path, const WriteOptions& options) {
  check_volume_tensor(v.image, "volume to write to " + path.string());
  if (format_of(path) == Format::DicomSeries) {
    write_dicom_series(v, path, options.dicom, options.overwrite);
    return;
  }
  if (!options.overwrite && std::filesystem::exists(path)) fail("{}: exists (not overwriting)", path.string());
  if (fits_int16(v.image)) write_itk<int16_t>(v.image, v.geometry, path);
  else write_itk<float>(v.image, v.geometry, path);
}

void write_label_map(const torch::Tensor& label, const Geometry& g, const std::filesystem::path& path) {
  if (format_of(path) == Format::DicomSeries) fail("{}: label maps are written as NIfTI, NRRD or MHA", path.string());
  if (label.min().item<int64_t>() < 0 || label.max().item<int64_t>() > 255)
    fail("{}: label values must be within 0..255", path.string());
  write_itk<uint8_t>(label, g, path);
}

}  // namespace meddiff::io
