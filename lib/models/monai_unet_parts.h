#pragma once
// The parts MONAI's DiffusionModelUNet shares with its ControlNet (models/monai_unet.h, models/monai_controlnet.h):
// the residual block, one level of the down or up path, the whole down path with the middle block, and the
// time (+ class) embedding. Both networks register them under MONAI's names ("down_blocks", "middle_block"), so
// a ControlNet's copy of the U-Net's encoder loads by the same keys.
#include "models/monai_blocks.h"
#include "models/monai_unet_params.h"

#include <torch/torch.h>

#include <memory>
#include <vector>

namespace meddiff {

// MONAI's DiffusionUNetResnetBlock; `resample` +1: nearest x2 upsampling, -1: 2x2x2 average pooling.
struct MonaiResBlockImpl : torch::nn::Module {
  MonaiResBlockImpl(const MonaiUNetParams& p, int64_t in, int64_t out, int64_t emb, int resample = 0);
  torch::Tensor forward(torch::Tensor x, const torch::Tensor& emb);
  int resample;
  MonaiNorm norm1{nullptr}, norm2{nullptr};
  MonaiConv conv1{nullptr}, conv2{nullptr}, skip_connection{nullptr};
  torch::nn::Linear time_emb_proj{nullptr};
};

// MONAI's stride-2 convolution downsampler ("op").
struct MonaiConvDownImpl : torch::nn::Module {
  explicit MonaiConvDownImpl(int64_t c);
  MonaiConv op{nullptr};
};

// One level of the down or the up path: MONAI's DownBlock / AttnDownBlock / UpBlock / AttnUpBlock.
struct MonaiUNetLevelImpl : torch::nn::Module {
  std::vector<std::shared_ptr<MonaiResBlockImpl>> res;
  std::vector<MonaiAttention> att;
  std::shared_ptr<MonaiResBlockImpl> res_sampler;
  std::shared_ptr<MonaiConvDownImpl> conv_down;
  MonaiUpsample conv_up{nullptr};
  torch::Tensor resample(const torch::Tensor& h, const torch::Tensor& emb);
  bool resamples() const { return res_sampler || conv_down || conv_up; }
  // A residual block from `in` to `out` channels (and self-attention after it where `level` attends), under MONAI's
  // names "resnets.N" ("attentions.N").
  void add_block(const MonaiUNetParams& p, int64_t in, int64_t out, int64_t emb, int64_t level);
  // A new level appended to `list` (and to `levels`).
  static std::shared_ptr<MonaiUNetLevelImpl> append(torch::nn::ModuleList list, std::vector<std::shared_ptr<MonaiUNetLevelImpl>>& levels);
  torch::nn::ModuleList resnets{nullptr}, attentions{nullptr};
};

// The down path ("down_blocks") and the middle block ("middle_block": res block, attention, res block), registered
// on `owner`; `emb_dim` is the width of the embedding the residual blocks take.
struct MonaiDownPath {
  void build(torch::nn::Module& owner, const MonaiUNetParams& p, int64_t emb_dim);
  // h: conv_in's output. Appends every output MONAI keeps for the skips (h itself first) and returns the last.
  torch::Tensor down(torch::Tensor h, const torch::Tensor& emb, std::vector<torch::Tensor>& skips);
  torch::Tensor middle(const torch::Tensor& h, const torch::Tensor& emb);
  std::vector<std::shared_ptr<MonaiUNetLevelImpl>> levels;
  std::shared_ptr<MonaiResBlockImpl> mid_res1, mid_res2;
  MonaiAttention mid_attention{nullptr};
  std::vector<int64_t> skip_channels;  // channels of every kept output, in order
  int64_t out_channels = 0;
};

MonaiAttention monai_unet_attention(const MonaiUNetParams& p, int64_t channels, int64_t level);

// MONAI's embedding: time_embed(sinusoidal(timesteps, channels[0])) in x's type, plus class_embedding(class_labels)
// when the network has one (then class_labels must be given).
torch::Tensor monai_time_class_embedding(torch::nn::Sequential& time_embed, torch::nn::Embedding& class_embedding, int64_t channels0,
                                         const torch::Tensor& x, const torch::Tensor& timesteps, const torch::Tensor& class_labels,
                                         const char* network);

}  // namespace meddiff
