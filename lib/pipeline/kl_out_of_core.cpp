#include "pipeline/kl_out_of_core.h"

#include "core/error.h"
#include "core/log.h"
#include "pipeline/split_exec.h"

#include <fcntl.h>
#include <unistd.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <cerrno>
#include <cstring>
#include <map>

namespace meddiff {
namespace {
namespace fs = std::filesystem;
namespace F = torch::nn::functional;
using split::ceil_div;
using split::floor_div;
using split::GroupStats;

double gib(double bytes) { return bytes / static_cast<double>(int64_t{1} << 30); }

// An activation [B, C, D, H, W] (float) as rows along `axis`: a tensor on the device, or a scratch file whose
// row r holds the slice r contiguous ([B, C, other axes]).
class Rows {
 public:
  Rows(std::vector<int64_t> shape, int64_t axis, bool disk, const torch::Device& device)
      : shape_(std::move(shape)), axis_(axis), device_(device) {
    row_numel_ = 1;
    for (int64_t d = 0; d < 5; ++d)
      if (d != axis_) row_numel_ *= shape_[static_cast<size_t>(d)];
    if (!disk) {
      mem_ = torch::empty(shape_, torch::TensorOptions().dtype(torch::kFloat).device(device_));
      return;
    }
    const fs::path dir = fs::temp_directory_path();
    const auto space = fs::space(dir);
    if (static_cast<double>(space.available) < bytes() * 1.05)
      fail("{}: {:.1f} GiB free, the autoencoder's activation needs {:.1f} GiB of scratch space (set TMPDIR to a larger disk)", dir.string(),
           gib(static_cast<double>(space.available)), gib(bytes()));
    std::string path = (dir / "meddiff-kl-XXXXXX").string();
    fd_ = mkstemp(path.data());
    if (fd_ < 0) fail("{}: cannot create a scratch file ({})", dir.string(), std::strerror(errno));
    unlink(path.c_str());  // gone with the process, whatever happens
    if (ftruncate(fd_, static_cast<off_t>(bytes())) != 0) fail("{}: cannot size a scratch file ({})", dir.string(), std::strerror(errno));
  }
  ~Rows() {
    if (fd_ >= 0) close(fd_);
  }
  Rows(const Rows&) = delete;
  Rows& operator=(const Rows&) = delete;

  int64_t length() const { return shape_[static_cast<size_t>(axis_)]; }
  const std::vector<int64_t>& shape() const { return shape_; }
  double bytes() const { return 4.0 * static_cast<double>(row_numel_) * static_cast<double>(length()); }
  double row_bytes() const { return 4.0 * static_cast<double>(row_numel_); }
  bool on_disk() const { return fd_ >= 0; }

  // rows [a, b) as [B, C, ...] on the device
  torch::Tensor read(int64_t a, int64_t b) const {
    if (!on_disk()) return mem_.narrow(axis_, a, b - a);
    auto buf = torch::empty(row_major_shape(b - a), torch::kFloat);
    io(false, a, buf);
    return from_row_major(buf).to(device_);
  }
  void write(int64_t a, const torch::Tensor& t) {
    if (!on_disk()) {
      mem_.narrow(axis_, a, t.size(axis_)).copy_(t);
      return;
    }
    auto buf = to_row_major(t).to(torch::kCPU, torch::kFloat).contiguous();
    io(true, a, buf);
  }
  // GroupNorm statistics of the whole activation, gathered `rows` rows at a time; kept for the next reader.
  GroupStats stats(int64_t groups, double eps, int64_t rows) {
    auto key = std::make_pair(groups, eps);
    auto it = stats_.find(key);
    if (it != stats_.end()) return it->second;
    auto opts = torch::TensorOptions().dtype(torch::kDouble).device(device_);
    auto sum = torch::zeros({shape_[0], groups}, opts), sumsq = torch::zeros({shape_[0], groups}, opts);
    for (int64_t a = 0; a < length(); a += rows) split::accumulate(read(a, std::min(length(), a + rows)), groups, sum, sumsq);
    const double count = static_cast<double>(row_numel_ / shape_[0] / groups) * static_cast<double>(length());
    return stats_[key] = split::finish(sum, sumsq, count, eps);
  }

 private:
  std::vector<int64_t> row_major_shape(int64_t n) const {
    std::vector<int64_t> s{n};
    for (int64_t d = 0; d < 5; ++d)
      if (d != axis_) s.push_back(shape_[static_cast<size_t>(d)]);
    return s;
  }
  std::vector<int64_t> to_row_major_order() const {  // [B, C, D, H, W] -> [rows, B, C, the other two]
    std::vector<int64_t> p{axis_};
    for (int64_t d = 0; d < 5; ++d)
      if (d != axis_) p.push_back(d);
    return p;
  }
  torch::Tensor to_row_major(const torch::Tensor& t) const { return t.permute(to_row_major_order()); }
  torch::Tensor from_row_major(const torch::Tensor& t) const {
    auto p = to_row_major_order();
    std::vector<int64_t> inv(5);
    for (size_t i = 0; i < 5; ++i) inv[static_cast<size_t>(p[i])] = static_cast<int64_t>(i);
    return t.permute(inv).contiguous();
  }
  void io(bool writing, int64_t row, const torch::Tensor& buf) const {
    auto* p = static_cast<char*>(buf.data_ptr());
    size_t left = static_cast<size_t>(buf.numel()) * 4;
    off_t at = static_cast<off_t>(static_cast<double>(row) * row_bytes());
    while (left > 0) {
      const ssize_t n = writing ? pwrite(fd_, p, left, at) : pread(fd_, p, left, at);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) fail("scratch file: {} failed ({})", writing ? "write" : "read", n < 0 ? std::strerror(errno) : "end of file");
      p += n;
      at += n;
      left -= static_cast<size_t>(n);
    }
  }

  std::vector<int64_t> shape_;
  int64_t axis_;
  torch::Device device_;
  int64_t row_numel_ = 1;
  torch::Tensor mem_;
  int fd_ = -1;
  std::map<std::pair<int64_t, double>, GroupStats> stats_;
};

using Pre = std::function<torch::Tensor(const torch::Tensor&)>;
using Residual = std::function<torch::Tensor(int64_t a, int64_t b)>;  // added to output rows [a, b)

struct Runner {
  const OutOfCoreRun& run;
  int64_t axis;
  torch::Device device;
  int64_t on_disk = 0;  // activations that went to scratch files

  std::unique_ptr<Rows> make(std::vector<int64_t> shape) {
    double bytes = 4;
    for (auto s : shape) bytes *= static_cast<double>(s);
    const bool disk = run.all_on_disk || bytes > static_cast<double>(run.budget_bytes) / 4;
    on_disk += disk ? 1 : 0;
    return std::make_unique<Rows>(std::move(shape), axis, disk, device);
  }
  // Output rows per slab: the slab's input (with the halo), its normalised and padded copies, the output and
  // the convolution's own work space stay within a quarter of the budget.
  int64_t rows_for(double in_row_bytes, double out_row_bytes) const {
    if (run.rows > 0) return run.rows;
    const double per_row = 3 * in_row_bytes + 3 * out_row_bytes;
    return std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(run.budget_bytes) / 4 / per_row));
  }
  int64_t stats_rows(const Rows& r) const { return rows_for(r.row_bytes() * 2, 0); }

  // Zero rows before / after a slab along the axis (the convolution's padding where the volume ends).
  torch::Tensor pad_axis(const torch::Tensor& x, int64_t front, int64_t back) const {
    if (front == 0 && back == 0) return x;
    std::vector<int64_t> pad(6, 0);
    pad[static_cast<size_t>(2 * (4 - axis))] = front;
    pad[static_cast<size_t>(2 * (4 - axis) + 1)] = back;
    return F::pad(x, F::PadFuncOptions(pad).mode(torch::kConstant).value(0.0));
  }
  torch::Tensor conv(MonaiConvImpl& c, const torch::Tensor& x) const {
    const int64_t k = c.conv->options.kernel_size()->at(0), p = k / 2;
    std::vector<int64_t> padding{p, p, p};
    padding[static_cast<size_t>(axis - 2)] = 0;  // the slab carries its rows' padding
    return at::conv3d(x, c.conv->weight, c.conv->bias, {1, 1, 1}, padding);
  }

  // out = conv(pre(in)) (+ residual), a MONAI 1^3 or 3^3 convolution with stride 1.
  std::unique_ptr<Rows> conv_rows(MonaiConvImpl& c, Rows& in, const Pre& pre, const Residual& residual = nullptr) {
    const int64_t L = in.length(), p = c.conv->options.kernel_size()->at(0) / 2;
    auto shape = in.shape();
    shape[1] = c.conv->options.out_channels();
    auto out = make(shape);
    const int64_t n = rows_for(in.row_bytes(), out->row_bytes());
    for (int64_t a = 0; a < L; a += n) {
      const int64_t b = std::min(L, a + n), i0 = std::max<int64_t>(0, a - p), i1 = std::min(L, b + p);
      auto x = in.read(i0, i1);
      if (pre) x = pre(x);
      auto y = conv(c, pad_axis(x, i0 - (a - p), (b + p) - i1));
      if (residual) y = y + residual(a, b);
      out->write(a, y);
    }
    return out;
  }

  // MONAI's upsampling layer: x2 interpolation, then its 3^3 convolution.
  std::unique_ptr<Rows> upsample_rows(MonaiUpsampleImpl& up, Rows& in) {
    const int64_t L = in.length(), L2 = 2 * L;
    auto shape = in.shape();
    for (int64_t d = 2; d < 5; ++d) shape[static_cast<size_t>(d)] *= 2;
    auto out = make(shape);
    const int64_t n = rows_for(in.row_bytes() * 4 * 3, out->row_bytes());
    for (int64_t a = 0; a < L2; a += n) {
      const int64_t b = std::min(L2, a + n);
      const int64_t u0 = std::max<int64_t>(0, a - 1), u1 = std::min(L2, b + 1);  // the upsampled rows the convolution reads
      // input rows whose interpolation gives upsampled rows u0..u1 exactly: a margin of one row where the slab is inside
      const int64_t s0 = std::max<int64_t>(0, floor_div(u0 - 1, 2)), s1 = std::min(L, ceil_div(u1 + 1, 2));
      auto x = upsample2x(in.read(s0, s1), up.trilinear).narrow(axis, u0 - 2 * s0, u1 - u0);
      out->write(a, conv(*up.postconv, pad_axis(x, u0 - (a - 1), (b + 1) - u1)));
    }
    return out;
  }

  // The encoder's downsampling: one zero row at the end of every spatial axis, then a stride-2 3^3 convolution;
  // output row o reads input rows 2o .. 2o + 2.
  std::unique_ptr<Rows> downsample_rows(KLDownsampleImpl& down, Rows& in) {
    const int64_t L = in.length(), Lo = (L + 1 - 3) / 2 + 1;
    if (Lo < 1) fail("KL encoder: {} rows along the cut axis are too few to downsample", L);
    auto shape = in.shape();
    for (int64_t d = 2; d < 5; ++d) shape[static_cast<size_t>(d)] = (shape[static_cast<size_t>(d)] + 1 - 3) / 2 + 1;
    auto out = make(shape);
    const int64_t n = rows_for(in.row_bytes() * 2, out->row_bytes());
    for (int64_t a = 0; a < Lo; a += n) {
      const int64_t b = std::min(Lo, a + n), i0 = 2 * a, i1 = std::min(L, 2 * b + 1);
      std::vector<int64_t> pad{0, 1, 0, 1, 0, 1};
      pad[static_cast<size_t>(2 * (4 - axis) + 1)] = (2 * b + 1) - i1;
      auto x = F::pad(in.read(i0, i1), F::PadFuncOptions(pad).mode(torch::kConstant).value(0.0));
      out->write(a, at::conv3d(x, down.conv->conv->weight, down.conv->conv->bias, {2, 2, 2}, {0, 0, 0}));
    }
    return out;
  }

  Pre norm(MonaiNormImpl& nm, Rows& in, bool silu) {
    GroupStats s = in.stats(nm.groups, nm.eps, stats_rows(in));
    return [s, &nm, silu](const torch::Tensor& x) { return nm.affine(split::group_norm(x, s, {}, {}, false), silu); };
  }

  std::unique_ptr<Rows> res_rows(KLResBlockImpl& r, Rows& x) {
    auto h = conv_rows(*r.conv1, x, norm(*r.norm1, x, true));
    Residual skip = [&](int64_t a, int64_t b) {
      auto xs = x.read(a, b);
      return r.nin_shortcut ? conv(*r.nin_shortcut, xs) : xs;
    };
    return conv_rows(*r.conv2, *h, norm(*r.norm2, *h, true), skip);
  }

  std::unique_ptr<Rows> attention_rows(MonaiAttentionImpl& att, Rows& x) {
    if (x.bytes() > static_cast<double>(run.budget_bytes) / 4)
      fail("the autoencoder's attention at {} voxels needs its whole activation ({:.1f} GiB) in memory: give a larger --max-memory",
           x.shape()[2] * x.shape()[3] * x.shape()[4], gib(x.bytes()));
    auto out = make(x.shape());
    out->write(0, att.forward(x.read(0, x.length())));
    return out;
  }
};

}  // namespace

double whole_decode_bytes(const AutoencoderKL& model, const std::array<int64_t, 3>& full, int64_t batch) {
  const auto& c = model->params.channels;
  const int64_t widest = c.size() > 1 ? std::max(c[0], c[1]) : c[0];  // the full-resolution stage starts at the lower level's width
  return 4.0 * 4.0 * static_cast<double>(batch * widest) * static_cast<double>(full[0] * full[1] * full[2]);
}

torch::Tensor decode_within(AutoencoderKL& model, const torch::Tensor& z, int64_t budget_bytes, bool force) {
  torch::NoGradGuard ng;
  const int64_t f = model->params.downsample();
  if (!force && whole_decode_bytes(model, {z.size(2) * f, z.size(3) * f, z.size(4) * f}, z.size(0)) <= static_cast<double>(budget_bytes))
    return model->decode(z);
  OutOfCoreRun run;
  run.budget_bytes = budget_bytes;
  return decode_out_of_core(model, z, run);
}

namespace {

void limit_heap_retention() {
#if defined(__GLIBC__)
  // Slabs of many sizes come and go: with glibc's adaptive threshold (up to 32 MiB) they are carved from the heap
  // and freed memory stays with the process (measured: 2.6 GB peak for a 50 MB budget, 0.56 GB with this).
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
#endif
}

// The cut axis: the longest spatial axis of a [B, C, D, H, W] shape (2, 3 or 4).
int64_t longest_axis(const std::array<int64_t, 3>& full) {
  return 2 + static_cast<int64_t>(std::max_element(full.begin(), full.end()) - full.begin());
}

// Runs an encoder's or decoder's blocks on `cur`, block by block.
std::unique_ptr<Rows> run_blocks(Runner& d, KLCoderImpl& coder, std::unique_ptr<Rows> cur, const char* what) {
  auto& blocks = *coder.blocks;
  for (size_t i = 0; i < blocks.size(); ++i) {
    auto m = blocks.ptr(i);
    if (auto c = std::dynamic_pointer_cast<MonaiConvImpl>(m)) {
      cur = d.conv_rows(*c, *cur, nullptr);
    } else if (auto r = std::dynamic_pointer_cast<KLResBlockImpl>(m)) {
      cur = d.res_rows(*r, *cur);
    } else if (auto a = std::dynamic_pointer_cast<MonaiAttentionImpl>(m)) {
      cur = d.attention_rows(*a, *cur);
    } else if (auto u = std::dynamic_pointer_cast<MonaiUpsampleImpl>(m)) {
      cur = d.upsample_rows(*u, *cur);
    } else if (auto dn = std::dynamic_pointer_cast<KLDownsampleImpl>(m)) {
      cur = d.downsample_rows(*dn, *cur);
    } else if (auto n = std::dynamic_pointer_cast<MonaiNormImpl>(m)) {
      // the last GroupNorm (no SiLU), applied per slab by the convolution after it
      auto next = i + 1 < blocks.size() ? std::dynamic_pointer_cast<MonaiConvImpl>(blocks.ptr(i + 1)) : nullptr;
      if (!next) fail("KL {}: a GroupNorm not followed by a convolution", what);
      cur = d.conv_rows(*next, *cur, d.norm(*n, *cur, false));
      ++i;
    } else {
      fail("KL {}: block {} is not one out-of-core running knows", what, i);
    }
  }
  return cur;
}

}  // namespace

torch::Tensor decode_out_of_core(AutoencoderKL& model, const torch::Tensor& z, const OutOfCoreRun& run) {
  torch::NoGradGuard ng;
  limit_heap_retention();
  const int64_t f = model->params.downsample();
  std::array<int64_t, 3> full{z.size(2) * f, z.size(3) * f, z.size(4) * f};
  Runner d{run, longest_axis(full), z.device()};
  auto h = model->post_quant_conv->forward(z);
  std::unique_ptr<Rows> cur = d.make(h.sizes().vec());
  cur->write(0, h);
  h = torch::Tensor();
  cur = run_blocks(d, *model->decoder, std::move(cur), "decoder");
  if (d.on_disk > 0)
    log_info("decoded an output of {} voxels block by block: {} activation(s) in scratch files, the rest within {:.1f} GiB",
             fmt::format("{}", fmt::join(full, "x")), d.on_disk, gib(static_cast<double>(run.budget_bytes)));
  return cur->read(0, cur->length()).contiguous();
}

KLPosterior encode_out_of_core(AutoencoderKL& model, const torch::Tensor& x, const OutOfCoreRun& run) {
  torch::NoGradGuard ng;
  limit_heap_retention();
  std::array<int64_t, 3> full{x.size(2), x.size(3), x.size(4)};
  Runner d{run, longest_axis(full), x.device()};
  std::unique_ptr<Rows> cur = d.make(x.sizes().vec());
  cur->write(0, x);
  cur = run_blocks(d, *model->encoder, std::move(cur), "encoder");
  if (d.on_disk > 0)
    log_info("encoded a volume of {} voxels block by block: {} activation(s) in scratch files, the rest within {:.1f} GiB",
             fmt::format("{}", fmt::join(full, "x")), d.on_disk, gib(static_cast<double>(run.budget_bytes)));
  return model->posterior(cur->read(0, cur->length()).contiguous());
}

KLPosterior encode_within(AutoencoderKL& model, const torch::Tensor& x, int64_t budget_bytes, bool force) {
  torch::NoGradGuard ng;
  if (!force && whole_decode_bytes(model, {x.size(2), x.size(3), x.size(4)}, x.size(0)) <= static_cast<double>(budget_bytes))
    return model->encode(x);
  OutOfCoreRun run;
  run.budget_bytes = budget_bytes;
  return encode_out_of_core(model, x, run);
}

}  // namespace meddiff
