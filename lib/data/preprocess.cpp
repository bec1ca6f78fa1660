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
  for (size_t i = 0; i < channels.size(); ++i)
    if (channels[i].empty()) fail("config: '{}.channels[{}]' is empty", w, i);
  if (channels.size() > 1)
    fail("config: '{}.channels' names {} channels ({}); meddiff trains on one channel of a dataset so far: name one, e.g. "
         "[\"{}\"]", w, channels.size(), fmt::join(channels, ", "), channels.back());
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

TrainingVolume preprocess(const Volume& in, const DataParams& p, int64_t class_label, const std::string& source) {
  Volume v = in;
  v.modality = p.modality_enum();
  if (p.spacing[0] > 0 && p.spacing[1] > 0 && p.spacing[2] > 0) v = resample_to_spacing(v, p.spacing);
  TrainingVolume t;
  t.window = window_for(v, p.intensity());
  v.image = normalise(v.image, t.window);
  v = crop_or_pad(v, p.shape, p.crop == "foreground" ? CropMode::Foreground : CropMode::Centre, -1.0, -0.99);
  t.x = v.image.unsqueeze(0).contiguous();  // [1, D, H, W]
  if (v.label) t.label = v.label->contiguous();
  t.geometry = v.geometry;
  t.class_label = class_label;
  t.source = source;
  return t;
}

}  // namespace meddiff
