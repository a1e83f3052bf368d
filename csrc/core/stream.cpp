#include "stream.h"

#include <cstring>
#include <stdexcept>
#include <string>

namespace rnnfast {

Stream::Stream(std::vector<std::shared_ptr<const PackedWeights>> layers, int batch)
    : layers_(std::move(layers)), lengths_(batch, 1), B_(batch) {
  if (layers_.empty()) throw std::invalid_argument("a stream needs at least one layer");
  if (batch < 1) throw std::invalid_argument("batch_size must be >= 1, got " + std::to_string(batch));
  for (size_t k = 0; k < layers_.size(); ++k) {
    const PackedWeights& w = *layers_[k];
    if (k > 0 && w.input_size() != layers_[k - 1]->hidden_size())
      throw std::invalid_argument("layer " + std::to_string(k) + " input size does not match the layer below");
    if (w.cell() != layers_[0]->cell()) throw std::invalid_argument("all layers of a stream must use the same cell");
    const Layout& L = w.layout();
    const size_t slot = static_cast<size_t>(B_) * L.Hp;
    LayerBuffers b;
    b.gates = AlignedBuffer(static_cast<size_t>(B_) * L.GHp);
    b.hs = AlignedBuffer(2 * slot, true);
    if (w.cell() == CellKind::lstm) b.cs = AlignedBuffer(2 * slot, true);
    b.y = AlignedBuffer(static_cast<size_t>(B_) * w.hidden_size());
    buf_.push_back(std::move(b));
  }
}

void Stream::step(const float* x, float* out) {
  const float* in = x;
  for (size_t k = 0; k < layers_.size(); ++k) {
    const PackedWeights& w = *layers_[k];
    LayerBuffers& b = buf_[k];
    const Layout& L = w.layout();
    const size_t slot = static_cast<size_t>(B_) * L.Hp;
    const bool last = k + 1 == layers_.size();
    ForwardArgs a{};
    a.cell = w.cell();
    a.L = L;
    a.w = w.view();
    a.T = 1;
    a.B = B_;
    a.I = w.input_size();
    a.H = w.hidden_size();
    a.x = in;
    a.lengths = lengths_.data();
    a.y = last ? out : b.y.data();
    a.ldy = w.hidden_size();
    a.gates = b.gates.data();
    a.chunk = 1;
    a.hs = b.hs.data();  // reads slot 0, writes slot 1
    a.cs = b.cs.data();
    a.nthreads = threads_for(B_, a.H, L.G);
    kernels_for(w.isa()).forward(a);
    std::memcpy(b.hs.data(), b.hs.data() + slot, sizeof(float) * slot);
    if (b.cs.data()) std::memcpy(b.cs.data(), b.cs.data() + slot, sizeof(float) * slot);
    in = a.y;
  }
}

void Stream::reset() {
  for (auto& b : buf_) {
    std::memset(b.hs.data(), 0, sizeof(float) * b.hs.size());
    if (b.cs.data()) std::memset(b.cs.data(), 0, sizeof(float) * b.cs.size());
  }
}

void Stream::get_state(float* h, float* c) const {
  for (size_t k = 0; k < layers_.size(); ++k) {
    const int H = layers_[k]->hidden_size(), Hp = layers_[k]->layout().Hp;
    for (int b = 0; b < B_; ++b) {
      const size_t dst = (k * B_ + b) * static_cast<size_t>(H), src = static_cast<size_t>(b) * Hp;
      std::memcpy(h + dst, buf_[k].hs.data() + src, sizeof(float) * H);
      if (c && buf_[k].cs.data()) std::memcpy(c + dst, buf_[k].cs.data() + src, sizeof(float) * H);
    }
  }
}

void Stream::set_state(const float* h, const float* c) {
  for (size_t k = 0; k < layers_.size(); ++k) {
    const int H = layers_[k]->hidden_size(), Hp = layers_[k]->layout().Hp;
    for (int b = 0; b < B_; ++b) {
      const size_t src = (k * B_ + b) * static_cast<size_t>(H), dst = static_cast<size_t>(b) * Hp;
      std::memcpy(buf_[k].hs.data() + dst, h + src, sizeof(float) * H);
      if (c && buf_[k].cs.data()) std::memcpy(buf_[k].cs.data() + dst, c + src, sizeof(float) * H);
    }
  }
}

}  // namespace rnnfast
