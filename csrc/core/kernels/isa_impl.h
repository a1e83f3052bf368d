// Everything one instruction set compiles: included by isa_{generic,avx2,avx512}.cpp inside the
// namespace rnnfast::<isa>, after the standard headers and with RNNFAST_VEC_FLOATS defined.
#include "core/kernels/simd.h"
#include "core/kernels/gemm.h"
#include "core/kernels/phases.h"
#include "core/kernels/grads.h"
#include "core/cells/rnn.h"
#include "core/cells/lstm.h"
#include "core/cells/gru.h"
#include "core/kernels/sequence.h"
#include "core/kernels/peak.h"
#include "core/kernels/forward_entry.h"

template <class Cell>
static Layout layout_for(CellVariant variant, int I, int H, int P) {
  Layout L;
  L.variant = variant;
  L.P = P ? P : H;
  L.W = W;
  L.NB = Cell::NB;
  L.G = Cell::G;
  L.Hp = ceil_div(H, Cell::NB) * Cell::NB;
  L.GHp = L.G * L.Hp;
  L.NR = GEMM_NV * W;
  L.wx = static_cast<long>(ceil_div(L.GHp, L.NR)) * L.NR * I;
  L.wh = static_cast<long>(L.GHp) * L.P;
  L.wx_bwd = static_cast<long>(ceil_div(I, L.NR)) * L.NR * L.GHp;
  const int bwd_cols = Cell::BWD_Q * Cell::NB;  // backward tiles span BWD_Q hidden blocks
  L.wh_bwd = static_cast<long>(ceil_div(L.P, bwd_cols)) * bwd_cols * L.GHp;
  if (P) {  // forward: W_hrᵀ (H x P) in panels of the cell's width; backward: W_hr (P x H) like wh_bwd
    L.whr = static_cast<long>(ceil_div(P, Cell::G * Cell::NB)) * Cell::G * Cell::NB * H;
    L.whr_bwd = static_cast<long>(ceil_div(L.Hp, bwd_cols)) * bwd_cols * P;
  }
  L.wx_step = Cell::G * Cell::U == GEMM_NV ? 0 : static_cast<long>(L.GHp) * I;  // GEMM panel == block?
  if (variant.reset_before) {  // n panels of GruResetBefore::kNBlocks blocks each (GruResetBefore)
    L.wh_rz = 2L * L.Hp * H;
    L.wh = L.wh_rz + static_cast<long>(ceil_div(L.Hp / Cell::NB, GruResetBefore::kNBlocks)) * GruResetBefore::kNBlocks * Cell::NB * H;
    L.wh_n_bwd = static_cast<long>(ceil_div(L.Hp, bwd_cols)) * bwd_cols * L.Hp;
  }
  return L;
}

static Layout layout(CellKind cell, CellVariant variant, int I, int H, int P) {
  switch (cell) {
    case CellKind::lstm: return layout_for<Lstm>(variant, I, H, P);
    case CellKind::gru: return layout_for<Gru>(variant, I, H, 0);
    default: return layout_for<Rnn<false>>(variant, I, H, 0);
  }
}

// Cho et al.'s GRU: W_hhᵀ as the r, z panels of every block (2 vectors wide), then the n panels
// (GruResetBefore::kNBlocks blocks wide), so each phase of a step reads only its own gates' weights; and W_hn
// (zero rows for the padding) packed for backward's d(r⊙h) = dan W_hn.
template <class Cell>
static void pack_reset_before(const Layout& L, int H, const float* w_hh, const float* whr, bool with_backward,
                              float* wh, float* wh_n_bwd) {
  constexpr int NB = Cell::NB, G = Cell::G;
  const int nblk = L.Hp / NB;
  std::vector<float> rz(static_cast<size_t>(2) * L.Hp * H), n(static_cast<size_t>(L.Hp) * H);
  for (int jb = 0; jb < nblk; ++jb)
    for (int c = 0; c < 3 * NB; ++c) {
      const float* src = whr + (static_cast<long>(jb) * G * NB + c) * H;
      float* dst = c < 2 * NB ? rz.data() + (static_cast<long>(jb) * 2 * NB + c) * H
                              : n.data() + (static_cast<long>(jb) * NB + c - 2 * NB) * H;
      std::copy(src, src + H, dst);
    }
  pack_panels<2>(H, 2 * L.Hp, rz.data(), 1, H, wh, 0, nblk);
  pack_panels<GruResetBefore::kNBlocks>(H, L.Hp, n.data(), 1, H, wh + L.wh_rz, 0, ceil_div(nblk, GruResetBefore::kNBlocks));
  if (!with_backward) return;
  std::vector<float> whn(static_cast<size_t>(L.Hp) * H, 0.0f);  // (n unit k, h unit j)
  std::copy(w_hh + 2L * H * H, w_hh + 3L * H * H, whn.begin());
  constexpr int bwd_cols = Cell::BWD_Q * NB;
  pack_panels<Cell::BWD_Q * Cell::U>(L.Hp, H, whn.data(), H, 1, wh_n_bwd, 0, ceil_div(L.Hp, bwd_cols));
}

// Rows of a PyTorch weight (G*H x K) in internal gate-column order, zero rows for padding.
static void to_internal_rows(const Layout& L, int H, int K, const float* src, float* dst) {
  for (int c = 0; c < L.GHp; ++c) {
    const int row = torch_row(c, L.G, L.NB, H);
    for (int k = 0; k < K; ++k) dst[static_cast<long>(c) * K + k] = row >= 0 ? src[static_cast<long>(row) * K + k] : 0.0f;
  }
}

template <class Cell>
static void pack_for(const Layout& L, int I, int H, const float* w_ih, const float* w_hh, const float* b_ih,
                     const float* b_hh, const float* w_p, const float* w_hr, bool with_backward, float* wx,
                     float* wh, float* wx_bwd, float* wh_bwd, float* wx_step, float* wh_n_bwd, float* bx, float* bh,
                     float* peep, float* whr_f, float* whr_b) {
  constexpr int NV = Cell::G * Cell::U, NBWD = Cell::BWD_Q * Cell::NB;
  const int P = L.P;  // columns of h: the recurrent GEMM's K
  // Packing is once per weight change: plain vectors are fine (and freed if the second one throws).
  std::vector<float> wi_rows(static_cast<size_t>(L.GHp) * I), wh_rows(static_cast<size_t>(L.GHp) * P);
  float *wi = wi_rows.data(), *whr = wh_rows.data();
  to_internal_rows(L, H, I, w_ih, wi);
  to_internal_rows(L, H, P, w_hh, whr);
  // Forward: x-projection B = W_ihᵀ (I x GHp); recurrent tiles B = W_hhᵀ (P x GHp), one panel per hidden block.
  pack_panels<GEMM_NV>(I, L.GHp, wi, 1, I, wx, 0, ceil_div(L.GHp, L.NR));
  if (L.variant.reset_before)
    pack_reset_before<Cell>(L, H, w_hh, whr, with_backward, wh, wh_n_bwd);
  else
    pack_panels<NV>(P, L.GHp, whr, 1, P, wh, 0, L.Hp / Cell::NB);
  if (wx_step) pack_panels<NV>(I, L.GHp, wi, 1, I, wx_step, 0, L.Hp / Cell::NB);  // W_ihᵀ like W_hhᵀ
  if (with_backward) {
    // Backward: dX = dG W_ih (B = W_ih, GHp x I); dh = dG W_hh (B = W_hh, GHp x P), panels of BWD_Q blocks.
    pack_panels<GEMM_NV>(L.GHp, I, wi, I, 1, wx_bwd, 0, ceil_div(I, L.NR));
    pack_panels<Cell::BWD_Q * Cell::U>(L.GHp, P, whr, P, 1, wh_bwd, 0, ceil_div(P, NBWD));
  }
  if (L.whr) {  // projection: h = m W_hrᵀ (B = W_hrᵀ, H x P); backward dm = dh W_hr (B = W_hr, P x H)
    pack_panels<NV>(H, P, w_hr, 1, H, whr_f, 0, ceil_div(P, NV * W));
    if (with_backward) pack_panels<Cell::BWD_Q * Cell::U>(P, H, w_hr, H, 1, whr_b, 0, ceil_div(L.Hp, NBWD));
  }
  for (int c = 0; c < L.GHp; ++c) {
    const int row = torch_row(c, L.G, L.NB, H);
    bx[c] = row >= 0 && b_ih ? b_ih[row] : 0.0f;
    bh[c] = row >= 0 && b_hh ? b_hh[row] : 0.0f;
  }
  if (peep)  // [block][i, f, o][unit], as the cell reads them
    for (int c = 0; c < 3 * L.Hp; ++c) {
      const int row = torch_row(c, 3, Cell::NB, H);
      peep[c] = row >= 0 ? w_p[row] : 0.0f;
    }
}

static void pack(CellKind cell, const Layout& L, int I, int H, const float* w_ih, const float* w_hh, const float* b_ih,
                 const float* b_hh, const float* w_p, const float* w_hr, bool with_backward, float* wx, float* wh,
                 float* wx_bwd, float* wh_bwd, float* wx_step, float* wh_n_bwd, float* bx, float* bh, float* peep,
                 float* whr, float* whr_bwd) {
  switch (cell) {
    case CellKind::lstm:
      return pack_for<Lstm>(L, I, H, w_ih, w_hh, b_ih, b_hh, w_p, w_hr, with_backward, wx, wh, wx_bwd, wh_bwd,
                            wx_step, wh_n_bwd, bx, bh, peep, whr, whr_bwd);
    case CellKind::gru:
      return pack_for<Gru>(L, I, H, w_ih, w_hh, b_ih, b_hh, w_p, nullptr, with_backward, wx, wh, wx_bwd, wh_bwd,
                           wx_step, wh_n_bwd, bx, bh, peep, nullptr, nullptr);
    default:
      return pack_for<Rnn<false>>(L, I, H, w_ih, w_hh, b_ih, b_hh, w_p, nullptr, with_backward, wx, wh, wx_bwd,
                                  wh_bwd, wx_step, wh_n_bwd, bx, bh, peep, nullptr, nullptr);
  }
}

static void pack_ln(const Layout& L, int H, const float* ln, float* out) {
  for (int k = 0; k < 4; ++k)  // input gain, input bias, recurrent gain, recurrent bias: gate columns
    for (int c = 0; c < L.GHp; ++c) {
      const int row = torch_row(c, L.G, L.NB, H);
      out[static_cast<long>(k) * L.GHp + c] = row >= 0 ? ln[static_cast<long>(k) * L.G * H + row] : 0.0f;
    }
  for (int k = 0; k < 2; ++k)  // cell gain, cell bias: state columns
    for (int j = 0; j < L.Hp; ++j) out[4L * L.GHp + k * L.Hp + j] = j < H ? ln[16L * H + k * H + j] : 0.0f;
}

static void backward_on(const BackwardArgs& a, PhaseRunner& phases) {
  switch (a.cell) {
    case CellKind::lstm:
      return a.L.variant.peephole ? backward_sequence<LstmT<true>>(a, phases) : backward_sequence<Lstm>(a, phases);
    case CellKind::gru:
      return a.L.variant.reset_before ? backward_sequence<GruResetBefore>(a, phases)
                                      : backward_sequence<Gru>(a, phases);
    case CellKind::rnn_relu: return backward_sequence<Rnn<true>>(a, phases);
    default: return backward_sequence<Rnn<false>>(a, phases);
  }
}

static void backward(const BackwardArgs& a) {
  in_team(a.team, [&](PhaseRunner& phases) { backward_on(a, phases); });
}

static void backward_pair(const BackwardArgs& a0, const BackwardArgs& a1, TeamPlan team) {
  in_two_teams(team, [&](PhaseRunner& p) { backward_on(a0, p); }, [&](PhaseRunner& p) { backward_on(a1, p); });
}

static long gemm_work_size(int K, int N) { return static_cast<long>(K) * ceil_div(N, GEMM_NV * W) * GEMM_NV * W; }

static void gemm(int M, int N, int K, const float* A, long lda, const float* B, long b_rs, long b_cs, float* C,
                 long ldc, bool accumulate, float* work, int nthreads) {
  const int npanels = ceil_div(N, GEMM_NV * W);
  in_team(TeamPlan{nthreads, true}, [&](PhaseRunner& phases) {
    phases.run(npanels, [&](long p) { pack_panels<GEMM_NV>(K, N, B, b_rs, b_cs, work, static_cast<int>(p), static_cast<int>(p) + 1); });
    const Gemm g{M, N, K, A, lda, work, static_cast<long>(K) * GEMM_NV * W, C, ldc, accumulate};
    phases.run(g.tiles(), [&](long t) { g.tile(t); });
  });
}

const IsaKernels& kernels() {
  static const IsaKernels table{layout,         pack,          pack_ln,        forward, backward, forward_pair,
                                backward_pair,  gemm,          gemm_work_size, int8_products};
  return table;
}
