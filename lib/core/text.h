#pragma once
// Small string helpers shared by the readers (extensions, modality names, DICOM values, dataset file names).
#include <string>

namespace meddiff {

std::string to_lower(std::string s);  // ASCII
std::string to_upper(std::string s);  // ASCII

}  // namespace meddiff
