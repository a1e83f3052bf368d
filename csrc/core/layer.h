// One recurrent layer in one direction over a whole sequence: packed weights, training cache,
// forward and backward. Plain C++ (usable without Python); errors are std::invalid_argument.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "kernel_api.h"

namespace rnnfast {

constexpr int kInt8MaxK = 65536;  // int8 sums of K <= 65536 products of 255 * 127 fit in int32

// 64-byte aligned float storage (SIMD loads, no false sharing of cache lines at the start).
// huge: packed weights, re-read every step. On Linux those of kHugeMinBytes or more go on 2 MiB
// transparent huge pages (2 MiB aligned, madvise): physically contiguous, so a thread's slice
// spreads evenly over the L2's sets, where 4 KiB pages land on them at random; and fewer TLB
// misses. At most 2 MiB - 1 more memory per such buffer.
class AlignedBuffer {
 public:
  static constexpr size_t kHugeMinBytes = size_t{1} << 20;
  AlignedBuffer() = default;
  explicit AlignedBuffer(size_t n, bool zero = false, bool huge = false);
  float* data() const { return p_.get(); }
  size_t size() const { return n_; }

 private:
  struct Free {
    void operator()(float* p) const;
  };
  std::unique_ptr<float, Free> p_;
  size_t n_ = 0;
};

// Weights of one layer direction, packed for one ISA. Pack once, use for many calls.
class PackedWeights {
 public:
  // Arrays in PyTorch layout: w_ih (G*H, I), w_hh (G*H, H), b_ih and b_hh (G*H) or null.
  // with_backward also packs the transposed copies that backward needs.
  // format (inference only) narrows the input and recurrent weights: bfloat16 (half the bytes each
  // step; ~1e-3 relative difference) or int8 (a quarter; per-output-channel scales, activations
  // quantized per row and step, kernels/gemm_int8.h; ~1e-2).
  // step_weights also packs W_ih per hidden block for one-step forwards (streams, cells), where
  // the ISA's GEMM panels are not already laid out that way: one phase per step instead of two.
  // variant: peephole (LSTM; w_p then holds p_i, p_f, p_o as (3, H)) or reset_before (GRU).
  PackedWeights(CellKind cell, int input_size, int hidden_size, const float* w_ih, const float* w_hh,
                const float* b_ih, const float* b_hh, bool with_backward, Isa isa,
                WeightFormat format = WeightFormat::float32, bool step_weights = false, CellVariant variant = {},
                const float* w_p = nullptr, int proj_size = 0, const float* w_hr = nullptr,
                const float* layer_norm = nullptr);
  // proj_size > 0 (LSTM only, < hidden_size, as torch.nn.LSTM): h = W_hr (o * tanh(c)) with
  // w_hr (proj_size, H), and w_hh is (G*H, proj_size).
  // layer_norm (LSTM only, no projection): the layer-normalised LSTM's gains and biases (18H,
  // kernel_api.h).

  CellKind cell() const { return cell_; }
  CellVariant variant() const { return L_.variant; }
  Isa isa() const { return isa_; }
  int input_size() const { return I_; }
  int hidden_size() const { return H_; }
  int proj_size() const { return L_.P == H_ ? 0 : L_.P; }  // 0: no projection
  int state_size() const { return L_.P; }                  // columns of h and of the output
  bool layer_norm() const { return ln_.data() != nullptr; }
  bool has_backward() const { return with_backward_; }
  WeightFormat format() const { return format_; }
  // Whether the forward runs on the CPU's dot-product instructions (decided when packed).
  bool dot_products() const { return dot_; }
  bool step_weights() const { return step_weights_; }
  const Layout& layout() const { return L_; }
  PackedView view() const;

 private:
  void pack_int8(const float* w_ih, const float* w_hh);
  void pack_bf16_pairs(const float* w_ih, const float* w_hh);

  CellKind cell_;
  Isa isa_;
  int I_, H_;
  bool with_backward_, step_weights_;
  WeightFormat format_;
  bool dot_ = false;
  Layout L_;
  AlignedBuffer wx_, wh_, wx_bwd_, wh_bwd_, wx_step_, wh_n_bwd_, bx_, bh_, peep_, whr_, whr_bwd_, ln_;
  std::vector<uint16_t> wx16_, wh16_, wx16_step_;
  std::vector<uint16_t> wx16p_, wh16p_;  // bfloat16 pairs for vdpbf16ps, kernels/gemm_bf16.h
  std::vector<int8_t> wx8_, wh8_;  // int8 panels, kernels/gemm_int8.h
  std::vector<float> wx8_scale_, wh8_scale_;
  std::vector<int32_t> wx8_comp_, wh8_comp_;
};

// The scratch of a forward with int8 weights (quantized rows of x and their scales);
// attach() points a's fields at it, sized for x_rows input rows at a time. No-op for other weights.
struct Int8Scratch {
  AlignedBuffer bytes, scales;
  void attach(ForwardArgs& a, long x_rows);
};

// Grows a buffer to at least n floats; keeps it (and its already-mapped pages) otherwise.
void ensure_size(AlignedBuffer& b, size_t n);
// Test hook: whether weights packed from now on may use huge pages (default true); the previous setting.
bool set_huge_pages(bool on);

// What a training forward keeps for backward (activations, states), and the backward's scratch.
// Reusing one cache for every training step of a layer keeps its memory mapped: fresh buffers
// would page-fault (and be zeroed by the kernel) on every step.
struct TrainCache {
  int T = 0, B = 0;
  bool reverse = false;
  // The weights' shape the forward ran with: a backward with other weights would read past the buffers.
  CellKind cell = CellKind::rnn_tanh;
  CellVariant variant;
  Isa isa = Isa::generic;
  int I = 0, H = 0, P = 0;
  bool ln = false;
  bool consumed = true;  // no forward to differentiate yet
  std::vector<int> order;       // the rows sorted by length (RowPlan); empty when all run T steps
  std::vector<long> row_start;  // RowPlan::start, or empty
  AlignedBuffer gates, hs, cs, aux, xg;                    // forward activations; xg: x's valid rows
  AlignedBuffer dgh, dh_pass, dc, wgrad, bpack, colsum, dn, dh_rows;  // backward scratch
  AlignedBuffer ln_rec, ln_xhat, ln_hhat, ln_chat, ln_rstd;       // layer norm (LnBuffers)
  AlignedBuffer dx_other;  // the reverse direction's dx in layer_backward_pair

  RowPlan rows() const {
    return {T, B, order.empty() ? nullptr : order.data(), row_start.empty() ? nullptr : row_start.data()};
  }
};

// x: (T, B, I). lengths: B values in [1, T] or null (all T). h0, c0: (B, H) or null (zeros).
// Inside, the rows are sorted by length so that each step computes only the rows still running;
// inputs and outputs keep the caller's row order.
// y: row (t, b) at y + (t*B + b)*ldy, P floats written (P = w.state_size(): the proj_size, else H).
// h0, hn: (B, P); c0, cn: (B, H), only for LSTM.
// cache: null for inference (no activations kept), else filled for backward.
void layer_forward(const PackedWeights& w, int T, int B, const float* x, const int* lengths, bool reverse,
                   const float* h0, const float* c0, float* y, long ldy, float* hn, float* cn, TrainCache* cache);

// Gradients for the forward that filled cache. dy like y; dhn (B, P), dcn (B, H) or null. dx:
// (T, B, I) written, or added to when dx_accumulate. dh0 (B, P), dc0 (B, H). Parameter gradients
// are added to gw_ih (G*H, I), gw_hh (G*H, P), gb_ih, gb_hh (G*H; null when the layer has no
// bias), for a peephole LSTM gw_p (3, H) (required then), gw_hr (P, H; required with a projection).
void layer_backward(const PackedWeights& w, TrainCache& cache, const float* x, const float* dy, long ldy,
                    const float* dhn, const float* dcn, float* dx, bool dx_accumulate, float* dh0, float* dc0,
                    float* gw_ih, float* gw_hh, float* gb_ih, float* gb_hh, float* gw_p = nullptr,
                    float* gw_hr = nullptr, float* gln = nullptr);
// gln (18H): with layer norm, its gains' and biases' gradient, accumulated (required then).

// The two directions of a bidirectional layer at once (forward: reverse = false, reverse: true),
// each on half of the threads, never waiting for each other. Same per-direction results as two
// layer_forward calls; y, hn, cn, cache as there (y of each direction at its own offset).
struct DirectionForward {
  const PackedWeights* w;
  const float *h0, *c0;
  float* y;
  float *hn, *cn;
  TrainCache* cache;
};
void layer_forward_pair(const DirectionForward& d0, const DirectionForward& d1, int T, int B, const float* x,
                        const int* lengths, long ldy);

// Backward of a layer_forward_pair: dx (T, B, I) is written with the sum of both directions'.
// Per direction as layer_backward; dy points at that direction's columns.
struct DirectionBackward {
  const PackedWeights* w;
  TrainCache* cache;
  const float* dy;
  const float *dhn, *dcn;
  float *dh0, *dc0;
  float *gw_ih, *gw_hh, *gb_ih, *gb_hh;
  float* gw_p = nullptr;  // peephole LSTM, else null
  float* gw_hr = nullptr;  // with a projection
  float* gln = nullptr;    // with layer norm
};
void layer_backward_pair(const DirectionBackward& d0, const DirectionBackward& d1, const float* x, long ldy,
                         float* dx);

// The kernel arguments every forward of w shares (inference, forward in time, every row running
// all T steps); the caller adds the state and scratch buffers.
ForwardArgs forward_args(const PackedWeights& w, int T, int B, const float* x, float* y, long ldy);

// How the team runs `steps` sequential steps of one layer direction over B rows: threads from the
// work per step against the measured hand-off and wake-up costs (team.h).
TeamPlan team_for(const PackedWeights& w, int B, long steps);
// The same for several layers one after another per step (a stream step through a stack).
TeamPlan team_for_stack(const std::vector<const PackedWeights*>& layers, int B);

}  // namespace rnnfast
