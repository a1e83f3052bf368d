#include "stream.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

namespace rnnfast {

Stream::Stream(std::vector<std::shared_ptr<const PackedWeights>> layers, int batch, bool residual)
    : layers_(std::move(layers)), B_(batch), residual_(residual) {
  if (layers_.empty()) throw std::invalid_argument("a stream needs at least one layer");
  if (batch < 1) throw std::invalid_argument("batch_size must be >= 1, got " + std::to_string(batch));
  for (size_t k = 0; k < layers_.size(); ++k) {
    const PackedWeights& w = *layers_[k];
    if (k > 0 && w.input_size() != layers_[k - 1]->state_size())
      throw std::invalid_argument("layer " + std::to_string(k) + " input size does not match the layer below");
    if (w.cell() != layers_[0]->cell()) throw std::invalid_argument("all layers of a stream must use the same cell");
    if (w.isa() != layers_[0]->isa()) throw std::invalid_argument("all layers of a stream must use the same ISA");
    if (w.format() != layers_[0]->format() || w.dot_products() != layers_[0]->dot_products())
      throw std::invalid_argument("all layers of a stream must use the same weight format");
    const Layout& L = w.layout();
    const size_t slot = static_cast<size_t>(B_) * L.Hp;
    LayerBuffers b;
    b.gates = AlignedBuffer(static_cast<size_t>(B_) * L.GHp);
    b.hs = AlignedBuffer(2 * slot, true);
    if (w.cell() == CellKind::lstm) b.cs = AlignedBuffer(2 * slot, true);
    if (w.variant().reset_before) b.aux = AlignedBuffer(slot);  // r⊙h of a step
    b.y = AlignedBuffer(static_cast<size_t>(B_) * w.state_size());
    // The first layer's input and the last one's output are the caller's, set by each step.
    ForwardArgs a = forward_args(w, 1, B_, k > 0 ? buf_[k - 1].y.data() : nullptr, b.y.data(), w.state_size());
    if (w.proj_size()) b.aux = AlignedBuffer(slot);  // m = o * tanh(c) before the projection
    if (w.layer_norm()) b.rec = AlignedBuffer(static_cast<size_t>(B_) * L.GHp);  // the raw recurrent part
    a.ln.rec = b.rec.data();
    a.gates = b.gates.data();
    a.chunk = 1;
    a.hs = b.hs.data();
    a.cs = b.cs.data();
    a.aux = b.aux.data();
    b.int8.attach(a, B_);
    buf_.push_back(std::move(b));
    args_.push_back(a);
  }
  std::vector<const PackedWeights*> ws;
  for (const auto& w : layers_) ws.push_back(w.get());
  team_ = team_for_stack(ws, B_);
}

void Stream::step(const float* x, float* out) {
  args_.front().x = x;
  args_.back().y = out;
  for (ForwardArgs& a : args_) a.first_slot = slot_;
  const IsaKernels& kernels = kernels_for(layers_[0]->isa());
  if (!residual_) {
    kernels.forward(args_.data(), static_cast<int>(args_.size()), team_);
  } else {  // one team call per layer: the skip adds the layer's input once its output is complete
    for (size_t k = 0; k < args_.size(); ++k) {
      kernels.forward(&args_[k], 1, team_);
      if (k == 0) continue;
      float* y = args_[k].y;
      const float* in = args_[k].x;  // the layer below's output, its own skip already added
      const size_t n = static_cast<size_t>(B_) * layers_[k]->state_size();
      for (size_t i = 0; i < n; ++i) y[i] += in[i];
    }
  }
  args_.back().y = buf_.back().y.data();
  slot_ ^= 1;  // the new state is in the other slot
}

void Stream::reset() {
  for (auto& b : buf_) {
    std::memset(b.hs.data(), 0, sizeof(float) * b.hs.size());
    if (b.cs.data()) std::memset(b.cs.data(), 0, sizeof(float) * b.cs.size());
  }
}

void Stream::get_state(float* h, float* c) const {
  for (size_t k = 0; k < layers_.size(); ++k) {
    const int H = layers_[k]->hidden_size(), P = layers_[k]->state_size(), Hp = layers_[k]->layout().Hp;
    for (int b = 0; b < B_; ++b) {
      const size_t src = static_cast<size_t>(b) * Hp;
      std::memcpy(h + (k * B_ + b) * static_cast<size_t>(P), state_h(k) + src, sizeof(float) * P);
      if (c && state_c(k)) std::memcpy(c + (k * B_ + b) * static_cast<size_t>(H), state_c(k) + src, sizeof(float) * H);
    }
  }
}

void Stream::set_state(const float* h, const float* c) {
  for (size_t k = 0; k < layers_.size(); ++k) {
    const int H = layers_[k]->hidden_size(), P = layers_[k]->state_size(), Hp = layers_[k]->layout().Hp;
    for (int b = 0; b < B_; ++b) {
      const size_t dst = static_cast<size_t>(b) * Hp;
      std::memcpy(state_h(k) + dst, h + (k * B_ + b) * static_cast<size_t>(P), sizeof(float) * P);
      if (c && state_c(k)) std::memcpy(state_c(k) + dst, c + (k * B_ + b) * static_cast<size_t>(H), sizeof(float) * H);
    }
  }
}

}  // namespace rnnfast
