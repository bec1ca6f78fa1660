#include "io/volume_reader.h"

#include "core/error.h"
#include "core/fs.h"
#include "core/log.h"
#include "data/manifest.h"
#include "io/dicom_series.h"
#include "io/itk_image.h"
#include "io/payload_scan.h"

#include <itkExtractImageFilter.h>
#include <itkImageFileReader.h>
#include <itkImageIOFactory.h>

namespace meddiff::io {

std::string to_string(Format f) {
  switch (f) {
    case Format::Nifti: return "NIfTI";
    case Format::Nrrd: return "NRRD";
    case Format::Meta: return "MetaImage";
    default: return "DICOM series";
  }
}

Format format_of(const std::filesystem::path& path) {
  std::string ext = full_extension(path);
  if (ext == "nii" || ext == "nii.gz") return Format::Nifti;
  if (ext == "nrrd" || ext == "nhdr") return Format::Nrrd;
  if (ext == "mha" || ext == "mhd") return Format::Meta;
  return Format::DicomSeries;
}

Modality guess_modality(const torch::Tensor& image) {
  return image.min().item<double>() <= -500.0 ? Modality::CT : Modality::MR;
}

namespace {

// Header checks before any voxel is read: exists, readable, scalar, 3-D (4-D with at least component + 1
// components along the 4th axis when a component is asked for).
void check_header(const std::filesystem::path& path, int64_t component = -1) {
  const std::string name = path.string();
  if (!std::filesystem::exists(path)) fail("{}: no such file", name);
  if (!std::filesystem::is_regular_file(path)) fail("{}: not a regular file", name);
  // meddiff's own parse of the header and count of the voxel bytes (ITK's readers zero-fill missing
  // bytes, NIfTI's replaces NaN/Inf by 0 and pixdim 0 by 1): first, so its errors are the precise ones.
  PayloadScan payload = scan_payload(path);
  CapturedStderr quiet;
  auto imageio = itk::ImageIOFactory::CreateImageIO(name.c_str(), itk::IOFileModeEnum::ReadMode);
  if (!imageio) fail("{}: not a readable {} image (corrupt or wrong format)", name, to_string(format_of(path)));
  try {
    imageio->SetFileName(name);
    imageio->ReadImageInformation();
  } catch (const std::exception& e) {
    fail("{}: cannot read header: {}", name, itk_message(e));
  }
  unsigned dims = imageio->GetNumberOfDimensions();
  std::vector<size_t> size;
  for (unsigned d = 0; d < dims; ++d) size.push_back(imageio->GetDimensions(d));
  std::string shape = fmt::format("{}", fmt::join(size, "x"));
  if (component >= 0) {
    if (dims != 4 || static_cast<int64_t>(size[3]) <= component)
      fail("{}: has no channel {} along a 4th axis (size {}); the manifest names component {} of it", name, component, shape, component);
  } else {
    for (unsigned d = 3; d < dims; ++d)
      if (size[d] > 1)
        fail("{}: is a {}-D image (size {}); meddiff reads 3-D volumes (a 4-D file's channels: index it as an MSD dataset or "
             "name its components in a JSON manifest)", name, dims, shape);
  }
  if (dims < 3 || size[2] <= 1) fail("{}: is a 2-D image (size {}); meddiff reads 3-D volumes", name, shape);
  if (imageio->GetNumberOfComponents() != 1)
    fail("{}: has {} components per voxel; meddiff reads scalar (grey-level) volumes", name,
         imageio->GetNumberOfComponents());
  require_complete(payload, name);
}

FloatImage3::Pointer read_itk_file(const std::filesystem::path& path) {
  register_io_factories();
  check_header(path);
  auto reader = itk::ImageFileReader<FloatImage3>::New();
  reader->SetFileName(path.string());
  CapturedStderr quiet;  // C readers print their complaints; meddiff reports one line
  try {
    reader->Update();
  } catch (const std::exception& e) {
    fail("{}: cannot read voxels: {}", path.string(), itk_message(e));
  }
  return reader->GetOutput();
}

// Component `component` of a 4-D file: the 3-D volume at that index of the 4th axis, with the geometry of the
// first three axes.
Volume read_component(const std::filesystem::path& path, int64_t component) {
  register_io_factories();
  check_header(path, component);
  using Image4 = itk::Image<float, 4>;
  auto reader = itk::ImageFileReader<Image4>::New();
  reader->SetFileName(path.string());
  CapturedStderr quiet;
  try {
    reader->Update();
  } catch (const std::exception& e) {
    fail("{}: cannot read voxels: {}", path.string(), itk_message(e));
  }
  // the 3-D image at index `component` of the 4th axis (its geometry: the 4-D one's first three axes)
  auto region = reader->GetOutput()->GetLargestPossibleRegion();
  region.SetSize(3, 0);
  region.SetIndex(3, component);
  auto extract = itk::ExtractImageFilter<Image4, FloatImage3>::New();
  extract->SetInput(reader->GetOutput());
  extract->SetExtractionRegion(region);
  extract->SetDirectionCollapseToSubmatrix();
  extract->Update();
  Volume v;
  v.image = tensor_from_itk<float>(extract->GetOutput());
  v.geometry = geometry_of(extract->GetOutput());
  return v;
}

}  // namespace

Volume read_volume(const std::filesystem::path& path, const ReadOptions& options) {
  register_io_factories();
  Volume v;
  std::string name = path.string();
  Format f = format_of(path);
  if (f == Format::DicomSeries) {
    if (!std::filesystem::exists(path)) fail("{}: no such file or folder", name);
    if (!std::filesystem::is_directory(path))
      fail("{}: not a known image format (nii, nii.gz, nrrd, nhdr, mha, mhd) nor a DICOM series folder", name);
    v = read_dicom_series(path, options.series_uid);
  } else if (options.component >= 0) {
    v = read_component(path, options.component);
  } else {
    auto image = read_itk_file(path);
    v.image = tensor_from_itk<float>(image.GetPointer());
    v.geometry = geometry_of(image.GetPointer());
  }
  check_volume_tensor(v.image, name);
  check_geometry(v.geometry, name);
  if (options.modality != Modality::Unknown) v.modality = options.modality;
  if (v.modality == Modality::Unknown) {
    v.modality = guess_modality(v.image);
    log_debug("{}: modality not given, guessed {} from the intensities", name, to_string(v.modality));
  }
  return v;
}

Volume read_channel(const ChannelFile& channel, const ReadOptions& options) {
  ReadOptions o = options;
  o.component = channel.component;
  if (!channel.series_uid.empty()) o.series_uid = channel.series_uid;
  return read_volume(channel.path, o);
}

torch::Tensor read_label_map(const std::filesystem::path& path, const Volume& like) {
  auto image = read_itk_file(path);
  auto t = tensor_from_itk<float>(image.GetPointer());
  check_volume_tensor(t, path.string());
  if (t.sizes() != like.image.sizes())
    fail("{}: label map size {} differs from the image's {}", path.string(), fmt::join(t.sizes(), "x"),
         fmt::join(like.image.sizes(), "x"));
  if (!geometry_of(image.GetPointer()).approx_equal(like.geometry, 1e-3))
    fail("{}: label map geometry (spacing, origin or direction) differs from the image's", path.string());
  if (!(t == t.round()).all().item<bool>()) fail("{}: label map has non-integer values", path.string());
  return t.to(torch::kLong);
}

}  // namespace meddiff::io
