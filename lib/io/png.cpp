#include "io/png.h"

#include "core/error.h"
#include "core/fs.h"
#include "io/itk_image.h"

#include <itkImageFileReader.h>
#include <itkImageFileWriter.h>
#include <itkPNGImageIO.h>

namespace meddiff::io {

using Png = itk::Image<uint8_t, 2>;

void write_png(const torch::Tensor& u8, const std::filesystem::path& path) {
  if (u8.dim() != 2 || u8.scalar_type() != torch::kUInt8) fail("{}: a PNG preview needs a uint8 [H, W] image", path.string());
  auto t = u8.contiguous();
  auto image = Png::New();
  Png::SizeType size;
  size[0] = static_cast<itk::SizeValueType>(t.size(1));
  size[1] = static_cast<itk::SizeValueType>(t.size(0));
  image->SetRegions(Png::RegionType(size));
  image->Allocate();
  std::memcpy(image->GetBufferPointer(), t.data_ptr<uint8_t>(), static_cast<size_t>(t.numel()));
  write_atomically(path, [&](const std::filesystem::path& tmp) {
    auto writer = itk::ImageFileWriter<Png>::New();
    writer->SetImageIO(itk::PNGImageIO::New());
    writer->SetFileName(tmp.string());
    writer->SetInput(image);
    try {
      writer->Update();
    } catch (const std::exception& e) {
      fail("{}: cannot write PNG: {}", path.string(), itk_message(e));
    }
  });
}

torch::Tensor read_png(const std::filesystem::path& path) {
  auto reader = itk::ImageFileReader<Png>::New();
  reader->SetImageIO(itk::PNGImageIO::New());
  reader->SetFileName(path.string());
  try {
    reader->Update();
  } catch (const std::exception& e) {
    fail("{}: cannot read PNG: {}", path.string(), itk_message(e));
  }
  auto size = reader->GetOutput()->GetLargestPossibleRegion().GetSize();
  auto out = torch::empty({static_cast<int64_t>(size[1]), static_cast<int64_t>(size[0])}, torch::kUInt8);
  std::memcpy(out.data_ptr<uint8_t>(), reader->GetOutput()->GetBufferPointer(), static_cast<size_t>(out.numel()));
  return out;
}

}  // namespace meddiff::io
