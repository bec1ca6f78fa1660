#pragma once
// Nearest volume by normalised cross-correlation (NCC), maximised over small shifts: the image-space
// half of the memorisation audit. A copy of a training volume that was shifted by a few voxels or has
// noise added still correlates near 1 with its original at the right shift.
//
// NCC(q, r, s) = sum_{x in C} q'(x) r'(x + s) / (|q'|_C |r'|_{C+s}): the correlation coefficient of the
// query's central window C (all but max_shift + 1 voxels at each border) with the reference's window
// moved by s, each minus its own mean. Windows keep the borders out: a rolled copy's wrapped-around
// slab, zero padding and the band-pass's border effects never enter the sum. Numerators for every
// shift |s_i| <= max_shift come from one FFT cross-correlation (exact: x + s never leaves the volume);
// the references' window norms for every shift come from integral volumes, once. Float64 throughout.
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
    double second = -1;  // the NCC of the second-nearest reference (-1 with a single reference)
    std::array<int64_t, 3> shift{0, 0, 0};
  };
  Match nearest(const torch::Tensor& query) const;
  // NCC of the query with every reference at its best shift: [n].
  torch::Tensor all(const torch::Tensor& query) const;
  int64_t size() const { return static_cast<int64_t>(spectra_.size()); }

 private:
  torch::Tensor checked(const torch::Tensor& v) const;          // float64 [D, H, W] of the references' shape
  torch::Tensor query_spectrum(const torch::Tensor& q) const;  // conj(FFT) of the normalised central window
  torch::Tensor scores(const torch::Tensor& q, size_t first, size_t count) const;  // NCC per shift
  int64_t max_shift_;
  std::array<int64_t, 3> shape_{};
  std::vector<torch::Tensor> spectra_;
  std::vector<torch::Tensor> norms_;  // per reference: window norm at every shift [2S+1]^3
};

}  // namespace meddiff
