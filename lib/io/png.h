#pragma once
// 8-bit grey PNG files (previews), written atomically with checked writes. Text chunks (tEXt) carry
// what the image is: e.g. {"Description": "SYNTHETIC ..."} on previews of generated volumes.
#include <torch/torch.h>

#include <filesystem>
#include <map>
#include <string>

namespace meddiff::io {

// uint8 [H, W]; `text`: keyword (1-79 Latin-1 characters) -> text.
void write_png(const torch::Tensor& u8_image, const std::filesystem::path& path,
               const std::map<std::string, std::string>& text = {});
torch::Tensor read_png(const std::filesystem::path& path);  // uint8 [H, W]
// The tEXt chunks of a PNG file (keyword -> text).
std::map<std::string, std::string> read_png_text(const std::filesystem::path& path);

}  // namespace meddiff::io
