#include "pipeline/bench.h"

#include "pipeline/device.h"

#include <torch/csrc/autograd/profiler_kineto.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>

namespace meddiff {

namespace {

std::vector<int64_t> int_list(const c10::IValue& v) {
  std::vector<int64_t> out;
  if (v.isIntList()) return v.toIntVector();
  if (v.isList())
    for (const auto& x : v.toListRef()) out.push_back(x.toInt());
  return out;
}

// 2 x (input channels / groups) x kernel volume multiply-adds per output value. Forward: the output
// size from the input size, stride, padding and dilation (aten::convolution's arguments); backward:
// from the output gradient, counting the input and the weight gradients (2 x the forward).
double convolution_flops(const torch::autograd::profiler::KinetoEvent& e, bool backward, bool onednn) {
  if (!e.hasShapes()) return 0;
  const auto shapes = e.shapes();
  const size_t in = backward ? 1 : 0, w = backward ? 2 : 1;
  if (shapes.size() <= w || shapes[w].size() < 3) return 0;
  const auto& weight = shapes[w];
  double per_output = 2.0;
  for (size_t i = 1; i < weight.size(); ++i) per_output *= static_cast<double>(weight[i]);  // Cin/g x kernel
  double outputs = 0;
  if (backward) {
    outputs = 1;
    for (int64_t d : shapes[0]) outputs *= static_cast<double>(d);  // the output gradient's size
    return 2 * outputs * per_output;
  }
  // aten::convolution(input, weight, bias, stride, padding, dilation, transposed, ...);
  // aten::mkldnn_convolution(input, weight, bias, padding, stride, dilation, groups)
  if (!e.hasConcreteInputs() || e.concreteInputs().size() < 6) return 0;
  const auto args = e.concreteInputs();
  if (!onednn && args.size() > 6 && args[6].isBool() && args[6].toBool()) return 0;  // transposed: not in meddiff's models
  const auto stride = int_list(args[onednn ? 4 : 3]), padding = int_list(args[onednn ? 3 : 4]), dilation = int_list(args[5]);
  const auto& x = shapes[in];
  const size_t dims = weight.size() - 2;
  if (x.size() != dims + 2 || stride.size() != dims || padding.size() != dims || dilation.size() != dims) return 0;
  outputs = static_cast<double>(x[0] * weight[0]);
  for (size_t i = 0; i < dims; ++i)
    outputs *= static_cast<double>((x[i + 2] + 2 * padding[i] - dilation[i] * (weight[i + 2] - 1) - 1) / stride[i] + 1);
  return outputs * per_output;
}

}  // namespace

double counted_gflop(const std::function<void()>& fn) {
  namespace prof = torch::profiler::impl;
  prof::ProfilerConfig cfg(prof::ProfilerState::KINETO, /*report_input_shapes=*/true, /*profile_memory=*/false,
                           /*with_stack=*/false, /*with_flops=*/true);
  const std::set<prof::ActivityType> activities{prof::ActivityType::CPU};
  // Kineto logs an error for every missing GPU when it starts; the CPU-only profile needs none.
  ::setenv("KINETO_LOG_LEVEL", "5", /*overwrite=*/0);
  torch::autograd::profiler::prepareProfiler(cfg, activities);
  torch::autograd::profiler::enableProfiler(cfg, activities);
  try {
    fn();
  } catch (...) {
    torch::autograd::profiler::disableProfiler();
    throw;
  }
  auto result = torch::autograd::profiler::disableProfiler();
  double flops = 0;
  const auto& events = result->events();
  // a oneDNN convolution called directly (ops::conv3d), not inside an aten::convolution on its thread
  auto nested = [&](const torch::autograd::profiler::KinetoEvent& e) {
    for (const auto& p : events)
      if (p.name() == "aten::convolution" && p.startThreadId() == e.startThreadId() && p.startNs() <= e.startNs() &&
          e.endNs() <= p.endNs())
        return true;
    return false;
  };
  for (const auto& e : events) {
    const std::string n = e.name();
    if (n == "aten::convolution") flops += convolution_flops(e, false, false);
    else if (n == "aten::mkldnn_convolution") flops += nested(e) ? 0.0 : convolution_flops(e, false, true);
    else if (n == "aten::convolution_backward") flops += convolution_flops(e, true, false);
    else flops += static_cast<double>(e.flops());  // matrix products and element-wise ops (LibTorch's count)
  }
  return flops / 1e9;
}

namespace {
// Seconds of one call of `fn`, the device synchronised before and after.
double timed(const std::function<void()>& fn, const torch::Device& device) {
  synchronize(device);
  auto t0 = std::chrono::steady_clock::now();
  fn();
  synchronize(device);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

Measured measure_once(const std::function<void()>& fn, const torch::Device& device) {
  Measured m;
  reset_peak_rss();
  reset_peak_device_memory(device);
  m.repeats = 1;
  m.min_s = m.median_s = timed(fn, device);
  m.peak_mib = device.is_cuda() ? peak_device_mib(device) : peak_rss_mib();
  return m;
}

Measured measure(const std::function<void()>& fn, const torch::Device& device, int64_t repeats, bool count_flops) {
  Measured m;
  reset_peak_rss();
  reset_peak_device_memory(device);
  fn();  // warm-up: allocator, oneDNN primitives, cuDNN algorithm choice
  synchronize(device);
  if (count_flops) m.gflop = counted_gflop(fn);
  std::vector<double> t;
  for (int64_t i = 0; i < std::max<int64_t>(1, repeats); ++i) t.push_back(timed(fn, device));
  std::sort(t.begin(), t.end());
  m.repeats = static_cast<int64_t>(t.size());
  m.min_s = t.front();
  m.median_s = t[t.size() / 2];
  m.peak_mib = device.is_cuda() ? peak_device_mib(device) : peak_rss_mib();
  return m;
}

}  // namespace meddiff
