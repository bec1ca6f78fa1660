#include "io/itk_image.h"

#include <itkGDCMImageIOFactory.h>
#include <itkMetaImageIOFactory.h>
#include <itkNiftiImageIOFactory.h>
#include <itkNrrdImageIOFactory.h>
#include <itkPNGImageIOFactory.h>

#include <gdcmTrace.h>

#include <mutex>

namespace meddiff::io {

Geometry geometry_of(const itk::ImageBase<3>* image) {
  Geometry g;
  for (unsigned a = 0; a < 3; ++a) {
    g.spacing[a] = image->GetSpacing()[a];
    g.origin[a] = image->GetOrigin()[a];
    for (unsigned c = 0; c < 3; ++c) g.direction[3 * a + c] = image->GetDirection()[a][c];
  }
  return g;
}

void set_geometry(itk::ImageBase<3>* image, const Geometry& g) {
  itk::ImageBase<3>::SpacingType sp;
  itk::ImageBase<3>::PointType origin;
  itk::ImageBase<3>::DirectionType dir;
  for (unsigned a = 0; a < 3; ++a) {
    sp[a] = g.spacing[a];
    origin[a] = g.origin[a];
    for (unsigned c = 0; c < 3; ++c) dir[a][c] = g.direction[3 * a + c];
  }
  image->SetSpacing(sp);
  image->SetOrigin(origin);
  image->SetDirection(dir);
}

template <typename TPixel>
torch::Tensor tensor_from_itk(const itk::Image<TPixel, 3>* image) {
  auto size = image->GetLargestPossibleRegion().GetSize();
  auto n = static_cast<int64_t>(size[0] * size[1] * size[2]);
  auto out = torch::empty({static_cast<int64_t>(size[2]), static_cast<int64_t>(size[1]), static_cast<int64_t>(size[0])});
  float* dst = out.data_ptr<float>();
  const TPixel* src = image->GetBufferPointer();
  for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<float>(src[i]);
  return out;
}

template <typename TPixel>
typename itk::Image<TPixel, 3>::Pointer itk_from_tensor(const torch::Tensor& t, const Geometry& g) {
  using Image = itk::Image<TPixel, 3>;
  auto image = Image::New();
  typename Image::SizeType size;
  size[0] = static_cast<itk::SizeValueType>(t.size(2));
  size[1] = static_cast<itk::SizeValueType>(t.size(1));
  size[2] = static_cast<itk::SizeValueType>(t.size(0));
  image->SetRegions(typename Image::RegionType(size));
  set_geometry(image, g);
  image->Allocate();
  auto src = t.to(torch::kDouble).contiguous();
  const double* s = src.data_ptr<double>();
  TPixel* d = image->GetBufferPointer();
  for (int64_t i = 0; i < src.numel(); ++i) d[i] = static_cast<TPixel>(s[i]);
  return image;
}

template torch::Tensor tensor_from_itk<float>(const itk::Image<float, 3>*);
template torch::Tensor tensor_from_itk<int16_t>(const itk::Image<int16_t, 3>*);
template itk::Image<float, 3>::Pointer itk_from_tensor<float>(const torch::Tensor&, const Geometry&);
template itk::Image<int16_t, 3>::Pointer itk_from_tensor<int16_t>(const torch::Tensor&, const Geometry&);
template itk::Image<uint16_t, 3>::Pointer itk_from_tensor<uint16_t>(const torch::Tensor&, const Geometry&);
template itk::Image<uint8_t, 3>::Pointer itk_from_tensor<uint8_t>(const torch::Tensor&, const Geometry&);

void register_io_factories() {
  static std::once_flag once;
  std::call_once(once, [] {
    // meddiff reports problems itself, in one line; ITK and GDCM warnings would only add noise.
    itk::Object::GlobalWarningDisplayOff();
    gdcm::Trace::WarningOff();
    itk::NiftiImageIOFactory::RegisterOneFactory();
    itk::NrrdImageIOFactory::RegisterOneFactory();
    itk::MetaImageIOFactory::RegisterOneFactory();
    itk::GDCMImageIOFactory::RegisterOneFactory();
    itk::PNGImageIOFactory::RegisterOneFactory();
  });
}

std::string itk_message(const std::exception& e) {
  if (auto ie = dynamic_cast<const itk::ExceptionObject*>(&e)) {
    std::string d = ie->GetDescription();
    while (!d.empty() && (d.back() == '\n' || d.back() == ' ')) d.pop_back();
    auto nl = d.find('\n');
    return nl == std::string::npos ? d : d.substr(0, nl);
  }
  std::string w = e.what();
  auto nl = w.find('\n');
  return nl == std::string::npos ? w : w.substr(0, nl);
}

}  // namespace meddiff::io
