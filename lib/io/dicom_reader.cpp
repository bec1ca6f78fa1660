#include "core/error.h"
#include "core/fs.h"
#include "io/dicom_series.h"
#include "io/itk_image.h"

#include <gdcmAttribute.h>
#include <gdcmReader.h>
#include <gdcmScanner.h>
#include <itkGDCMImageIO.h>
#include <itkGDCMSeriesFileNames.h>
#include <itkImageSeriesReader.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>
#include <sstream>

namespace meddiff::io {
namespace {

const gdcm::Tag kSeriesUid(0x0020, 0x000e), kDescription(0x0008, 0x103e), kModality(0x0008, 0x0060),
    kPosition(0x0020, 0x0032), kOrientation(0x0020, 0x0037), kRows(0x0028, 0x0010), kColumns(0x0028, 0x0011),
    kPixelSpacing(0x0028, 0x0030);

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == ' ' || s.back() == '\0')) s.pop_back();
  size_t b = s.find_first_not_of(' ');
  return b == std::string::npos ? "" : s.substr(b);
}

std::vector<double> parse_multi(const char* value) {
  std::vector<double> out;
  if (!value) return out;
  std::stringstream ss(value);
  std::string item;
  while (std::getline(ss, item, '\\')) {
    try {
      out.push_back(std::stod(item));
    } catch (...) {
      return {};
    }
  }
  return out;
}

std::string value_of(const gdcm::Scanner& s, const std::string& file, const gdcm::Tag& t) {
  const char* v = s.GetValue(file.c_str(), t);
  return v ? trim(v) : "";
}

// Every regular file of `dir` (not recursive), checked to be safe to hand to GDCM.
std::vector<std::string> guarded_files(const std::filesystem::path& dir) {
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.is_regular_file()) files.push_back(e.path().string());
  std::sort(files.begin(), files.end());
  check_dicom_parsable(files);
  return files;
}

itk::GDCMSeriesFileNames::Pointer series_names(const std::filesystem::path& dir) {
  auto names = itk::GDCMSeriesFileNames::New();
  names->SetUseSeriesDetails(false);
  names->SetRecursive(false);
  names->SetDirectory(dir.string());
  return names;
}

// The value of a numeric attribute (US, IS) of `ds`, or `fallback` when absent or empty.
template <uint16_t G, uint16_t E>
int64_t attribute_value(const gdcm::DataSet& ds, int64_t fallback) {
  gdcm::Attribute<G, E> a;
  if (!ds.FindDataElement(a.GetTag()) || ds.GetDataElement(a.GetTag()).IsEmpty()) return fallback;
  a.SetFromDataElement(ds.GetDataElement(a.GetTag()));
  return static_cast<int64_t>(a.GetValue());
}

// Offset of the first pixel data byte in a DICOM file's bytes: the (7FE0,0010) element header whose
// length is `declared` (explicit VR OB/OW, or implicit VR; little or big endian); -1 if not found.
int64_t pixel_data_start(const std::string& bytes, uint32_t declared) {
  auto u32 = [&](size_t at, bool big) {
    uint32_t v = 0;
    for (size_t i = 0; i < 4; ++i) {
      uint32_t b = static_cast<unsigned char>(bytes[at + (big ? i : 3 - i)]);
      v = (v << 8) | b;
    }
    return v;
  };
  for (bool big : {false, true}) {
    const std::string tag = big ? std::string("\x7f\xe0\x00\x10", 4) : std::string("\xe0\x7f\x10\x00", 4);
    for (size_t at = bytes.find(tag); at != std::string::npos; at = bytes.find(tag, at + 1)) {
      bool explicit_vr = at + 12 <= bytes.size() && (bytes.compare(at + 4, 2, "OW") == 0 || bytes.compare(at + 4, 2, "OB") == 0);
      if (explicit_vr && u32(at + 8, big) == declared) return static_cast<int64_t>(at + 12);
      if (at + 8 <= bytes.size() && u32(at + 4, big) == declared) return static_cast<int64_t>(at + 8);
    }
  }
  return -1;
}

// GDCM, and ITK over it, read a slice file that ends early as zeros. Read each file whole here and
// check that its pixel data is all present.
void check_slice_complete(const std::string& file) {
  gdcm::Reader r;
  r.SetFileName(file.c_str());
  if (!r.Read()) fail("{}: truncated or corrupt DICOM file (cannot be read to its end)", file);
  const gdcm::DataSet& ds = r.GetFile().GetDataSet();
  const gdcm::Tag pixel_tag(0x7fe0, 0x0010);
  if (!ds.FindDataElement(pixel_tag)) fail("{}: DICOM file has no pixel data", file);
  const gdcm::DataElement& pixel = ds.GetDataElement(pixel_tag);
  const gdcm::ByteValue* bv = pixel.GetByteValue();
  if (!bv) {
    if (!pixel.GetSequenceOfFragments()) fail("{}: DICOM pixel data is empty", file);
    return;  // encapsulated (compressed): the reader above has read every fragment
  }
  int64_t rows = attribute_value<0x0028, 0x0010>(ds, 0), cols = attribute_value<0x0028, 0x0011>(ds, 0),
          bits = attribute_value<0x0028, 0x0100>(ds, 16), samples = attribute_value<0x0028, 0x0002>(ds, 1),
          frames = std::max<int64_t>(1, attribute_value<0x0028, 0x0008>(ds, 1));
  int64_t expected = rows * cols * samples * frames * ((bits + 7) / 8);
  int64_t declared = static_cast<int64_t>(bv->GetLength());
  if (declared < expected) fail("{}: truncated DICOM file: {} of {} pixel bytes present", file, declared, expected);
  // GDCM zero-fills pixel data cut short by the end of the file ("use file at own risk"): find the
  // element in the file's bytes and check that its declared length is there.
  std::string bytes = read_text(file);
  int64_t start = pixel_data_start(bytes, static_cast<uint32_t>(declared));
  int64_t present = start < 0 ? declared : std::max<int64_t>(0, static_cast<int64_t>(bytes.size()) - start);
  if (present < declared) fail("{}: truncated DICOM file: {} of {} pixel bytes present", file, present, declared);
}

}  // namespace

std::vector<DicomSeriesInfo> list_dicom_series(const std::filesystem::path& dir) {
  register_io_factories();
  if (!std::filesystem::is_directory(dir)) fail("{}: no such folder", dir.string());
  guarded_files(dir);
  auto names = series_names(dir);
  std::vector<DicomSeriesInfo> out;
  for (const auto& uid : names->GetSeriesUIDs()) {
    auto files = names->GetFileNames(uid);
    if (files.empty()) continue;
    gdcm::Scanner s;
    s.AddTag(kSeriesUid);
    s.AddTag(kDescription);
    s.AddTag(kModality);
    s.Scan({files.front()});
    DicomSeriesInfo info;
    info.series_uid = value_of(s, files.front(), kSeriesUid);
    if (info.series_uid.empty()) info.series_uid = trim(uid);
    info.description = value_of(s, files.front(), kDescription);
    info.modality = value_of(s, files.front(), kModality);
    info.files = files.size();
    out.push_back(info);
  }
  return out;
}

std::string dicom_folder_foreign_entry(const std::filesystem::path& dir) {
  register_io_factories();
  const gdcm::Tag manufacturer(0x0008, 0x0070);
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (!e.is_regular_file()) return fmt::format("'{}' (not a file)", e.path().filename().string());
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(dir)) files.push_back(e.path().string());
  std::sort(files.begin(), files.end());
  if (std::string bad = first_unparsable_dicom(files); !bad.empty())
    return fmt::format("'{}' (a corrupt DICOM file)", std::filesystem::path(bad).filename().string());
  if (files.empty()) return "";
  gdcm::Scanner s;
  s.AddTag(kSeriesUid);
  s.AddTag(manufacturer);
  s.Scan(files);
  std::set<std::string> series;
  for (const auto& f : files) {
    std::string name = std::filesystem::path(f).filename().string();
    if (!s.IsKey(f.c_str())) return fmt::format("'{}' (not a DICOM file)", name);
    if (value_of(s, f, manufacturer) != "meddiff") return fmt::format("'{}' (a DICOM file from another source)", name);
    series.insert(value_of(s, f, kSeriesUid));
  }
  if (series.size() > 1) return fmt::format("files of {} different DICOM series", series.size());
  return "";
}

Volume read_dicom_series(const std::filesystem::path& dir, const std::string& series_uid) {
  register_io_factories();
  const std::string name = dir.string();
  auto series = list_dicom_series(dir);  // checks first that GDCM can parse every file
  auto names = series_names(dir);
  if (series.empty()) fail("{}: no DICOM series in this folder", name);
  std::string uid;
  if (!series_uid.empty()) {
    for (const auto& s : series)
      if (s.series_uid == series_uid) uid = s.series_uid;
    if (uid.empty()) fail("{}: no series with UID {} (present: {})", name, series_uid,
                          fmt::join([&] {
                            std::vector<std::string> u;
                            for (const auto& s : series) u.push_back(s.series_uid);
                            return u;
                          }(), ", "));
  } else if (series.size() > 1) {
    std::vector<std::string> desc;
    for (const auto& s : series)
      desc.push_back(fmt::format("{} ({} {} files{})", s.series_uid, s.files, s.modality,
                                 s.description.empty() ? "" : ", '" + s.description + "'"));
    fail("{}: holds {} DICOM series; choose one with --series UID: {}", name, series.size(), fmt::join(desc, "; "));
  } else {
    uid = series.front().series_uid;
  }
  std::vector<std::string> files;
  for (const auto& id : names->GetSeriesUIDs())
    if (trim(id) == uid) files = names->GetFileNames(id);
  if (files.empty()) fail("{}: series {} has no readable files", name, uid);

  // Geometry and consistency from the headers.
  gdcm::Scanner s;
  for (const auto& t : {kPosition, kOrientation, kRows, kColumns, kPixelSpacing, kModality}) s.AddTag(t);
  if (!s.Scan(files)) fail("{}: cannot scan the DICOM headers", name);
  struct Slice {
    std::string file;
    std::vector<double> ipp;
    double along = 0;
  };
  std::vector<Slice> slices;
  auto first = files.front();
  auto iop = parse_multi(s.GetValue(first.c_str(), kOrientation));
  auto ps = parse_multi(s.GetValue(first.c_str(), kPixelSpacing));
  std::string rows = value_of(s, first, kRows), cols = value_of(s, first, kColumns);
  if (iop.size() != 6) fail("{}: no valid ImageOrientationPatient (0020,0037)", first);
  if (ps.size() != 2 || !(ps[0] > 0 && ps[1] > 0)) fail("{}: no valid PixelSpacing (0028,0030)", first);
  std::array<double, 3> rx{iop[0], iop[1], iop[2]}, cy{iop[3], iop[4], iop[5]};
  std::array<double, 3> nz{rx[1] * cy[2] - rx[2] * cy[1], rx[2] * cy[0] - rx[0] * cy[2], rx[0] * cy[1] - rx[1] * cy[0]};
  for (const auto& f : files) {
    auto ipp = parse_multi(s.GetValue(f.c_str(), kPosition));
    if (ipp.size() != 3) fail("{}: no valid ImagePositionPatient (0020,0032)", f);
    auto o = parse_multi(s.GetValue(f.c_str(), kOrientation));
    if (o.size() != 6) fail("{}: no valid ImageOrientationPatient (0020,0037)", f);
    for (int i = 0; i < 6; ++i)
      if (std::abs(o[static_cast<size_t>(i)] - iop[static_cast<size_t>(i)]) > 1e-4)
        fail("{}: inconsistent series: slice {} has another orientation than {}", name, f, first);
    if (value_of(s, f, kRows) != rows || value_of(s, f, kColumns) != cols)
      fail("{}: inconsistent series: slice {} is {}x{}, slice {} is {}x{}", name, f, value_of(s, f, kColumns),
           value_of(s, f, kRows), first, cols, rows);
    auto p = parse_multi(s.GetValue(f.c_str(), kPixelSpacing));
    if (p.size() != 2 || std::abs(p[0] - ps[0]) > 1e-4 || std::abs(p[1] - ps[1]) > 1e-4)
      fail("{}: inconsistent series: slice {} has another PixelSpacing than {}", name, f, first);
    slices.push_back({f, ipp, ipp[0] * nz[0] + ipp[1] * nz[1] + ipp[2] * nz[2]});
  }
  if (slices.size() < 2) fail("{}: series {} has a single slice (a 2-D image); meddiff reads 3-D volumes", name, uid);
  std::sort(slices.begin(), slices.end(), [](const Slice& a, const Slice& b) { return a.along < b.along; });
  std::vector<double> gaps;
  for (size_t i = 1; i < slices.size(); ++i) {
    double g = slices[i].along - slices[i - 1].along;
    if (g < 1e-4) fail("{}: inconsistent series: slices {} and {} share a position", name, slices[i - 1].file, slices[i].file);
    gaps.push_back(g);
  }
  double mean_gap = std::accumulate(gaps.begin(), gaps.end(), 0.0) / static_cast<double>(gaps.size());
  for (size_t i = 0; i < gaps.size(); ++i)
    if (std::abs(gaps[i] - mean_gap) > 0.01 * mean_gap + 1e-3)
      fail("{}: inconsistent series: slice spacing varies ({} mm before {}, mean {} mm); missing slices?", name,
           gaps[i], slices[i + 1].file, mean_gap);
  // Slices must stack along the normal (no gantry tilt / shear).
  for (const auto& sl : slices) {
    double off[3];
    for (int a = 0; a < 3; ++a) off[a] = sl.ipp[static_cast<size_t>(a)] - slices.front().ipp[static_cast<size_t>(a)] - (sl.along - slices.front().along) * nz[static_cast<size_t>(a)];
    if (std::sqrt(off[0] * off[0] + off[1] * off[1] + off[2] * off[2]) > 0.01 * mean_gap + 1e-3)
      fail("{}: slice {} is not stacked along the slice normal (tilted or sheared series)", name, sl.file);
  }

  std::vector<std::string> ordered;
  for (const auto& sl : slices) {
    check_slice_complete(sl.file);
    ordered.push_back(sl.file);
  }
  auto reader = itk::ImageSeriesReader<FloatImage3>::New();
  auto gdcm_io = itk::GDCMImageIO::New();
  reader->SetImageIO(gdcm_io);
  reader->SetFileNames(ordered);
  CapturedStderr quiet;
  try {
    reader->Update();
  } catch (const std::exception& e) {
    fail("{}: cannot read series {}: {}", name, uid, itk_message(e));
  }
  Volume v;
  v.image = tensor_from_itk<float>(reader->GetOutput());
  v.geometry.spacing = {ps[1], ps[0], mean_gap};  // PixelSpacing is (between rows, between columns)
  v.geometry.origin = {slices.front().ipp[0], slices.front().ipp[1], slices.front().ipp[2]};
  v.geometry.direction = {rx[0], cy[0], nz[0], rx[1], cy[1], nz[1], rx[2], cy[2], nz[2]};
  std::string mod = value_of(s, first, kModality);
  v.modality = mod == "CT" ? Modality::CT : mod == "MR" ? Modality::MR : Modality::Unknown;
  return v;
}

}  // namespace meddiff::io
