#pragma once
// Plots as 8-bit grey images (for reports): no fonts, so axes are described in the caption.
#include <torch/torch.h>

#include <vector>

namespace meddiff {

// Two histograms over the same bins: `filled` as grey bars, `outlined` as a white step line, on a
// black background with a grey baseline; both scaled by the larger maximum. uint8 [height, bins * bar].
torch::Tensor histogram_plot(const std::vector<double>& filled, const std::vector<double>& outlined, int64_t height = 160,
                             int64_t bar = 8);

// Series against x (increasing), each scaled to its own maximum, as lines with 3x3 markers: the first
// white, the next ones in darker greys; x scaled linearly from its minimum to its maximum. uint8 [height, width].
torch::Tensor line_plot(const std::vector<double>& x, const std::vector<std::vector<double>>& series, int64_t width = 320,
                        int64_t height = 160);

}  // namespace meddiff
