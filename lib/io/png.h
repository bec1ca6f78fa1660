#pragma once
// 8-bit grey PNG files (previews), written atomically.
#include <torch/torch.h>

#include <filesystem>

namespace meddiff::io {

void write_png(const torch::Tensor& u8_image, const std::filesystem::path& path);  // uint8 [H, W]
torch::Tensor read_png(const std::filesystem::path& path);                         // uint8 [H, W]

}  // namespace meddiff::io
