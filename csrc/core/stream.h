// Low-latency inference one time step at a time through a stack of unidirectional layers.
// Everything is allocated up front: a step allocates nothing, copies no state (each layer's two
// state slots swap roles every step) and runs the whole stack in one parallel region. One Stream
// per thread of use; the packed weights are shared.
#pragma once

#include <memory>
#include <vector>

#include "layer.h"

namespace rnnfast {

class Stream {
 public:
  // residual: every layer after the first adds its input to its output (a residual stack).
  Stream(std::vector<std::shared_ptr<const PackedWeights>> layers, int batch, bool residual = false);

  int batch() const { return B_; }
  int num_layers() const { return static_cast<int>(layers_.size()); }
  int input_size() const { return layers_.front()->input_size(); }
  int hidden_size() const { return layers_.back()->hidden_size(); }
  int output_size() const { return layers_.back()->state_size(); }  // columns of h: proj_size, or H
  bool has_cell_state() const { return layers_.front()->cell() == CellKind::lstm; }

  // x: (B, input_size); out: (B, output_size) of the last layer.
  void step(const float* x, float* out);
  void reset();
  // States as (num_layers, B, output_size) for h and (num_layers, B, H) for c (only for LSTM); the
  // layers of a stack share their sizes.
  void get_state(float* h, float* c) const;
  void set_state(const float* h, const float* c);

 private:
  struct LayerBuffers {
    AlignedBuffer gates, hs, cs, y, aux;  // hs/cs: two padded slots; the state lives in slot `slot_`
    Int8Scratch int8;
    AlignedBuffer rec;  // aux: reset_before's r⊙h, or proj_size's m before the projection; rec: LnBuffers::rec
  };
  float* state_h(size_t k) const { return buf_[k].hs.data() + slot_ * static_cast<size_t>(B_) * layers_[k]->layout().Hp; }
  float* state_c(size_t k) const {
    return buf_[k].cs.data() ? buf_[k].cs.data() + slot_ * static_cast<size_t>(B_) * layers_[k]->layout().Hp : nullptr;
  }

  std::vector<std::shared_ptr<const PackedWeights>> layers_;
  std::vector<LayerBuffers> buf_;
  std::vector<ForwardArgs> args_;  // per layer, filled once; a step sets x, y and the slot
  int B_, slot_ = 0;
  bool residual_;
  TeamPlan team_;
};

}  // namespace rnnfast
