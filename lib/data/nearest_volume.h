#pragma once
// Nearest volume by normalised cross-correlation (NCC), maximised over small shifts: the image-space
// half of the memorisation audit. A copy of a training volume that was shifted by a few voxels or has
// noise added still correlates near 1 with its original at the right shift.
//
// NCC(a, b, s) = sum_x a'(x) b'(x + s) / (|a'| |b'|), a' = a - mean(a): the volumes' correlation
// coefficient when they overlap fully. Computed for every shift |s_i| <= max_shift at once by FFT
// cross-correlation of zero-padded volumes (padding by max_shift keeps the circular correlation
// linear for those shifts), in float64, with the references' transforms computed once.
#include <torch/torch.h>

#include <array>
#include <vector>

namespace meddiff {

// The volume's detail band: Gaussian blur at `fine` minus blur at `coarse` (voxels; replicated borders).
// It keeps what tells two scans of one anatomy apart and drops most white noise and the shared coarse
// shape, so a noisy copy still correlates near 1 with its original while distinct scans do not.
torch::Tensor band_pass(const torch::Tensor& v, double fine = 1.5, double coarse = 4.0);  // [D, H, W]

class NccIndex {
 public:
  // references: [D, H, W] volumes of one shape.
  explicit NccIndex(const std::vector<torch::Tensor>& references, int64_t max_shift = 2);
  struct Match {
    int64_t index = -1;  // nearest reference
    double ncc = -1;     // its NCC at the best shift
    std::array<int64_t, 3> shift{0, 0, 0};
  };
  Match nearest(const torch::Tensor& query) const;
  // NCC of the query with every reference at its best shift: [n].
  torch::Tensor all(const torch::Tensor& query) const;
  int64_t size() const { return static_cast<int64_t>(norms_.size()); }

 private:
  torch::Tensor spectrum(const torch::Tensor& v, double* norm) const;
  int64_t max_shift_;
  std::array<int64_t, 3> shape_{}, padded_{};
  std::vector<torch::Tensor> spectra_;
  std::vector<double> norms_;
};

}  // namespace meddiff
