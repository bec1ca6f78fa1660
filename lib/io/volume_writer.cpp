#include "io/volume_writer.h"

#include "core/error.h"
#include "core/fs.h"
#include "core/output_policy.h"
#include "io/itk_image.h"
#include "io/payload_scan.h"
#include "io/volume_reader.h"

#include <itkImageFileWriter.h>
#include <itkImageIOBase.h>
#include <itkImageIOFactory.h>
#include <zlib.h>

#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <fstream>

namespace meddiff::io {
namespace {

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t at = s.find(from); !from.empty() && at != std::string::npos; at = s.find(from, at + to.size()))
    s.replace(at, from.size(), to);
  return s;
}

// The written file holds what was meant: a readable header with the intended size, and every
// voxel byte (a full disk truncates files silently under ITK's writers).
// dims: the sizes along x, y, z (and the 4th axis of a 4-D image)
void verify_written(const std::filesystem::path& tmp, const std::filesystem::path& target, const std::vector<int64_t>& dims) {
  try {
    require_complete(scan_payload(tmp), tmp.string());
    auto imageio = itk::ImageIOFactory::CreateImageIO(tmp.c_str(), itk::IOFileModeEnum::ReadMode);
    if (!imageio) fail("unreadable header");
    imageio->SetFileName(tmp.string());
    imageio->ReadImageInformation();
    if (imageio->GetNumberOfDimensions() < dims.size()) fail("the header has fewer dimensions");
    for (unsigned a = 0; a < dims.size(); ++a)
      if (static_cast<int64_t>(imageio->GetDimensions(a)) != dims[a]) fail("the header has another size");
  } catch (const std::exception& e) {
    std::string why = replace_all(replace_all(itk_message(e), tmp.string() + ": ", ""), tmp.string(), target.string());
    fail("{}: write failed, the file came out incomplete ({}); is the disk full?", target.string(), why);
  }
}

// .mhd and .nhdr name a separate data file after the header: both are written into a temporary
// folder beside the target under their final names, checked, then moved in (data first, header last).
void move_detached_into_place(const std::filesystem::path& tmp_dir, const std::filesystem::path& target, bool overwrite) {
  namespace fs = std::filesystem;
  fs::path parent = target.parent_path().empty() ? fs::path(".") : target.parent_path();
  std::vector<fs::path> data_files;
  for (const auto& e : fs::directory_iterator(tmp_dir))
    if (e.path().filename() != target.filename()) data_files.push_back(e.path());
  for (const auto& f : data_files) check_volume_output(parent / f.filename(), {}, overwrite);
  sync_path(tmp_dir);
  for (const auto& f : data_files) fs::rename(f, parent / f.filename());
  fs::rename(tmp_dir / target.filename(), target);
  sync_path(parent);
}

// ITK's NIfTI writer leaves the header's `descrip` (80 bytes at offset 148) empty: set it here.
void set_nifti_descrip(const std::filesystem::path& nii, const std::string& text, const std::filesystem::path& target) {
  char field[80] = {0};
  std::memcpy(field, text.data(), std::min<size_t>(79, text.size()));
  int fd = ::open(nii.c_str(), O_WRONLY | O_CLOEXEC);
  bool ok = fd >= 0 && ::pwrite(fd, field, sizeof field, 148) == static_cast<ssize_t>(sizeof field);
  if (fd >= 0) ::close(fd);
  if (!ok) fail("{}: write failed: cannot set the NIfTI description", target.string());
}

// gzip `from` into `to` with checked writes (gzwrite reports a full disk).
void gzip_file(const std::filesystem::path& from, const std::filesystem::path& to, const std::filesystem::path& target) {
  std::ifstream in(from, std::ios::binary);
  gzFile out = gzopen(to.c_str(), "wb6");
  if (!in || !out) {
    if (out) gzclose(out);
    fail("{}: write failed: cannot open for compression", target.string());
  }
  std::vector<char> buf(1 << 20);
  bool ok = true;
  while (ok && in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    auto n = static_cast<unsigned>(in.gcount());
    if (n > 0) ok = gzwrite(out, buf.data(), n) == static_cast<int>(n);
  }
  ok = gzclose(out) == Z_OK && ok && !in.bad();
  if (!ok) fail("{}: write failed: compression output incomplete; is the disk full?", target.string());
}

// Writes an ITK image (3-D, or 4-D for channels) with sizes `dims` (x, y, z[, channel]).
template <typename TImage>
void write_itk_image(const typename TImage::Pointer& image, const std::vector<int64_t>& dims, const std::filesystem::path& target,
                     const WriteOptions& o) {
  register_io_factories();
  check_volume_output(target, {}, o.overwrite);
  auto write_to = [&](const std::filesystem::path& file) {
    auto writer = itk::ImageFileWriter<TImage>::New();
    writer->SetFileName(file.string());
    writer->SetInput(image);
    writer->SetUseCompression(true);
    CapturedStderr quiet;  // the C writers print failures; meddiff reports them in one line
    try {
      writer->Update();
    } catch (const std::exception& e) {
      fail("{}: write failed ({}); is the disk full?", target.string(), replace_all(itk_message(e), file.string(), target.string()));
    }
  };
  const std::string ext = full_extension(target);
  if ((ext == "nii" || ext == "nii.gz") && !o.description.empty()) {
    write_atomically(
        target,
        [&](const std::filesystem::path& file) {
          if (ext == "nii") {
            write_to(file);
            set_nifti_descrip(file, o.description, target);
            return;
          }
          TempPath plain(target.parent_path() / (target.filename().string() + ".nii"));
          write_to(plain.path());
          set_nifti_descrip(plain.path(), o.description, target);
          gzip_file(plain.path(), file, target);
        },
        [&](const std::filesystem::path& tmp) { verify_written(tmp, target, dims); });
    return;
  }
  if (ext == "mhd" || ext == "nhdr") {
    if (target.has_parent_path()) std::filesystem::create_directories(target.parent_path());
    TempPath tmp_dir(target);
    std::filesystem::create_directories(tmp_dir.path());
    std::filesystem::path inner = tmp_dir.path() / target.filename();
    write_to(inner);
    verify_written(inner, target, dims);
    move_detached_into_place(tmp_dir.path(), target, o.overwrite);
    return;
  }
  write_atomically(target, write_to, [&](const std::filesystem::path& tmp) { verify_written(tmp, target, dims); });
}

template <typename TPixel>
void write_itk(const torch::Tensor& t, const Geometry& g, const std::filesystem::path& target, const WriteOptions& o) {
  write_itk_image<itk::Image<TPixel, 3>>(itk_from_tensor<TPixel>(t, g), {t.size(2), t.size(1), t.size(0)}, target, o);
}

bool fits_int16(const torch::Tensor& t) {
  return (t == t.round()).all().item<bool>() && t.min().item<double>() >= -32768 && t.max().item<double>() <= 32767;
}

}  // namespace

void check_volume_output(const std::filesystem::path& out, const std::vector<std::filesystem::path>& inputs, bool force) {
  OutputRules rules;
  rules.inputs = inputs;
  rules.force = force;
  if (format_of(out) == Format::DicomSeries) {
    rules.folder = true;
    rules.foreign_entry = dicom_folder_foreign_entry;
    rules.owned_what = "a DICOM series written by meddiff";
  }
  check_output(out, rules);
}

void write_volume(const Volume& v, const std::filesystem::path& path, const WriteOptions& options) {
  check_volume_tensor(v.image, "volume to write to " + path.string());
  check_geometry(v.geometry, "volume to write to " + path.string());
  if (format_of(path) == Format::DicomSeries) {
    write_dicom_series(v, path, options.dicom, options.overwrite);
    return;
  }
  if (fits_int16(v.image)) write_itk<int16_t>(v.image, v.geometry, path, options);
  else write_itk<float>(v.image, v.geometry, path, options);
}

void write_volume_4d(const std::vector<Volume>& channels, const std::filesystem::path& path, const WriteOptions& options) {
  if (channels.empty()) fail("{}: no channel to write", path.string());
  const std::string ext = full_extension(path);
  if (ext != "nii" && ext != "nii.gz" && ext != "nrrd" && ext != "mha")
    fail("{}: a 4-D volume is written as NIfTI, NRRD or MHA", path.string());
  std::vector<torch::Tensor> images;
  for (size_t c = 0; c < channels.size(); ++c) {
    const auto& v = channels[c];
    check_volume_tensor(v.image, "volume to write to " + path.string());
    check_geometry(v.geometry, "volume to write to " + path.string());
    if (c > 0 && (v.image.sizes() != channels[0].image.sizes() || !v.geometry.approx_equal(channels[0].geometry)))
      fail("{}: channel {} is not on the grid of channel 0", path.string(), c);
    images.push_back(v.image);
  }
  auto t = torch::stack(images);  // [C, D, H, W]
  const auto& g = channels[0].geometry;
  const std::vector<int64_t> dims{t.size(3), t.size(2), t.size(1), t.size(0)};
  if (fits_int16(t)) write_itk_image<itk::Image<int16_t, 4>>(itk4_from_tensor<int16_t>(t, g), dims, path, options);
  else write_itk_image<itk::Image<float, 4>>(itk4_from_tensor<float>(t, g), dims, path, options);
}

void write_label_map(const torch::Tensor& label, const Geometry& g, const std::filesystem::path& path,
                     const WriteOptions& options) {
  if (format_of(path) == Format::DicomSeries) fail("{}: label maps are written as NIfTI, NRRD or MHA", path.string());
  if (label.min().item<int64_t>() < 0 || label.max().item<int64_t>() > 255)
    fail("{}: label values must be within 0..255", path.string());
  write_itk<uint8_t>(label, g, path, options);
}

}  // namespace meddiff::io
