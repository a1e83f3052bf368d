// The contract between the driver (layer.cpp, any ISA) and the per-ISA kernels (isa_*.cpp).
// Plain structs of sizes and raw pointers: the kernels allocate nothing and know no Python.
#pragma once

#include <cstdint>

#include "cpu.h"
#include "team.h"

namespace rnnfast {

enum class CellKind { rnn_tanh = 0, rnn_relu = 1, lstm = 2, gru = 3 };

// How inference weights are stored: float32, bfloat16 (widened, or on vdpbf16ps) or int8 (u8 x s8
// dot products). Training always uses float32.
enum class WeightFormat { float32 = 0, bfloat16 = 1, int8 = 2 };

// Bytes of one quantized row of K values: padded to the 4 values one dot-product lane sums.
inline long int8_row_bytes(int K) { return (static_cast<long>(K) + 3) / 4 * 4; }
// Bytes of one bfloat16 row for vdpbf16ps: padded to the 2 values one lane sums.
inline long bf16_pair_row_bytes(int K) { return (static_cast<long>(K) + 1) / 2 * 4; }

// PyTorch row (gate g, unit j) of internal gate column c, or -1 for a padding column.
inline int torch_row(int c, int G, int NB, int H) {
  const int jb = c / (G * NB), rem = c % (G * NB), g = rem / NB, j = jb * NB + rem % NB;
  return j < H ? g * H + j : -1;
}

inline int gate_count(CellKind c) { return c == CellKind::lstm ? 4 : c == CellKind::gru ? 3 : 1; }

// The literature's (and ONNX's) variants of a cell kind; both off is PyTorch's cell.
struct CellVariant {
  bool peephole = false;      // LSTM, Gers & Schmidhuber 2000: i, f also see c_{t-1}, o sees c_t (diagonal)
  bool reset_before = false;  // GRU, Cho et al. 2014 (ONNX linear_before_reset=0): n = tanh(x_n + W_hn (r⊙h) + b_hn)
};
// The layer-normalised LSTM (Ba, Kiros & Hinton 2016): a = LN(x W_ihᵀ) + b_ih + LN(h W_hhᵀ) + b_hh,
// each LN over the 4H gates, and h' = o * tanh(LN(c')). Its gains and biases are one array of 18H
// floats, PyTorch gate order: input gain, input bias (4H each), recurrent gain, recurrent bias
// (4H each), cell gain, cell bias (H each).
constexpr double kLayerNormEps = 1e-5;  // as torch.nn.LayerNorm

// How one ISA lays out a layer's weights and gate buffers. Gate buffers have GHp columns ordered
// [hidden block][gate][unit in block] so that one tile holds every gate of its hidden units.
struct Layout {
  int W = 0;       // floats per SIMD vector
  int NB = 0;      // hidden units per block
  int G = 0;       // gates
  int Hp = 0;      // hidden size padded to a multiple of NB
  int GHp = 0;     // G * Hp: width of a gate row
  int NR = 0;      // panel width of the general GEMM
  int P = 0;       // columns of h: the LSTM's proj_size, else H (the recurrent GEMM's K)
  long wx = 0, wh = 0, wx_bwd = 0, wh_bwd = 0;  // packed sizes in floats
  long whr = 0, whr_bwd = 0;  // the projection W_hr (P x H) packed for forward and backward, or 0
  // W_ih packed per hidden block like wh, for single steps (0: the wx panels already are).
  long wx_step = 0;
  CellVariant variant;
  // reset_before: W_hh is packed as r,z panels of every block, then the n panels (h_rz floats in
  // front); wh_n_bwd: W_hn packed for the gradient of r⊙h (dan W_hn), 0 otherwise.
  long wh_rz = 0, wh_n_bwd = 0;
};

struct PackedView {  // pointers into a PackedWeights (layer.h)
  const float *wx, *wh, *wx_bwd, *wh_bwd, *bx, *bh;
  const uint16_t *wx16, *wh16;  // bfloat16 copies of wx, wh (opt-in inference weights), else null
  // W_ih per hidden block (float or bfloat16, as wh), or null: with it a one-step forward computes
  // each block's input part in the same tile as its recurrent part, with no phase in between.
  const float* wx_step;
  const uint16_t* wx16_step;
  const float* wh_n_bwd;  // reset_before with backward, else null
  const float* peep;      // peephole weights [hidden block][i, f, o][unit], or null
  // int8 weights (opt-in inference weights, kernels/gemm_int8.h), else null: W_ihᵀ and W_hhᵀ both
  // packed per hidden block, per-column scales and the zero-point compensation 128 * Σ_k q(k, c).
  const int8_t *wx8, *wh8;
  const float *wx8_scale, *wh8_scale;
  const int32_t *wx8_comp, *wh8_comp;
  // bfloat16 weights for vdpbf16ps (kernels/gemm_bf16.h; then wx16, wh16 are null), else null.
  const uint16_t *wx16p, *wh16p;
  bool dot;  // reduced precision on the CPU's dot-product instructions (VNNI / AVX512_BF16 twin)
  // LSTM projection (h = W_hr m, m = o * tanh(c)): W_hrᵀ in panels over P columns, and W_hr in
  // panels over H columns for backward; null without a projection.
  const float *whr, *whr_bwd;
  // Layer-normalised LSTM: gains and biases in gate-column order (zeros in the padding): input
  // gain, input bias, recurrent gain, recurrent bias (GHp each), cell gain, cell bias (Hp each).
  // Null without layer norm.
  const float* ln;
};

// Buffers of the layer-normalised LSTM (null without): rec, the raw recurrent part of a step's
// rows (B rows of GHp); in training, for each valid row (RowPlan): the normalised input and
// recurrent parts (xhat, hhat: rows of GHp), the normalised c (chat: rows of Hp) and the three
// 1/std (rstd: 3 per row). Backward: dn, the gradient of LN(c)'s output (rows of Hp); xhat is
// overwritten with the gradient of the raw input part.
struct LnBuffers {
  float *rec, *xhat, *hhat, *chat, *rstd, *dn;
};

// Which batch rows each time step computes. A layer sorts its rows by length, longest first (a
// stable sort), so the rows still running at time t are a prefix 0..rows(t)-1 of the sorted rows.
// Buffers of training activations, gathered inputs and gate rows hold only valid (t, row) pairs,
// time-major: (t, p) at row first(t) + p. Dense (start null): every row runs all T steps, in the
// caller's order, (t, p) at t*B + p.
struct RowPlan {
  int T = 0, B = 0;
  const int* order = nullptr;   // sorted row p -> the caller's row; null: identity
  const long* start = nullptr;  // (T+1): first(t); null: dense

  bool dense() const { return start == nullptr; }
  int rows(int t) const { return t < 0 || t >= T ? 0 : start ? static_cast<int>(start[t + 1] - start[t]) : B; }
  long first(int t) const { return start ? start[t] : static_cast<long>(t) * B; }
  long total() const { return first(T); }  // valid (t, row) pairs
  int user(int p) const { return order ? order[p] : p; }
  // Training states: the state row p enters time t with is at first(t) + p; after its last step
  // its final state is at total() + p.
};

struct ForwardArgs {
  CellKind cell;
  Layout L;
  PackedView w;
  int T, B, I, H;
  const float* x;         // (T, B, I), the caller's rows
  RowPlan rows;
  float* xg;              // not dense: x's valid rows gathered (training: all, inference: a chunk's)
  bool reverse;
  float* y;               // row (t, b) at y + (t*B + b)*ldy, L.P columns (b: the caller's row)
  long ldy;
  bool training;          // keep activations for backward
  float* gates;           // valid rows of GHp (inference: those of a chunk of steps)
  int chunk;              // time steps per x-projection chunk (T in training)
  float* hs;              // states, rows of Hp, sorted rows: training total()+B (RowPlan), inference
                          // 2 slots of B rows
  int first_slot;         // inference: the slot (0 or 1) holding the initial state
  float* cs;              // LSTM cell states, same shape as hs
  float* aux;             // GRU training: recurrent part of n (reset_before: r⊙h), valid rows of Hp;
                          // reset_before inference: r⊙h, B rows of Hp; LSTM with a projection:
                          // m = o * tanh(c) before it (training: valid rows, else B rows)
  LnBuffers ln;
  // int8 and vdpbf16ps weights: the encoded rows of a chunk's x (chunk*B rows of the larger of
  // int8_row_bytes(I), bf16_pair_row_bytes(I)) and their scales (h is encoded per thread inside
  // the kernel, kernels/sequence_int8.h).
  uint8_t* xq;
  float* xq_scale;
  TeamPlan team;
};

struct BackwardArgs {
  CellKind cell;
  Layout L;
  PackedView w;
  int T, B, I, H;
  const float* x;         // valid rows of the input (dense: the caller's x; else the forward's xg)
  RowPlan rows;           // the forward's
  bool reverse;
  const float* dy;        // like y
  long ldy;
  float* dx;              // (T, B, I), the caller's rows
  float* dx_rows;         // not dense: scratch for dx's valid rows (may be x: read before)
  bool dx_accumulate;
  float *dh0, *dc0;       // (B, L.P) and (B, H); dc0 only for LSTM
  float *gw_ih, *gw_hh, *gb_ih, *gb_hh;  // PyTorch layout, accumulated; biases may be null
  float* gw_hr;           // projection: W_hr's gradient (P x H), accumulated; else null
  float* dh_rows;         // projection: scratch, the gradient of each valid row's h (rows of Hp)
  LnBuffers ln;           // the forward's (layer norm)
  float* gln;             // layer norm: its gains' and biases' gradient (18H, kernel_api.h top), accumulated
  float* gates;           // in: activations from forward; out: gradient of pre-activations (input side)
  float* dgh;             // GRU: gradient of the recurrent pre-activations (like gates); else == gates
  const float *hs, *cs, *aux;  // from forward
  float *dh_pass, *dc;    // (B, Hp) each, sorted rows; in: gradients of h_n and c_n (padded)
  float* wgrad;           // scratch (max(I, H), GHp); with one_pass_wgrad (I + max(I, H), GHp)
  bool one_pass_wgrad;    // W_ih's and W_hh's gradients share dG, packed once for both (kernels/grads.h)
  float* bpack;           // scratch kGemmKC x (GHp rounded to NR)
  float* colsum;          // scratch (GHp rounded to NR): bias-gradient sums
  float* dn;              // reset_before: scratch (B, Hp), one step's n-gate gradients
  float* gw_p;            // peephole: (3, H) gradients of p_i, p_f, p_o, accumulated
  TeamPlan team;
};

struct IsaKernels {
  // P: the LSTM's proj_size, 0 for none.
  Layout (*layout)(CellKind cell, CellVariant variant, int I, int H, int P);
  // Packs PyTorch-layout weights (biases may be null; w_p: (3, H) peepholes i, f, o, or null;
  // w_hr (P x H) only with a projection) into the buffers of PackedView.
  void (*pack)(CellKind cell, const Layout& L, int I, int H, const float* w_ih, const float* w_hh,
               const float* b_ih, const float* b_hh, const float* w_p, const float* w_hr, bool with_backward,
               float* wx, float* wh, float* wx_bwd, float* wh_bwd, float* wx_step, float* wh_n_bwd, float* bx,
               float* bh, float* peep, float* whr, float* whr_bwd);
  // ln (18H, PyTorch gate order) -> PackedView::ln's layout (4 GHp + 2 Hp floats).
  void (*pack_ln)(const Layout& L, int H, const float* ln, float* out);
  // Layers one after another in one team call (their own team fields are ignored): a stack of
  // layers costs one call to the team, not one per layer.
  void (*forward)(const ForwardArgs* layers, int n, TeamPlan team);
  void (*backward)(const BackwardArgs& a);
  // Two independent layer directions at once, each on half of the team (their own team fields
  // are ignored); the two must not write the same memory.
  void (*forward_pair)(const ForwardArgs& a0, const ForwardArgs& a1, TeamPlan team);
  void (*backward_pair)(const BackwardArgs& a0, const BackwardArgs& a1, TeamPlan team);
  // C (M x N) (+)= A (M x K, row stride lda) B, where B(k, n) = B[k*b_rs + n*b_cs] (so a transposed
  // B costs nothing); packs B into `work` (gemm_work_size floats). The kernels' GEMM, exposed for
  // the dense layers, tests and benchmarks.
  void (*gemm)(int M, int N, int K, const float* A, long lda, const float* B, long b_rs, long b_cs, float* C,
               long ldc, bool accumulate, float* work, int nthreads);
  long (*gemm_work_size)(int K, int N);
  // The int8 forward's products for tests (kernels/gemm_int8.h): C (M x N, int32) = Σ_k q(A) q,
  // with A (M x K floats) quantized per row as the forward does (scales to a_scale), q (N x K).
  void (*int8_products)(int M, int N, int K, const float* A, const int8_t* q, int32_t* C, float* a_scale);
};

namespace generic { const IsaKernels& kernels(); }
#if RNNFAST_X86
namespace avx2 { const IsaKernels& kernels(); }
namespace avx512 { const IsaKernels& kernels(); }
#endif

inline const IsaKernels& kernels_for(Isa isa) {
  switch (isa) {
#if RNNFAST_X86
    case Isa::avx512: return avx512::kernels();
    case Isa::avx2: return avx2::kernels();
#endif
    default: return generic::kernels();
  }
}

// The dot-product twin of an ISA's kernels (forward, forward_pair and int8_products only; the
// same sources compiled with AVX-VNNI, or AVX512-VNNI and AVX512_BF16), or null where this build
// has none (a non-x86 build, or a compiler without the flags: RNNFAST_NO_AVX{2,512}_DOT). Whether the CPU can run it is precision.h's dot_products_for.
#if RNNFAST_X86 && !defined(RNNFAST_NO_AVX2_DOT)
namespace avx2dot { const IsaKernels& kernels(); }
#endif
#if RNNFAST_X86 && !defined(RNNFAST_NO_AVX512_DOT)
namespace avx512dot { const IsaKernels& kernels(); }
#endif
inline const IsaKernels* dot_kernels_for(Isa isa) {
  switch (isa) {
#if RNNFAST_X86 && !defined(RNNFAST_NO_AVX512_DOT)
    case Isa::avx512: return &avx512dot::kernels();
#endif
#if RNNFAST_X86 && !defined(RNNFAST_NO_AVX2_DOT)
    case Isa::avx2: return &avx2dot::kernels();
#endif
    default: return nullptr;
  }
}

constexpr int kBackwardPackRows = 256;  // K-block of the weight-gradient GEMMs (== kGemmKC)

}  // namespace rnnfast
