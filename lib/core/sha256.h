#pragma once
// SHA-256 (FIPS 180-4) of bytes or a file, as lower-case hex. Used to fingerprint checkpoints in
// manifests and provenance records.
#include <filesystem>
#include <string>

namespace meddiff {

std::string sha256_hex(const std::string& bytes);
std::string sha256_file(const std::filesystem::path& path);

}  // namespace meddiff
