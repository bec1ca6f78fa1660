#pragma once
// Dataset sources: the layouts users keep their data in, each indexed into a Manifest (cases with their
// channels, label map and class) by reading file names and small headers only, never voxels.
//   nnU-Net v2 raw   dataset.json with "channel_names"; imagesTr/CASE_XXXX<ending>, labelsTr/CASE<ending>
//   MSD / nnU-Net v1 dataset.json with "modality" and a "training" list; 4-D images (one component per
//                    channel) or split files CASE_XXXX
//   BraTS            a folder of case folders, each with CASE_<sequence>.nii.gz per sequence and CASE_seg.nii.gz
//   DICOM tree       (io/dataset_index.h: it reads DICOM headers) one case per series
// Every source says what it left out and why in an IndexReport; io/dataset_index.h tries them in order.
#include "core/config.h"
#include "data/manifest.h"

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace meddiff {

// Which DICOM series of a tree become cases.
struct DicomSelectParams {
  std::vector<std::string> modality;  // keep these modalities (e.g. ["CT"]); empty: every modality
  std::string series_description;     // keep series whose description matches this pattern ('*', '?'; any case); "" all
  std::string image_type;             // keep series whose ImageType (values joined by '\') matches this pattern; "" all
  int64_t min_slices = 10;            // leave out series with fewer slices
  std::string per_study = "all";      // all, or most_slices: one series per study, the one with the most slices
  bool keep_localizers = false;       // localisers / scouts / topograms are left out unless true
  bool keep_derived = false;          // derived secondary captures (screenshots, reformats) are left out unless true

  template <typename V>
  void visit(V& v) {
    v("modality", modality, "keep only these DICOM modalities, e.g. [\"CT\"]; empty keeps every one");
    v("series_description", series_description, "keep series whose SeriesDescription matches this pattern (* and ?, any case)");
    v("image_type", image_type, "keep series whose ImageType (values joined by \\) matches this pattern");
    v("min_slices", min_slices, "leave out series with fewer slices");
    v("per_study", per_study, "all, or most_slices (one series per study: the one with the most slices)");
    v("keep_localizers", keep_localizers, "keep localisers, scouts and topograms (left out by default)");
    v("keep_derived", keep_derived, "keep derived secondary captures (left out by default)");
  }
  void validate(const std::string& where) const;
};

// How a dataset folder is read into cases (the data.source config section).
struct SourceParams {
  std::vector<std::string> brats_sequences{"t1", "t1ce", "t2", "flair"};  // BraTS file-name suffixes, one per channel
  std::string brats_label = "seg";                                       // BraTS label-map suffix
  std::string classes;  // CSV (id,class) or JSON ({"id": class}) giving each case's class; "" = class 0 for all
  DicomSelectParams dicom;

  template <typename V>
  void visit(V& v) {
    v("brats_sequences", brats_sequences, "BraTS folders: the sequences' file-name suffixes (channels), e.g. [\"t1n\",\"t1c\",\"t2w\",\"t2f\"] for BraTS 2023");
    v("brats_label", brats_label, "BraTS folders: the label map's file-name suffix");
    v("classes", classes, "a CSV (id,class) or JSON ({\"id\": class}) with each case's class; empty: class 0 for every case");
    v("dicom", dicom, "DICOM trees: which series become cases");
  }
  void validate(const std::string& where) const;
};

// What indexing found besides the cases.
struct IndexReport {
  std::vector<std::string> problems;    // cases left out because the dataset is not as its layout says
  std::vector<std::string> skipped;     // DICOM series left out by a selection rule, and why
  std::vector<std::string> unreadable;  // files that look like DICOM but cannot be parsed
};

class DatasetSource {
 public:
  virtual ~DatasetSource() = default;
  virtual std::string layout() const = 0;
  // True when `path` is laid out as this source reads it (a few names and small files, no voxels).
  virtual bool recognises(const std::filesystem::path& path) const = 0;
  // The cases of `path`; cases that cannot be used go to report.problems (one line each, naming the file).
  virtual Manifest index(const std::filesystem::path& path, const SourceParams& p, IndexReport& report) const = 0;
};

std::unique_ptr<DatasetSource> make_nnunet_source();  // nnU-Net v2 raw
std::unique_ptr<DatasetSource> make_msd_source();     // MSD task / nnU-Net v1 raw
std::unique_ptr<DatasetSource> make_brats_source();   // BraTS case folders

// Case ids -> classes from `file` (CSV with columns id,class, or a JSON object {"id": class}); applied to m's
// entries by id. Cases the file does not name are problems.
void apply_class_file(Manifest& m, const std::string& file, IndexReport& report);

}  // namespace meddiff
