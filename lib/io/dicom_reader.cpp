#include "core/error.h"
#include "io/dicom_series.h"
#include "io/itk_image.h"

#include <gdcmScanner.h>
#include <itkGDCMImageIO.h>
#include <itkGDCMSeriesFileNames.h>
#include <itkImageSeriesReader.h>

#include <algorithm>
#include <cmath>
#include <numeric>
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

itk::GDCMSeriesFileNames::Pointer series_names(const std::filesystem::path& dir) {
  auto names = itk::GDCMSeriesFileNames::New();
  names->SetUseSeriesDetails(false);
  names->SetRecursive(false);
  names->SetDirectory(dir.string());
  return names;
}

}  // namespace

std::vector<DicomSeriesInfo> list_dicom_series(const std::filesystem::path& dir) {
  if (!std::filesystem::is_directory(dir)) fail("{}: no such folder", dir.string());
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

Volume read_dicom_series(const std::filesystem::path& dir, const std::string& series_uid) {
  register_io_factories();
  const std::string name = dir.string();
  auto names = series_names(dir);
  auto series = list_dicom_series(dir);
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
  for (const auto& sl : slices) ordered.push_back(sl.file);
  auto reader = itk::ImageSeriesReader<FloatImage3>::New();
  auto gdcm_io = itk::GDCMImageIO::New();
  reader->SetImageIO(gdcm_io);
  reader->SetFileNames(ordered);
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
