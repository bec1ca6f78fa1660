#pragma once
// DICOM attributes read back with GDCM's own reader, for the I/O tests.
#include <doctest/doctest.h>
#include <gdcmReader.h>
#include <gdcmStringFilter.h>

#include <filesystem>
#include <string>

namespace meddiff::test {

// The value of (group, element) in `file` as text, trailing padding removed.
inline std::string dicom_tag(const std::filesystem::path& file, uint16_t group, uint16_t element) {
  gdcm::Reader r;
  r.SetFileName(file.string().c_str());
  REQUIRE(r.Read());
  gdcm::StringFilter sf;
  sf.SetFile(r.GetFile());
  std::string v = sf.ToString(gdcm::Tag(group, element));
  while (!v.empty() && (v.back() == ' ' || v.back() == '\0')) v.pop_back();
  return v;
}

}  // namespace meddiff::test
