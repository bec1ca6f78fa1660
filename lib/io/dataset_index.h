#pragma once
// Indexing a dataset: whatever a user points data.manifest or `meddiff index` at becomes a Manifest. The sources
// are tried in this order, the first that recognises the path reads it:
//   nnU-Net v2 raw (dataset.json with channel_names), MSD / nnU-Net v1 (dataset.json with a training list),
//   BraTS case folders, the list formats of data/manifest.h (a folder of image files, a glob, a CSV, a JSON
//   manifest), and last a DICOM tree (any other folder: every DICOM series below it).
#include "data/dataset_source.h"

#include <string>

namespace meddiff::io {

std::unique_ptr<DatasetSource> make_dicom_tree_source();

struct IndexedDataset {
  Manifest manifest;
  IndexReport report;
};

// The cases of `source`, with the classes of p.classes applied and every case's files checked. Throws when
// the source is missing, unreadable as its layout, or gives no case.
IndexedDataset index_dataset(const std::string& source, const SourceParams& p);

// index_dataset for a run that is about to read the cases: problems are one error (listing each), the DICOM
// series left out by a rule and the unreadable files are logged.
Manifest load_dataset(const std::string& source, const SourceParams& p);

}  // namespace meddiff::io
