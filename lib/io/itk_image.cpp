#include "io/itk_image.h"

#include "core/threads.h"

#include <itkGDCMImageIOFactory.h>
#include <itkMultiThreaderBase.h>
#include <itkMetaImageIOFactory.h>
#include <itkNiftiImageIOFactory.h>
#include <itkNrrdImageIOFactory.h>
#include <itkPNGImageIOFactory.h>

#include <gdcmTrace.h>

#include <unistd.h>

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

template <typename TPixel>
typename itk::Image<TPixel, 4>::Pointer itk4_from_tensor(const torch::Tensor& t, const Geometry& g) {
  using Image = itk::Image<TPixel, 4>;
  auto image = Image::New();
  typename Image::SizeType size;
  for (unsigned a = 0; a < 4; ++a) size[a] = static_cast<itk::SizeValueType>(t.size(3 - a));
  image->SetRegions(typename Image::RegionType(size));
  typename Image::SpacingType sp;
  typename Image::PointType origin;
  typename Image::DirectionType dir;
  dir.SetIdentity();
  for (unsigned a = 0; a < 3; ++a) {
    sp[a] = g.spacing[a];
    origin[a] = g.origin[a];
    for (unsigned c = 0; c < 3; ++c) dir[a][c] = g.direction[3 * a + c];
  }
  sp[3] = 1.0;
  origin[3] = 0.0;
  image->SetSpacing(sp);
  image->SetOrigin(origin);
  image->SetDirection(dir);
  image->Allocate();
  auto src = t.to(torch::kDouble).contiguous();  // [C, D, H, W]: ITK's x-fastest order
  const double* s = src.data_ptr<double>();
  TPixel* d = image->GetBufferPointer();
  for (int64_t i = 0; i < src.numel(); ++i) d[i] = static_cast<TPixel>(s[i]);
  return image;
}

template itk::Image<float, 4>::Pointer itk4_from_tensor<float>(const torch::Tensor&, const Geometry&);
template itk::Image<int16_t, 4>::Pointer itk4_from_tensor<int16_t>(const torch::Tensor&, const Geometry&);

template torch::Tensor tensor_from_itk<float>(const itk::Image<float, 3>*);
template torch::Tensor tensor_from_itk<int16_t>(const itk::Image<int16_t, 3>*);
template itk::Image<float, 3>::Pointer itk_from_tensor<float>(const torch::Tensor&, const Geometry&);
template itk::Image<int16_t, 3>::Pointer itk_from_tensor<int16_t>(const torch::Tensor&, const Geometry&);
template itk::Image<uint16_t, 3>::Pointer itk_from_tensor<uint16_t>(const torch::Tensor&, const Geometry&);
template itk::Image<uint8_t, 3>::Pointer itk_from_tensor<uint8_t>(const torch::Tensor&, const Geometry&);

void register_io_factories() {
  if (int n = cpu_threads(); n > 0 && itk::MultiThreaderBase::GetGlobalDefaultNumberOfThreads() != static_cast<itk::ThreadIdType>(n))
    itk::MultiThreaderBase::SetGlobalDefaultNumberOfThreads(static_cast<itk::ThreadIdType>(n));
  static std::once_flag once;
  std::call_once(once, [] {
    // meddiff reports problems itself, in one line; ITK and GDCM warnings would only add noise.
    itk::Object::GlobalWarningDisplayOff();
    gdcm::Trace::WarningOff();
    gdcm::Trace::ErrorOff();  // GDCM's multi-line dumps: meddiff reports one line itself
    gdcm::Trace::DebugOff();
    itk::NiftiImageIOFactory::RegisterOneFactory();
    itk::NrrdImageIOFactory::RegisterOneFactory();
    itk::MetaImageIOFactory::RegisterOneFactory();
    itk::GDCMImageIOFactory::RegisterOneFactory();
    itk::PNGImageIOFactory::RegisterOneFactory();
  });
}

std::string itk_message(const std::exception& e) {
  std::string d = e.what();
  if (auto ie = dynamic_cast<const itk::ExceptionObject*>(&e)) d = ie->GetDescription();
  while (!d.empty() && (d.front() == '\n' || d.front() == ' ')) d.erase(d.begin());
  d = d.substr(0, d.find('\n'));
  // "ITK ERROR: NrrdImageIO(0x55d0c3a2): Write: ..." -> "Write: ..."
  if (d.rfind("ITK ERROR: ", 0) == 0) {
    auto close = d.find("): ");
    if (close != std::string::npos) d = d.substr(close + 3);
  }
  while (!d.empty() && (d.back() == ' ' || d.back() == ':')) d.pop_back();
  return d;
}

namespace {

// One redirection of the process's stderr shared by every live capture (threads read volumes in parallel):
// the first capture redirects it into a temporary file, the last one restores it. Each capture reads what
// was printed while it was alive (with several at once, it may include another thread's lines).
struct SharedCapture {
  std::mutex mu;
  int count = 0;
  int saved = -1;
  std::FILE* file = nullptr;
};
SharedCapture& shared_capture() {
  static SharedCapture c;
  return c;
}

}  // namespace

CapturedStderr::CapturedStderr() {
  auto& c = shared_capture();
  std::lock_guard<std::mutex> lock(c.mu);
  std::fflush(stderr);
  if (c.count == 0) {
    c.file = std::tmpfile();
    if (!c.file) return;
    c.saved = ::dup(STDERR_FILENO);
    if (c.saved < 0 || ::dup2(::fileno(c.file), STDERR_FILENO) < 0) {
      if (c.saved >= 0) ::close(c.saved);
      c.saved = -1;
      std::fclose(c.file);
      c.file = nullptr;
      return;
    }
  }
  ++c.count;
  active_ = true;
  start_ = ::lseek(::fileno(c.file), 0, SEEK_END);
}

void CapturedStderr::stop() {
  if (!active_) return;
  active_ = false;
  auto& c = shared_capture();
  std::lock_guard<std::mutex> lock(c.mu);
  std::fflush(stderr);
  const int fd = ::fileno(c.file);
  char buf[4096];
  off_t at = start_ < 0 ? 0 : start_;
  ssize_t n;
  while ((n = ::pread(fd, buf, sizeof buf, at)) > 0 && text_.size() < (1 << 20)) {
    text_.append(buf, static_cast<size_t>(n));
    at += n;
  }
  if (--c.count == 0) {
    ::dup2(c.saved, STDERR_FILENO);
    ::close(c.saved);
    c.saved = -1;
    std::fclose(c.file);
    c.file = nullptr;
  }
}

std::string CapturedStderr::text() {
  stop();
  return text_;
}

std::string CapturedStderr::first_line() {
  std::string t = text();
  auto b = t.find_first_not_of(" \n*");
  if (b == std::string::npos) return "";
  t = t.substr(b);
  return t.substr(0, t.find('\n'));
}

CapturedStderr::~CapturedStderr() { stop(); }

}  // namespace meddiff::io
