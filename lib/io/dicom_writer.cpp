#include "core/error.h"
#include "core/fs.h"
#include "core/log.h"
#include "core/version.h"
#include "io/dicom_series.h"
#include "io/itk_image.h"
#include "io/volume_writer.h"

#include <gdcmAttribute.h>
#include <gdcmDataElement.h>
#include <gdcmDataSet.h>
#include <gdcmDicts.h>
#include <gdcmFile.h>
#include <gdcmFileMetaInformation.h>
#include <gdcmGlobal.h>
#include <gdcmTransferSyntax.h>
#include <gdcmWriter.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <sstream>

namespace meddiff::io {
namespace {

constexpr const char* kCtImageStorage = "1.2.840.10008.5.1.4.1.1.2";
constexpr const char* kMrImageStorage = "1.2.840.10008.5.1.4.1.1.4";

// A text attribute with the VR of the DICOM dictionary, padded to even length (UI with NUL, others
// with a space); an empty value is written with length 0 (DICOM type 2).
void set(gdcm::DataSet& ds, uint16_t group, uint16_t element, std::string value) {
  gdcm::Tag tag(group, element);
  gdcm::VR vr = gdcm::Global::GetInstance().GetDicts().GetDictEntry(tag).GetVR();
  if (value.size() % 2) value.push_back(vr == gdcm::VR::UI ? '\0' : ' ');
  gdcm::DataElement de(tag);
  de.SetVR(vr);
  de.SetByteValue(value.data(), static_cast<uint32_t>(value.size()));
  ds.Replace(de);
}

template <uint16_t G, uint16_t E>
void set_us(gdcm::DataSet& ds, uint16_t value) {
  gdcm::Attribute<G, E> a;
  a.SetValue(value);
  ds.Replace(a.GetAsDataElement());
}

bool has_non_ascii(const std::string& s) {
  return std::any_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) >= 0x80; });
}

// At most `n` characters of UTF-8 text, never cutting a character (DICOM lengths count characters).
std::string utf8_prefix(const std::string& s, size_t n) {
  size_t i = 0, chars = 0;
  while (i < s.size() && chars < n) {
    const auto c = static_cast<unsigned char>(s[i]);
    const size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 1;
    if (i + len > s.size()) break;
    i += len;
    ++chars;
  }
  return s.substr(0, i);
}

std::string ds_list(std::initializer_list<double> values) {
  std::string out;
  for (double v : values) out += (out.empty() ? "" : "\\") + format_ds(v);
  return out;
}

// A right-handed slice stack: DICOM readers order slices along row x column, so a volume whose
// third direction column points the other way is written with its slices reversed.
Volume right_handed(const Volume& v) {
  const auto& d = v.geometry.direction;
  double det = d[0] * (d[4] * d[8] - d[5] * d[7]) - d[1] * (d[3] * d[8] - d[5] * d[6]) + d[2] * (d[3] * d[7] - d[4] * d[6]);
  if (det > 0) return v;
  Volume out = v;
  out.image = v.image.flip({0}).contiguous();
  out.geometry.origin = v.geometry.index_to_world(0, 0, static_cast<double>(v.depth() - 1));
  for (int r = 0; r < 3; ++r) out.geometry.direction[static_cast<size_t>(3 * r + 2)] *= -1;
  return out;
}

struct Pixels {
  torch::Tensor values;  // integers to store
  bool is_signed = true;
};

Pixels to_stored_pixels(const Volume& v, const std::filesystem::path& dir) {
  auto x = v.image.to(torch::kDouble);
  bool integral = (x == x.round()).all().item<bool>();
  double lo = x.min().item<double>(), hi = x.max().item<double>();
  if (v.modality == Modality::CT) {
    if (!integral) log_warn("{}: CT values are rounded to integer HU", dir.string());
    if (lo < -32768 || hi > 32767) log_warn("{}: CT values outside int16 are clipped", dir.string());
    return {x.round().clamp(-32768, 32767), true};
  }
  if (integral && lo >= 0 && hi <= 65535) return {x, false};
  if (integral && lo >= -32768 && hi <= 32767) return {x, true};
  // Non-integer MR intensities (e.g. a normalised NIfTI): map linearly to 0..4095; DICOM MR Image
  // Storage without a rescale cannot hold them otherwise.
  log_warn("{}: MR intensities [{}, {}] are not integers; written scaled to 0..4095", dir.string(), lo, hi);
  double scale = hi > lo ? 4095.0 / (hi - lo) : 0.0;
  return {((x - lo) * scale).round(), false};
}

// One file per slice, encoded in memory by GDCM and written with checked, synced writes (a full disk
// is an error, never a short file). Every attribute is set here: nothing is copied from a source.
template <typename TPixel>
void write_slices(const Volume& v, const torch::Tensor& values, const std::filesystem::path& tmp_dir,
                  const std::filesystem::path& target, const DicomWriteOptions& o) {
  const bool ct = v.modality == Modality::CT;
  const auto& g = v.geometry;
  const int64_t n = v.depth(), rows = v.height(), cols = v.width();
  if (rows > 65535 || cols > 65535) fail("{}: slices of {}x{} do not fit DICOM's 16-bit Rows/Columns", target.string(), cols, rows);
  std::string study_uid = o.study_uid.empty() ? new_uid() : o.study_uid, series_uid = new_uid(),
              frame_uid = o.frame_uid.empty() ? new_uid() : o.frame_uid;
  auto now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&now, &tm);
  char date[16], time[16];
  std::strftime(date, sizeof date, "%Y%m%d", &tm);
  std::strftime(time, sizeof time, "%H%M%S", &tm);
  std::string description = !o.series_description.empty() ? o.series_description
                            : o.synthetic ? "meddiff synthetic" : "converted by meddiff";
  std::string comments = !o.image_comments.empty() ? o.image_comments
                         : o.synthetic ? "SYNTHETIC image generated by meddiff; no patient data"
                                       : "converted by meddiff; patient identity not copied";
  std::string patient_name = !o.patient_name.empty() ? o.patient_name : o.synthetic ? "SYNTHETIC^MEDDIFF" : "ANONYMOUS^MEDDIFF";
  std::string patient_id = !o.patient_id.empty() ? o.patient_id : "MEDDIFF-" + study_uid.substr(study_uid.size() - 8);
  std::string body = !o.body_part.empty() ? o.body_part : ct ? "CHEST" : "HEAD";
  auto typed = values.to(std::is_signed_v<TPixel> ? torch::kInt16 : torch::kInt32).contiguous();  // [D, H, W]
  double lo = values.min().item<double>(), hi = values.max().item<double>();

  // The attributes every slice shares.
  gdcm::DataSet common;
  set(common, 0x0008, 0x0016, ct ? kCtImageStorage : kMrImageStorage);
  // Text beyond ASCII (label names, descriptions in other languages) is UTF-8: say so, or readers take
  // the default repertoire (ASCII) and show it garbled.
  if (has_non_ascii(description + comments + patient_name + patient_id + body)) set(common, 0x0008, 0x0005, "ISO_IR 192");
  set(common, 0x0008, 0x0008, !o.image_type.empty() ? o.image_type : ct ? "DERIVED\\SECONDARY\\AXIAL" : "DERIVED\\SECONDARY\\OTHER");
  for (uint16_t e : {0x0020, 0x0021, 0x0023}) set(common, 0x0008, e, date);
  for (uint16_t e : {0x0030, 0x0031, 0x0033}) set(common, 0x0008, e, time);
  set(common, 0x0008, 0x0050, "");
  set(common, 0x0008, 0x0060, ct ? "CT" : "MR");
  set(common, 0x0008, 0x0070, "meddiff");
  set(common, 0x0008, 0x1090, "meddiff " + version());
  set(common, 0x0008, 0x0090, "");
  set(common, 0x0008, 0x1030, o.synthetic ? "SYNTHETIC" : "meddiff");
  set(common, 0x0008, 0x103e, utf8_prefix(description, 64));
  set(common, 0x0008, 0x2111, (o.synthetic ? "synthetic volume generated by meddiff " : "converted by meddiff ") + version());
  set(common, 0x0010, 0x0010, patient_name);
  set(common, 0x0010, 0x0020, patient_id);
  set(common, 0x0010, 0x0030, "");
  set(common, 0x0010, 0x0040, "O");
  set(common, 0x0018, 0x0015, body);
  // SliceThickness and SpacingBetweenSlices: the distance between slice centres, for CT and MR alike.
  set(common, 0x0018, 0x0050, format_ds(g.spacing[2]));
  set(common, 0x0018, 0x0088, format_ds(g.spacing[2]));
  set(common, 0x0018, 0x5100, "HFS");
  if (ct) {
    set(common, 0x0018, 0x0060, "");
    set(common, 0x0028, 0x1052, "0");
    set(common, 0x0028, 0x1053, "1");
    set(common, 0x0028, 0x1054, "HU");
    set(common, 0x0028, 0x1050, "40");
    set(common, 0x0028, 0x1051, "400");
  } else {
    set(common, 0x0018, 0x0020, "RM");    // ScanningSequence: research mode
    set(common, 0x0018, 0x0021, "NONE");  // SequenceVariant
    set(common, 0x0018, 0x0022, "");
    set(common, 0x0018, 0x0023, "3D");
    set(common, 0x0018, 0x0080, "");
    set(common, 0x0018, 0x0081, "");
    set(common, 0x0018, 0x0091, "");
    set(common, 0x0028, 0x1050, format_ds(0.5 * (lo + hi)));
    set(common, 0x0028, 0x1051, format_ds(std::max(1.0, hi - lo)));
  }
  set_us<0x0028, 0x0002>(common, 1);
  set(common, 0x0028, 0x0004, "MONOCHROME2");
  set_us<0x0028, 0x0010>(common, static_cast<uint16_t>(rows));
  set_us<0x0028, 0x0011>(common, static_cast<uint16_t>(cols));
  set(common, 0x0028, 0x0030, ds_list({g.spacing[1], g.spacing[0]}));  // between rows, between columns
  set_us<0x0028, 0x0100>(common, 16);
  set_us<0x0028, 0x0101>(common, 16);
  set_us<0x0028, 0x0102>(common, 15);
  set_us<0x0028, 0x0103>(common, std::is_signed_v<TPixel> ? 1 : 0);
  set(common, 0x0020, 0x000d, study_uid);
  set(common, 0x0020, 0x000e, series_uid);
  set(common, 0x0020, 0x0052, frame_uid);
  set(common, 0x0020, 0x0010, "1");
  set(common, 0x0020, 0x0011, std::to_string(o.series_number));
  set(common, 0x0020, 0x0012, "1");
  set(common, 0x0020, 0x1040, "");
  set(common, 0x0020, 0x0037, ds_list({g.dir(0, 0), g.dir(1, 0), g.dir(2, 0), g.dir(0, 1), g.dir(1, 1), g.dir(2, 1)}));
  set(common, 0x0020, 0x4000, utf8_prefix(comments, 10240));

  std::vector<TPixel> pixels(static_cast<size_t>(rows * cols));
  for (int64_t k = 0; k < n; ++k) {
    gdcm::Writer writer;
    gdcm::File& file = writer.GetFile();
    gdcm::DataSet ds = common;
    std::string sop_uid = new_uid();
    set(ds, 0x0008, 0x0018, sop_uid);
    set(ds, 0x0020, 0x0013, std::to_string(k + 1));
    auto p = g.index_to_world(0, 0, static_cast<double>(k));
    set(ds, 0x0020, 0x0032, ds_list({p[0], p[1], p[2]}));
    set(ds, 0x0020, 0x1041, format_ds(p[0] * g.dir(0, 2) + p[1] * g.dir(1, 2) + p[2] * g.dir(2, 2)));
    auto slice = typed[k];
    if constexpr (std::is_signed_v<TPixel>) {
      std::memcpy(pixels.data(), slice.template data_ptr<int16_t>(), pixels.size() * sizeof(TPixel));
    } else {
      const int32_t* src = slice.template data_ptr<int32_t>();
      for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<TPixel>(src[i]);
    }
    gdcm::DataElement px(gdcm::Tag(0x7fe0, 0x0010));
    px.SetVR(gdcm::VR::OW);
    px.SetByteValue(reinterpret_cast<const char*>(pixels.data()), static_cast<uint32_t>(pixels.size() * sizeof(TPixel)));
    ds.Replace(px);
    file.SetDataSet(ds);
    file.GetHeader().SetDataSetTransferSyntax(gdcm::TransferSyntax::ExplicitVRLittleEndian);
    std::ostringstream bytes;
    writer.SetStream(bytes);
    if (!writer.Write()) fail("{}: cannot encode DICOM slice {}", target.string(), k + 1);
    auto name = tmp_dir / fmt::format("IM{:06d}.dcm", k + 1);
    write_file_checked(name, bytes.str(), fmt::format("{} (slice {} of {})", target.string(), k + 1, n));
  }
}

}  // namespace

void write_dicom_series(const Volume& input, const std::filesystem::path& dir, const DicomWriteOptions& options,
                        bool overwrite) {
  register_io_factories();
  if (input.modality == Modality::Unknown)
    fail("{}: the modality (ct or mr) is needed to write DICOM", dir.string());
  std::filesystem::path target = dir;
  if (target.filename().empty()) target = target.parent_path();  // "out/" -> "out"
  check_volume_output(target, {}, overwrite);
  if (target.has_parent_path()) std::filesystem::create_directories(target.parent_path());
  Volume v = right_handed(input);
  Pixels px = to_stored_pixels(v, target);
  TempPath tmp(target);
  std::filesystem::create_directories(tmp.path());
  if (px.is_signed) write_slices<int16_t>(v, px.values, tmp.path(), target, options);
  else write_slices<uint16_t>(v, px.values, tmp.path(), target, options);
  tmp.commit();  // replaces a series meddiff wrote before (checked above)
}

}  // namespace meddiff::io
