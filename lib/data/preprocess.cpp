#include "data/preprocess.h"

#include "data/spatial.h"

namespace meddiff {

void DataParams::validate(const std::string& w) const {
  modality_enum();
  for (size_t a = 0; a < 3; ++a) {
    if (shape[a] < 1) fail("config: '{}.shape[{}]' must be positive (got {})", w, typed_axis(a), shape[a]);
    if (spacing[a] < 0) fail("config: '{}.spacing[{}]' must not be negative (got {})", w, a, spacing[a]);
  }
  if (crop != "centre" && crop != "foreground") fail("config: '{}.crop' must be centre or foreground (got '{}')", w, crop);
  if (!(val_fraction >= 0 && val_fraction < 1)) fail("config: '{}.val_fraction' must be within [0, 1) (got {})", w, val_fraction);
  if (val_max < 0) fail("config: '{}.val_max' must not be negative", w);
  if (labels != "none" && labels != "condition") fail("config: '{}.labels' must be none or condition (got '{}')", w, labels);
  for (size_t i = 0; i < label_names.size(); ++i)
    if (label_names[i].empty()) fail("config: '{}.label_names[{}]' is empty", w, i);
  if (label_names.size() == 1) fail("config: '{}.label_names' needs the background and at least one label", w);
  for (size_t i = 0; i < channels.size(); ++i) {
    if (channels[i].empty()) fail("config: '{}.channels[{}]' is empty", w, i);
    for (size_t j = 0; j < i; ++j)
      if (channels[j] == channels[i]) fail("config: '{}.channels' names '{}' twice", w, channels[i]);
  }
  source.validate(w + ".source");
  intensity().validate();
}

nlohmann::json DataParams::record_settings() const {
  return {{"modality", modality}, {"shape", shape}, {"spacing", spacing}, {"crop", crop}, {"ct_window", ct_window},
          {"mr_percentiles", mr_percentiles}, {"channels", channels}};
}

SourceParams DataParams::effective_source() const {
  SourceParams s = source;
  if (s.dicom.modality.empty()) s.dicom.modality = {modality_enum() == Modality::CT ? "CT" : "MR"};
  return s;
}

Modality DataParams::modality_enum() const {
  if (modality == "ct" || modality == "CT") return Modality::CT;
  if (modality == "mr" || modality == "MR") return Modality::MR;
  fail("config: 'data.modality' must be mr or ct (got '{}')", modality);
}

IntensityParams DataParams::intensity() const {
  IntensityParams p;
  p.ct_lo = ct_window[0];
  p.ct_hi = ct_window[1];
  p.mr_lo_percentile = mr_percentiles[0];
  p.mr_hi_percentile = mr_percentiles[1];
  p.mr_output_max = mr_output_max;
  return p;
}

TrainingVolume preprocess(const std::vector<Volume>& in, const DataParams& p, int64_t class_label, const std::string& source) {
  if (in.empty()) fail("{}: a case without an image", source);
  const bool resample = p.spacing[0] > 0 && p.spacing[1] > 0 && p.spacing[2] > 0;
  TrainingVolume t;
  std::vector<Volume> vs;
  for (size_t c = 0; c < in.size(); ++c) {
    if (c > 0 && (in[c].size_xyz() != in[0].size_xyz() || !in[c].geometry.approx_equal(in[0].geometry, 1e-4)))
      fail("{}: channel {} is not on the grid of channel 0 ({} x {} x {} voxels at {} mm vs {} x {} x {} at {} mm, or another "
           "origin / direction); the channels of a case must be co-registered on one grid",
           source, c, in[c].width(), in[c].height(), in[c].depth(), fmt::join(in[c].geometry.spacing, " x "), in[0].width(),
           in[0].height(), in[0].depth(), fmt::join(in[0].geometry.spacing, " x "));
    Volume v = in[c];
    v.modality = p.modality_enum();
    if (c > 0) v.label.reset();
    if (resample) v = resample_to_spacing(v, p.spacing);
    t.windows.push_back(window_for(v, p.intensity()));
    v.image = normalise(v.image, t.windows.back());
    vs.push_back(std::move(v));
  }
  const CropMode mode = p.crop == "foreground" ? CropMode::Foreground : CropMode::Centre;
  // One crop box for every channel: without a label map the foreground is that of any channel.
  std::optional<torch::Tensor> box_mask = vs.front().label;
  if (!box_mask && vs.size() > 1) {
    auto any = vs.front().image > -0.99;
    for (size_t c = 1; c < vs.size(); ++c) any = any | (vs[c].image > -0.99);
    box_mask = any.to(torch::kLong);
  }
  std::vector<torch::Tensor> images;
  for (auto& v : vs) {
    const auto own_label = v.label;
    v.label = box_mask;
    Volume cropped = crop_or_pad(v, p.shape, mode, -1.0, -0.99);
    images.push_back(cropped.image);
    if (&v == &vs.front()) {
      t.geometry = cropped.geometry;
      if (own_label) {  // the box mask is the label map itself when there is one
        t.label = cropped.label->contiguous();
        t.label_count = t.label.numel() > 0 ? t.label.max().item<int64_t>() + 1 : 0;
      }
    }
  }
  t.x = torch::stack(images).contiguous();  // [C, D, H, W]
  t.class_label = class_label;
  t.source = source;
  return t;
}

TrainingVolume preprocess(const Volume& v, const DataParams& p, int64_t class_label, const std::string& source) {
  return preprocess(std::vector<Volume>{v}, p, class_label, source);
}

}  // namespace meddiff
