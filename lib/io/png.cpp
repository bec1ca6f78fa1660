#include "io/png.h"

#include "core/error.h"
#include "core/fs.h"
#include "io/itk_image.h"

#include <itkImageFileReader.h>
#include <itkPNGImageIO.h>

#include <zlib.h>

namespace meddiff::io {

using Png = itk::Image<uint8_t, 2>;

namespace {

void put_u32(std::string& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>((v >> shift) & 0xff));
}

// One PNG chunk: length, type, data, CRC-32 of type and data (PNG spec, section 5.3).
void put_chunk(std::string& out, const char* type, const std::string& data) {
  put_u32(out, static_cast<uint32_t>(data.size()));
  std::string body = std::string(type, 4) + data;
  out += body;
  put_u32(out, static_cast<uint32_t>(crc32(0L, reinterpret_cast<const Bytef*>(body.data()), static_cast<uInt>(body.size()))));
}

uint32_t get_u32(const std::string& s, size_t at) {
  uint32_t v = 0;
  for (size_t i = 0; i < 4; ++i) v = (v << 8) | static_cast<unsigned char>(s[at + i]);
  return v;
}

}  // namespace

void write_png(const torch::Tensor& u8, const std::filesystem::path& path, const std::map<std::string, std::string>& text) {
  if (u8.dim() != 2 || u8.scalar_type() != torch::kUInt8) fail("{}: a PNG preview needs a uint8 [H, W] image", path.string());
  auto t = u8.contiguous();
  const auto height = static_cast<uint32_t>(t.size(0)), width = static_cast<uint32_t>(t.size(1));
  // Scanlines, each with filter type 0 (none), deflated into one IDAT chunk.
  std::string raw;
  raw.reserve(static_cast<size_t>(height) * (width + 1));
  const auto* px = reinterpret_cast<const char*>(t.data_ptr<uint8_t>());
  for (uint32_t r = 0; r < height; ++r) {
    raw.push_back('\0');
    raw.append(px + static_cast<size_t>(r) * width, width);
  }
  uLongf zsize = compressBound(static_cast<uLong>(raw.size()));
  std::string z(zsize, '\0');
  if (compress2(reinterpret_cast<Bytef*>(z.data()), &zsize, reinterpret_cast<const Bytef*>(raw.data()),
                static_cast<uLong>(raw.size()), 6) != Z_OK)
    fail("{}: cannot compress the PNG image", path.string());
  z.resize(zsize);
  std::string png("\x89PNG\r\n\x1a\n", 8);
  std::string ihdr;
  put_u32(ihdr, width);
  put_u32(ihdr, height);
  ihdr += std::string("\x08\x00\x00\x00\x00", 5);  // 8-bit grey, deflate, adaptive filtering, no interlace
  put_chunk(png, "IHDR", ihdr);
  for (const auto& [key, value] : text) {
    if (key.empty() || key.size() > 79) fail("PNG text keyword '{}' must have 1-79 characters", key);
    put_chunk(png, "tEXt", key + std::string(1, '\0') + value);
  }
  put_chunk(png, "IDAT", z);
  put_chunk(png, "IEND", "");
  write_atomically(path, [&](const std::filesystem::path& tmp) { write_file_checked(tmp, png, path.string()); });
}

std::map<std::string, std::string> read_png_text(const std::filesystem::path& path) {
  std::string s = read_text(path);
  if (s.size() < 8 || s.compare(0, 8, std::string("\x89PNG\r\n\x1a\n", 8)) != 0) fail("{}: not a PNG file", path.string());
  std::map<std::string, std::string> out;
  for (size_t at = 8; at + 12 <= s.size();) {
    uint32_t len = get_u32(s, at);
    if (at + 12 + len > s.size()) fail("{}: truncated PNG file", path.string());
    std::string type = s.substr(at + 4, 4);
    if (type == "tEXt") {
      std::string data = s.substr(at + 8, len);
      auto nul = data.find('\0');
      if (nul != std::string::npos) out[data.substr(0, nul)] = data.substr(nul + 1);
    }
    at += 12 + len;
  }
  return out;
}

torch::Tensor read_png(const std::filesystem::path& path) {
  auto reader = itk::ImageFileReader<Png>::New();
  reader->SetImageIO(itk::PNGImageIO::New());
  reader->SetFileName(path.string());
  try {
    reader->Update();
  } catch (const std::exception& e) {
    fail("{}: cannot read PNG: {}", path.string(), itk_message(e));
  }
  auto size = reader->GetOutput()->GetLargestPossibleRegion().GetSize();
  auto out = torch::empty({static_cast<int64_t>(size[1]), static_cast<int64_t>(size[0])}, torch::kUInt8);
  std::memcpy(out.data_ptr<uint8_t>(), reader->GetOutput()->GetBufferPointer(), static_cast<size_t>(out.numel()));
  return out;
}

}  // namespace meddiff::io
