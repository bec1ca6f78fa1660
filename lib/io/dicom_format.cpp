// DICOM value representations and UIDs.
#include "core/error.h"
#include "io/dicom_series.h"

#include <gdcmUIDGenerator.h>

#include <cmath>
#include <cstdio>
#include <string>

namespace meddiff::io {

std::string format_ds(double value) {
  if (!std::isfinite(value)) fail("DICOM DS value is not finite");
  if (std::abs(value) < 1e-12) return "0";
  // %.*g with decreasing precision until the text fits 16 characters (PS3.5 table 6.2-1).
  for (int precision = 15; precision >= 1; --precision) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*g", precision, value);
    std::string s(buf);
    if (s.size() <= 16) return s;
  }
  fail("value {} cannot be written as a DICOM decimal string", value);
}

std::string new_uid() {
  gdcm::UIDGenerator gen;
  const char* uid = gen.Generate();
  if (!uid) fail("cannot generate a DICOM UID");
  return uid;
}

}  // namespace meddiff::io
