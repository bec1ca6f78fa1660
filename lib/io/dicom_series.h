#pragma once
// DICOM series in and out (GDCM through ITK).
//   Read: one series of a folder, chosen by Series Instance UID when several are present; slices
//   ordered by position; inconsistent series (mixed sizes or orientations, repeated or unevenly
//   spaced positions) are rejected.
//   Write: one file per slice, CT Image Storage (int16 HU, rescale 1/0, type HU) or MR Image Storage
//   (integers, no rescale); fresh Study/Series/Frame-of-Reference UIDs and a SOP Instance UID per
//   slice; geometry per slice; patient and study identity synthetic, never copied from a source.
#include "data/volume.h"

#include <filesystem>
#include <string>
#include <vector>

namespace meddiff::io {

struct DicomSeriesInfo {
  std::string series_uid;
  std::string description;
  std::string modality;
  size_t files = 0;
};
// Every series in `dir` (not recursive).
std::vector<DicomSeriesInfo> list_dicom_series(const std::filesystem::path& dir);

Volume read_dicom_series(const std::filesystem::path& dir, const std::string& series_uid = "");

struct DicomWriteOptions {
  bool synthetic = false;              // a generated volume: ImageType DERIVED\SECONDARY and a comment saying so
  std::string series_description;      // default: "meddiff synthetic" / "converted by meddiff"
  std::string image_comments;          // e.g. "SYNTHETIC seed=1 class=0"
  std::string patient_name;             // default: SYNTHETIC^MEDDIFF (synthetic) / ANONYMOUS^MEDDIFF (converted)
  std::string patient_id;              // default: derived from the new Study UID
  std::string body_part;               // BodyPartExamined; default HEAD (MR) / CHEST (CT)
  std::string study_uid;               // StudyInstanceUID (series of one study share it); default: a new one
  std::string frame_uid;               // FrameOfReferenceUID (reconstructions of one scan share it); default: a new one
  std::string image_type;              // ImageType, e.g. ORIGINAL\PRIMARY\LOCALIZER; default DERIVED\SECONDARY\...
  int series_number = 1;
};

// Writes the series into `dir` (created). An existing non-empty `dir` is replaced only with
// `overwrite`, and only when it holds nothing but a DICOM series written by meddiff.
void write_dicom_series(const Volume& v, const std::filesystem::path& dir, const DicomWriteOptions& options,
                        bool overwrite);

// "" when every entry of `dir` is a DICOM file of one series written by meddiff (Manufacturer
// "meddiff"), else the first entry that is not, described for an error message.
std::string dicom_folder_foreign_entry(const std::filesystem::path& dir);

// Throws naming the first of `files` whose element structure GDCM cannot parse without aborting the
// process (parsed in a child process first; see dicom_guard.cpp).
void check_dicom_parsable(const std::vector<std::string>& files);
// The first such file, or "".
std::string first_unparsable_dicom(const std::vector<std::string>& files);

// DICOM value formatting (exposed for tests): a decimal string (DS) of at most 16 characters that
// keeps as many significant digits as fit.
std::string format_ds(double value);
std::string new_uid();

}  // namespace meddiff::io
