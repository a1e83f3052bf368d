// The time loops (per-ISA): forward and backward through a whole sequence for one layer and
// direction, for any cell of cells/*.h.
//
// One team (phases.h: a parallel region, or half of one for a bidirectional pair) runs the whole
// loop; each step is a phase of (hidden block, batch rows) tiles, so a thread keeps the same
// slice of W_hh in its cache from step to step.
// Per tile and step: recurrent GEMM into registers, then the cell's fused gate update. Only
// output elements are split across threads (never a sum), so results are bitwise the same for
// any thread count.
#pragma once

// Only the plain LSTM has proj_size and layer norm (PackedWeights refuses them with the variants).
template <class C>
constexpr bool kPlainLstm = false;
template <>
constexpr bool kPlainLstm<Lstm> = true;

// Copy n floats of a (zero-padded) hidden block to an output row of which only n are valid.
static inline void copy_out(float* dst, const float* src, int n) {
  for (int i = 0; i + W <= n; i += W) store(dst + i, load(src + i));
  if (n % W) store_partial(dst + n / W * W, load(src + n / W * W), n % W);
}
static inline void zero_out(float* dst, int n) {
  for (int i = 0; i + W <= n; i += W) store(dst + i, splat(0.0f));
  if (n % W) store_partial(dst + n / W * W, splat(0.0f), n % W);
}

// Where the states after time t go: row p at row(p) (+ the block's column). Training: the rows
// that also run the next time start it from there, the others are done and go to the final
// rows (RowPlan); inference: the other slot. Worked out once per step, not per row.
// (F: float, or const float in backward.)
template <class F>
struct StateTarget {
  F *next, *last;
  int n_next, Hp;
  F* row(int p) const { return (p < n_next ? next : last) + static_cast<long>(p) * Hp; }
};
template <class F>
static inline StateTarget<F> training_target(F* base, const RowPlan& R, int Hp, int t, bool reverse) {
  const int next = reverse ? t - 1 : t + 1, n = R.rows(next);
  F* last = base + R.total() * Hp;
  return {n ? base + R.first(next) * Hp : last, last, n, Hp};
}

// Before a chunk's input projection, when not every row runs all T steps: gather the valid rows
// of x for times [t_lo, t_hi) into xg (compact, from row first(t_lo)), and zero the outputs of the
// rows past their length (the steps below only visit valid rows). One tile per time step.
static void gather_chunk(const ForwardArgs& a, int t_lo, int t_hi, float* xg, PhaseRunner& phases) {
  const RowPlan& R = a.rows;
  const long base = R.first(t_lo);
  phases.run(t_hi - t_lo, [&](long i) {
    const int t = t_lo + static_cast<int>(i), n = R.rows(t);
    for (int p = 0; p < a.B; ++p) {
      const long user = static_cast<long>(t) * a.B + R.user(p);
      if (p < n)
        std::memcpy(xg + (R.first(t) - base + p) * a.I, a.x + user * a.I, sizeof(float) * a.I);
      else
        zero_out(a.y + user * a.ldy, a.L.P);
    }
  });
}

// acc = dG W_hh (panel: W_hh's columns of the tile) for the tile's rows [m0, m0 + mr), dG of the
// step processed just before; rows from nn on did not run then and get zeros.
template <int MR, int NV>
static inline void recurrent_grad(int mr, int m0, int nn, int GHp, const float* dgh_next, const float* panel,
                                  vf (&acc)[MR][NV]) {
  for (int m = 0; m < MR; ++m)
    for (int v = 0; v < NV; ++v) acc[m][v] = splat(0.0f);
  if (m0 < nn)
    microkernel_rows<MR, NV>(nn - m0 < mr ? nn - m0 : mr, GHp, dgh_next + static_cast<long>(m0) * GHp, GHp, panel, acc);
}

#include "core/kernels/layer_norm.h"  // needs StateTarget and recurrent_grad

// The projection's phase of a step (LSTM proj_size): h = m W_hrᵀ for the n running rows, m in
// rows of Hp, into the next states (P columns; a state row of Hp holds them) and the output.
// Tiles of (NV vectors of columns, MR rows), like the cell's.
template <int MR, int NV>
static void project_step(const ForwardArgs& a, int t, int n, const float* m_rows, const StateTarget<float>& hnext,
                         PhaseRunner& phases) {
  const int P = a.L.P, H = a.H, Hp = a.L.Hp, nmb = ceil_div(n, MR), npan = ceil_div(P, NV * W);
  phases.run(static_cast<long>(npan) * nmb, [&](long tile) {
    const int jp = static_cast<int>(tile / nmb), m0 = static_cast<int>(tile % nmb) * MR;
    const int mr = n - m0 < MR ? n - m0 : MR, c0 = jp * NV * W, ncols = P - c0 < NV * W ? P - c0 : NV * W;
    vf acc[MR][NV];
    for (int m = 0; m < MR; ++m)
      for (int v = 0; v < NV; ++v) acc[m][v] = splat(0.0f);
    microkernel_rows<MR, NV>(mr, H, m_rows + static_cast<long>(m0) * Hp, Hp, a.w.whr + static_cast<long>(jp) * H * NV * W,
                             acc);
    for (int m = 0; m < mr; ++m) {
      const int p = m0 + m;
      float* hout = hnext.row(p) + c0;
      for (int v = 0; v * W < ncols; ++v) store(hout + v * W, acc[m][v]);  // padding columns get W_hr's zeros
      copy_out(a.y + (static_cast<long>(t) * a.B + a.rows.user(p)) * a.ldy + c0, hout, ncols);
    }
  }, reverse_tiles(t, nmb, a.first_slot));
}

// One forward step of Cho et al.'s GRU (cells/gru.h, GruResetBefore) over the n running rows: phase
// 1, r and z (and, fused, the block's input part), r⊙h into rh; phase 2, the n gate's product on
// r⊙h and the new state. Both phases split output elements only (bitwise the same for any team).
template <class Cell, class BT, class Project>
static void reset_before_step(const ForwardArgs& a, const BT* wh, int n, int t, const float* hprev,
                              const StateTarget<float>& hnext, float* gates_t, bool fused, Project& project_block,
                              PhaseRunner& phases) {
  constexpr int G = Cell::G, NB = Cell::NB, MR = Cell::MR;
  static_assert(Cell::U == 1, "one vector per gate and block");
  const int H = a.H, Hp = a.L.Hp, GHp = a.L.GHp, nblk = Hp / NB, nmb = ceil_div(n, MR);
  const RowPlan& R = a.rows;
  // r⊙h of this step's rows: training keeps it for W_hn's gradient (row first(t) + p), inference
  // needs it for this step only.
  float* rh = a.training ? a.aux + R.first(t) * Hp : a.aux;
  const BT* wh_n = wh + a.L.wh_rz;
  const long rz_panel = static_cast<long>(H) * 2 * W;
  auto tile_of = [&](long tile, int& jb, int& m0, int& mr) {
    jb = static_cast<int>(tile / nmb), m0 = static_cast<int>(tile % nmb) * MR;
    mr = n - m0 < MR ? n - m0 : MR;
  };
  phases.run(static_cast<long>(nblk) * nmb, [&](long tile) {
    int jb, m0, mr;
    tile_of(tile, jb, m0, mr);
    if (fused) project_block(jb, m0, mr);
    const long gb = static_cast<long>(jb) * G * NB;
    vf acc[MR][2];
    for (int m = 0; m < MR; ++m)
      for (int v = 0; v < 2; ++v) acc[m][v] = load(a.w.bh + gb + v * NB);
    microkernel_rows<MR, 2, BT>(mr, H, hprev + static_cast<long>(m0) * Hp, Hp, wh + jb * rz_panel, acc);
    for (int m = 0; m < mr; ++m) {
      const long r = static_cast<long>(m0 + m) * Hp + jb * NB;
      Cell::forward_rz(gates_t + static_cast<long>(m0 + m) * GHp + gb, a.w.bx + gb, acc[m], hprev + r, rh + r);
    }
  }, reverse_tiles(t, nmb, a.first_slot));
  // Phase 2: kNBlocks blocks per tile, so that even one row keeps that many independent sums
  // in flight (one vector's chain of H dependent multiply-adds would wait on each one's latency).
  constexpr int Q = Cell::kNBlocks;
  const int nsb = ceil_div(nblk, Q);
  const long n_panel = static_cast<long>(H) * Q * W;
  phases.run(static_cast<long>(nsb) * nmb, [&](long tile) {
    const int sb = static_cast<int>(tile / nmb), m0 = static_cast<int>(tile % nmb) * MR;
    const int mr = n - m0 < MR ? n - m0 : MR;
    vf acc[MR][Q];
    for (int m = 0; m < MR; ++m)
      for (int q = 0; q < Q; ++q)
        acc[m][q] = sb * Q + q < nblk ? load(a.w.bh + static_cast<long>(sb * Q + q) * G * NB + 2 * NB) : splat(0.0f);
    microkernel_rows<MR, Q, BT>(mr, H, rh + static_cast<long>(m0) * Hp, Hp, wh_n + sb * n_panel, acc);
    for (int m = 0; m < mr; ++m) {
      const int p = m0 + m;
      for (int q = 0; q < Q && sb * Q + q < nblk; ++q) {
        const int jb = sb * Q + q, j0 = jb * NB, ncols = H - j0 < NB ? H - j0 : NB;
        const long gb = static_cast<long>(jb) * G * NB;
        float* hout = hnext.row(p) + j0;
        Cell::forward_n(gates_t + static_cast<long>(p) * GHp + gb, a.w.bx + gb, acc[m][q],
                        hprev + static_cast<long>(p) * Hp + j0, hout, a.training);
        copy_out(a.y + (static_cast<long>(t) * a.B + R.user(p)) * a.ldy + j0, hout, ncols);
      }
    }
  }, reverse_tiles(t, nmb, a.first_slot));
}

// wx, wh: the packed input and recurrent weights, float or bfloat16 (BT). wx_step: W_ih packed per
// hidden block, or null. Given it, a one-step forward (streams, cells) projects each block's input
// inside its recurrent tile, so a step is one phase, not two: one wait less between the threads.
// Each step computes only the rows still running (a prefix of the sorted rows, see RowPlan).
template <class Cell, class BT>
static void forward_sequence_with(const ForwardArgs& a, const BT* wx, const BT* wh, const BT* wx_step,
                                  PhaseRunner& phases) {
  constexpr int G = Cell::G, NB = Cell::NB, NV = G * Cell::U, MR = Cell::MR;
  const int T = a.T, B = a.B, H = a.H, P = a.L.P, Hp = a.L.Hp, GHp = a.L.GHp, I = a.I;
  const RowPlan& R = a.rows;
  const long slot = static_cast<long>(B) * Hp;
  const int nblk = Hp / NB;
  const long x_panel = static_cast<long>(I) * a.L.NR, h_panel = static_cast<long>(P) * NV * W;
  // LSTM projection: the cell writes m = o * tanh(c) to aux, a second phase h = m W_hrᵀ.
  const bool proj = a.w.whr != nullptr;
  const long x_step_panel = static_cast<long>(I) * NV * W;
  const bool fused = T == 1 && wx_step && R.dense() && !a.w.ln;  // LN normalises the whole input part first
  auto time_of = [&](int s) { return a.reverse ? T - 1 - s : s; };
  // Row 0 of the state a step starts from, and where its new states go: training keeps every
  // state for backward (RowPlan), inference alternates two slots of B rows.
  auto state_in = [&](float* base, int s, int t) -> float* {
    return a.training ? base + R.first(t) * Hp : base + ((s + a.first_slot) & 1) * slot;
  };
  auto state_out = [&](float* base, int s, int t) -> StateTarget<float> {
    if (!base) return {nullptr, nullptr, 0, Hp};
    if (a.training) return training_target(base, R, Hp, t, a.reverse);
    return {base + ((s + 1 + a.first_slot) & 1) * slot, nullptr, B, Hp};
  };

  for (int s0 = 0; s0 < T; s0 += a.chunk) {
    const int s1 = s0 + a.chunk < T ? s0 + a.chunk : T;
    const int t_lo = a.reverse ? T - s1 : s0, t_hi = t_lo + (s1 - s0);
    const long row_lo = R.first(t_lo), nrows = R.first(t_hi) - row_lo;  // valid rows of the chunk
    const float* xrows = a.x + row_lo * I;
    if (!R.dense()) {
      float* xg = a.training ? a.xg + row_lo * I : a.xg;
      gather_chunk(a, t_lo, t_hi, xg, phases);
      xrows = xg;
    }
    // Input projection of every valid row in the chunk: one GEMM (bias is added in the cell).
    const GemmT<BT> xproj{static_cast<int>(nrows), GHp, I, xrows, I, wx, x_panel, a.gates, GHp, false};
    if (!fused && nrows > 0) phases.run(xproj.tiles(), [&](long t) { xproj.tile(t); });
    if (a.w.ln && nrows > 0) ln_input_rows(a, a.gates, nrows, row_lo, phases);
    for (int s = s0; s < s1; ++s) {
      const int t = time_of(s), n = R.rows(t), nmb = ceil_div(n, MR);
      if (n == 0) continue;  // every row has ended (forward) or not yet begun (reverse)
      const float* hprev = state_in(a.hs, s, t);
      const float* cprev = a.cs ? state_in(a.cs, s, t) : nullptr;
      const StateTarget<float> hnext = state_out(a.hs, s, t), cnext = state_out(a.cs, s, t);
      float* gates_t = a.gates + (R.first(t) - row_lo) * GHp;
      // One step's input part of block jb for rows m0.. (fused), into the gate rows the cell reads it from.
      auto project_block = [&](int jb, int m0, int mr) {
        vf acc[MR][NV];
        for (int m = 0; m < MR; ++m)
          for (int v = 0; v < NV; ++v) acc[m][v] = splat(0.0f);
        microkernel_rows<MR, NV, BT>(mr, I, a.x + static_cast<long>(m0) * I, I, wx_step + jb * x_step_panel, acc);
        for (int m = 0; m < mr; ++m)
          for (int v = 0; v < NV; ++v)
            store(gates_t + static_cast<long>(m0 + m) * GHp + static_cast<long>(jb) * G * NB + v * W, acc[m][v]);
      };
      if constexpr (Cell::kTwoPhase) {
        reset_before_step<Cell, BT>(a, wh, n, t, hprev, hnext, gates_t, fused, project_block, phases);
        continue;
      }
      if (a.w.ln) {
        ln_forward_step<BT>(a, wh, t, n, hprev, cprev, hnext, cnext, gates_t, phases);
        continue;
      }
      phases.run(static_cast<long>(nblk) * nmb, [&](long tile) {
        const int jb = static_cast<int>(tile / nmb), m0 = static_cast<int>(tile % nmb) * MR;
        const int mr = n - m0 < MR ? n - m0 : MR;
        const int j0 = jb * NB, ncols = H - j0 < NB ? H - j0 : NB;
        if (fused) project_block(jb, m0, mr);
        vf acc[MR][NV];
        for (int m = 0; m < MR; ++m)
          for (int v = 0; v < NV; ++v) acc[m][v] = load(a.w.bh + static_cast<long>(jb) * G * NB + v * W);
        microkernel_rows<MR, NV, BT>(mr, P, hprev + static_cast<long>(m0) * Hp, Hp, wh + jb * h_panel, acc);
        const float* peep = a.w.peep ? a.w.peep + static_cast<long>(jb) * 3 * NB : nullptr;
        for (int m = 0; m < mr; ++m) {
          const int p = m0 + m;
          const long r = static_cast<long>(p) * Hp + j0;
          float* g = gates_t + static_cast<long>(p) * GHp + static_cast<long>(jb) * G * NB;
          float* aux = a.aux ? a.aux + ((a.training ? R.first(t) : 0) + p) * Hp + j0 : nullptr;
          float* hout = proj ? aux : hnext.row(p) + j0;
          Cell::forward(g, a.w.bx + static_cast<long>(jb) * G * NB, acc[m], hprev + r, hout,
                        cprev ? cprev + r : nullptr, cprev ? cnext.row(p) + j0 : nullptr, aux, peep, a.training);
          if (!proj) copy_out(a.y + (static_cast<long>(t) * B + R.user(p)) * a.ldy + j0, hout, ncols);
        }
      }, reverse_tiles(t, nmb, a.first_slot));
      if (proj) project_step<MR, NV>(a, t, n, a.aux + (a.training ? R.first(t) : 0) * Hp, hnext, phases);
    }
  }
}

// The whole forward of one layer direction, on the team behind `phases`.
template <class Cell>
static void forward_sequence(const ForwardArgs& a, PhaseRunner& phases) {
  if (a.w.wh16)
    forward_sequence_with<Cell, uint16_t>(a, a.w.wx16, a.w.wh16, a.w.wx16_step, phases);
  else
    forward_sequence_with<Cell, float>(a, a.w.wx, a.w.wh, a.w.wx_step, phases);
}

// dx's valid rows (computed compactly) to the caller's rows; rows past their length get zeros
// (or keep their values when accumulating). One tile per time step.
static void scatter_dx(const BackwardArgs& a, PhaseRunner& phases) {
  const RowPlan& R = a.rows;
  phases.run(a.T, [&](long i) {
    const int t = static_cast<int>(i), n = R.rows(t), I = a.I;
    for (int p = 0; p < a.B; ++p) {
      float* out = a.dx + (static_cast<long>(t) * a.B + R.user(p)) * I;
      const float* src = a.dx_rows + (R.first(t) + p) * I;
      if (p < n && a.dx_accumulate)
        for (int k = 0; k < I; ++k) out[k] += src[k];
      else if (p < n)
        std::memcpy(out, src, sizeof(float) * I);
      else if (!a.dx_accumulate)
        std::memset(out, 0, sizeof(float) * I);
    }
  });
}

// Peephole gradients, (3, H) rows p_i, p_f, p_o: += sums over the valid (t, row) pairs of
// dai⊙c_{t-1}, daf⊙c_{t-1} and dao⊙c_t, from the pre-activation gradients backward left in gates.
// Split across threads by hidden block only, each summing in a fixed order (time, then row).
template <class Cell>
static void peephole_grad(PhaseRunner& phases, const BackwardArgs& a) {
  constexpr int G = Cell::G, NB = Cell::NB, U = Cell::U;
  const RowPlan& R = a.rows;
  const int Hp = a.L.Hp, GHp = a.L.GHp, H = a.H;
  phases.run(Hp / NB, [&](long jb_l) {
    const int jb = static_cast<int>(jb_l);
    vf si[U], sf[U], so[U];
    for (int u = 0; u < U; ++u) si[u] = sf[u] = so[u] = splat(0.0f);
    for (int t = 0; t < a.T; ++t) {
      const StateTarget<const float> cnext = training_target(a.cs, R, Hp, t, a.reverse);
      for (int p = 0; p < R.rows(t); ++p) {
        const long row = R.first(t) + p;
        const float* g = a.gates + row * GHp + static_cast<long>(jb) * G * NB;
        const float *cp = a.cs + row * Hp + jb * NB, *co = cnext.row(p) + jb * NB;
        for (int u = 0; u < U; ++u) {
          si[u] += load(g + 0 * NB + u * W) * load(cp + u * W);
          sf[u] += load(g + 1 * NB + u * W) * load(cp + u * W);
          so[u] += load(g + 3 * NB + u * W) * load(co + u * W);
        }
      }
    }
    float out[3][NB];
    for (int u = 0; u < U; ++u) {
      store(out[0] + u * W, si[u]);
      store(out[1] + u * W, sf[u]);
      store(out[2] + u * W, so[u]);
    }
    for (int k = 0; k < 3; ++k)
      for (int j = 0; j < NB && jb * NB + j < H; ++j) a.gw_p[k * H + jb * NB + j] += out[k][j];
  });
}

// One backward step of an LSTM with a projection (h = W_hr m), two phases. First, over the P
// columns of h: dh = dG_next W_hh + dy + what flows in (dh_pass); kept per row (dh_rows) for
// W_hr's gradient, or, for a row past its first step, its final gradient (dh0). Then, over the
// hidden blocks of the n running rows: dm = dh W_hr into registers, and the cell's backward.
template <class Cell>
static void backward_step_projected(const BackwardArgs& a, int t, int n, int nn, const float* dgh_next, long row0,
                                    const StateTarget<const float>& cnext, PhaseRunner& phases) {
  constexpr int G = Cell::G, NB = Cell::NB, U = Cell::U, Q = Cell::BWD_Q, MR = Cell::MR_BWD;
  const int P = a.L.P, Hp = a.L.Hp, GHp = a.L.GHp, nblk = Hp / NB;
  const int nrows = n > nn ? n : nn, nmb = ceil_div(nrows, MR), pblk = ceil_div(P, NB);
  const long dh_panel = static_cast<long>(GHp) * Q * U * W, dm_panel = static_cast<long>(P) * Q * U * W;
  phases.run(static_cast<long>(ceil_div(pblk, Q)) * nmb, [&](long tile) {
    const int sb = static_cast<int>(tile / nmb), m0 = static_cast<int>(tile % nmb) * MR;
    const int mr = nrows - m0 < MR ? nrows - m0 : MR;
    vf acc[MR][Q * U];
    recurrent_grad<MR, Q * U>(mr, m0, nn, GHp, dgh_next, a.w.wh_bwd + sb * dh_panel, acc);
    for (int m = 0; m < mr; ++m) {
      const int p = m0 + m;
      const float* dyrow = p < n ? a.dy + (static_cast<long>(t) * a.B + a.rows.user(p)) * a.ldy : nullptr;
      for (int q = 0; q < Q && sb * Q + q < pblk; ++q) {
        const int j0 = (sb * Q + q) * NB, ncols = P - j0 < NB ? P - j0 : NB;
        float* pass = a.dh_pass + static_cast<long>(p) * Hp + j0;
        for (int u = 0; u < U; ++u) {
          vf dh = acc[m][q * U + u] + load(pass + u * W);
          const int nc = ncols - u * W;
          if (dyrow && nc >= W) dh += load(dyrow + j0 + u * W);
          else if (dyrow && nc > 0) dh += load_partial(dyrow + j0 + u * W, nc);
          if (p >= n) {  // first step done (or, for t == -1, every row): the gradient of h0
            store(pass + u * W, dh);
            continue;
          }
          store(a.dh_rows + (row0 + p) * Hp + j0 + u * W, dh);
          store(pass + u * W, splat(0.0f));  // an LSTM's h reaches the previous step only through W_hh
        }
      }
    }
  }, reverse_tiles(t, nmb));
  if (n == 0) return;
  const int nmb_run = ceil_div(n, MR);
  phases.run(static_cast<long>(ceil_div(nblk, Q)) * nmb_run, [&](long tile) {
    const int sb = static_cast<int>(tile / nmb_run), m0 = static_cast<int>(tile % nmb_run) * MR;
    const int mr = n - m0 < MR ? n - m0 : MR;
    vf acc[MR][Q * U];
    for (int m = 0; m < MR; ++m)
      for (int v = 0; v < Q * U; ++v) acc[m][v] = splat(0.0f);
    microkernel_rows<MR, Q * U>(mr, P, a.dh_rows + (row0 + m0) * Hp, Hp, a.w.whr_bwd + sb * dm_panel, acc);
    for (int m = 0; m < mr; ++m) {
      const int p = m0 + m;
      const long row = row0 + p;
      for (int q = 0; q < Q && sb * Q + q < nblk; ++q) {
        const int jb = sb * Q + q, j0 = jb * NB;
        vf dm[U], pass[U];
        for (int u = 0; u < U; ++u) dm[u] = acc[m][q * U + u];
        float* g = a.gates + row * GHp + static_cast<long>(jb) * G * NB;
        Cell::backward(g, g, dm, pass, a.dc + static_cast<long>(p) * Hp + j0, nullptr, nullptr,
                       a.cs + row * Hp + j0, cnext.row(p) + j0, nullptr, nullptr);  // no peepholes here
      }
    }
  }, reverse_tiles(t, nmb_run));
}

template <class Cell>
static void backward_sequence(const BackwardArgs& a, PhaseRunner& phases) {
  // A backward tile spans Q hidden blocks, so its recurrent GEMM (dh = dG W_hh) keeps Q*U
  // vectors per row in registers, as wide as the forward tile.
  constexpr int G = Cell::G, NB = Cell::NB, U = Cell::U, Q = Cell::BWD_Q, MR = Cell::MR_BWD;
  const int T = a.T, B = a.B, H = a.H, I = a.I, Hp = a.L.Hp, GHp = a.L.GHp, NR = a.L.NR;
  const RowPlan& R = a.rows;
  const int nblk = Hp / NB, nsb = ceil_div(nblk, Q);
  const long dh_panel = static_cast<long>(GHp) * Q * U * W;
  auto time_of = [&](int s) { return a.reverse ? T - 1 - s : s; };

  // Steps in reverse processing order; s == -1 only turns the last gradients into dh0. At time
  // t the rows still running (n) get the cell's backward; the rows that ran at the time processed
  // just before (nn) get their recurrent gradient; a row in the second set only is at its first
  // step, and its gradient is final (dh0).
  for (int s = T - 1; s >= -1; --s) {
    const int t = s >= 0 ? time_of(s) : -1, tn = s + 1 < T ? time_of(s + 1) : -1;
    const int n = R.rows(t), nn = R.rows(tn), nrows = n > nn ? n : nn, nmb = ceil_div(nrows, MR);
    if (nrows == 0) continue;
    const float* dgh_next = nn ? a.dgh + R.first(tn) * GHp : nullptr;
    const long row0 = R.first(t >= 0 ? t : 0);  // of time t's rows (used while p < n)
    const StateTarget<const float> hnext = training_target(a.hs, R, Hp, t, a.reverse);
    const StateTarget<const float> cnext = a.cs ? training_target(a.cs, R, Hp, t, a.reverse) : hnext;
    if constexpr (kPlainLstm<Cell>) {  // the LSTM options (not compiled for the other cells and variants)
      if (a.w.whr) {
        backward_step_projected<Cell>(a, t, n, nn, dgh_next, row0, cnext, phases);
        continue;
      }
      if (a.w.ln) {
        ln_backward_step(a, t, n, nn, dgh_next, row0, phases);
        continue;
      }
    }
    phases.run(static_cast<long>(nsb) * nmb, [&](long tile) {
      const int sb = static_cast<int>(tile / nmb), m0 = static_cast<int>(tile % nmb) * MR;
      const int mr = nrows - m0 < MR ? nrows - m0 : MR;
      vf acc[MR][Q * U];
      recurrent_grad<MR, Q * U>(mr, m0, nn, GHp, dgh_next, a.w.wh_bwd + sb * dh_panel, acc);
      for (int m = 0; m < mr; ++m) {
        const int p = m0 + m;
        const long row = row0 + p;
        for (int q = 0; q < Q && sb * Q + q < nblk; ++q) {
          const int jb = sb * Q + q, j0 = jb * NB, ncols = H - j0 < NB ? H - j0 : NB;
          const long r = static_cast<long>(p) * Hp + j0;
          vf dh[U], pass[U];
          for (int u = 0; u < U; ++u) dh[u] = acc[m][q * U + u] + load(a.dh_pass + r + u * W);
          if (p >= n) {  // first step done (or, for s == -1, every row): the gradient of h0
            for (int u = 0; u < U; ++u) store(a.dh_pass + r + u * W, dh[u]);
            continue;
          }
          float* g = a.gates + row * GHp + static_cast<long>(jb) * G * NB;
          float* gh = a.dgh + row * GHp + static_cast<long>(jb) * G * NB;
          const float* dyrow = a.dy + (static_cast<long>(t) * B + R.user(p)) * a.ldy + j0;
          for (int u = 0; u < U; ++u) {
            const int nc = ncols - u * W;
            if (nc >= W) dh[u] += load(dyrow + u * W);
            else if (nc > 0) dh[u] += load_partial(dyrow + u * W, nc);
          }
          if constexpr (Cell::kTwoPhase)
            Cell::backward_zn(g, gh, dh[0], a.hs + row * Hp + j0, a.dn + r, pass[0]);
          else
            Cell::backward(g, gh, dh, pass, a.dc + r, a.hs + row * Hp + j0, hnext.row(p) + j0,
                           a.cs ? a.cs + row * Hp + j0 : nullptr, a.cs ? cnext.row(p) + j0 : nullptr,
                           a.aux ? a.aux + row * Hp + j0 : nullptr,
                           a.w.peep ? a.w.peep + static_cast<long>(jb) * 3 * NB : nullptr);
          for (int u = 0; u < U; ++u) store(a.dh_pass + r + u * W, pass[u]);
        }
      }
    }, reverse_tiles(s, nmb));
    if constexpr (Cell::kTwoPhase) {  // d(r⊙h) = dan W_hn for the running rows, then dar
      const int nmb_r = ceil_div(n, MR);
      const long dn_panel = static_cast<long>(Hp) * Q * U * W;
      if (n > 0) phases.run(static_cast<long>(nsb) * nmb_r, [&](long tile) {
        const int sb = static_cast<int>(tile / nmb_r), m0 = static_cast<int>(tile % nmb_r) * MR;
        const int mr = n - m0 < MR ? n - m0 : MR;
        vf acc[MR][Q * U];
        for (int m = 0; m < MR; ++m)
          for (int v = 0; v < Q * U; ++v) acc[m][v] = splat(0.0f);
        microkernel_rows<MR, Q * U>(mr, Hp, a.dn + static_cast<long>(m0) * Hp, Hp, a.w.wh_n_bwd + sb * dn_panel, acc);
        for (int m = 0; m < mr; ++m) {
          const int p = m0 + m;
          const long row = row0 + p;
          for (int q = 0; q < Q && sb * Q + q < nblk; ++q) {
            const int jb = sb * Q + q, j0 = jb * NB;
            const long gcol = row * GHp + static_cast<long>(jb) * G * NB;
            Cell::backward_r(a.gates + gcol, a.dgh + gcol, acc[m][q], a.hs + row * Hp + j0,
                             a.dh_pass + static_cast<long>(p) * Hp + j0);
          }
        }
      }, reverse_tiles(s, nmb_r));
    }
  }

  // After the loop: the large GEMMs over the valid rows at once. Row first(t) + p of the states
  // is the state time t started from, so it pairs with the same row of dG.
  // A ragged batch computes dx's valid rows into the gathered input, once its gradient read it.
  // With layer norm the input GEMMs read the raw input part's gradient (xhat, after
  // ln_after_backward), and the biases' gradients are already summed.
  const int rows = static_cast<int>(R.total());
  if (a.w.ln) ln_after_backward(phases, rows, a);
  const float* dgx = a.w.ln ? a.ln.xhat : a.gates;
  const Gemm dxg{rows, I, GHp, dgx, GHp, a.w.wx_bwd, static_cast<long>(GHp) * NR,
                 R.dense() ? a.dx : a.dx_rows, I, R.dense() && a.dx_accumulate};
  if (R.dense()) phases.run(dxg.tiles(), [&](long t) { dxg.tile(t); });
  // W_ih's and W_hh's gradients: one packing pass over dG for both when they share it (the
  // caller decided, sizing wgrad for both).
  const WeightGrad w_ih{I, a.x, I, a.gw_ih, I, a.w.ln ? nullptr : a.gb_ih};
  const WeightGrad w_hh{a.L.P, a.hs, Hp, a.gw_hh, a.L.P, a.w.ln ? nullptr : a.gb_hh};
  if (a.one_pass_wgrad) {
    const WeightGrad both[2] = {w_ih, w_hh};
    weight_grads(phases, rows, a, dgx, both, 2);
  } else {
    weight_grads(phases, rows, a, dgx, &w_ih, 1);
    weight_grads(phases, rows, a, a.dgh, &w_hh, 1);
  }
  if constexpr (Cell::kTwoPhase) n_gate_weight_grad(phases, rows, a, a.dgh);  // W_hn, b_hn: against r⊙h
  if (a.gw_p) peephole_grad<Cell>(phases, a);
  if (a.w.whr) projection_grad(phases, rows, a);
  if (!R.dense()) {
    phases.run(dxg.tiles(), [&](long t) { dxg.tile(t); });
    scatter_dx(a, phases);
  }
  // Gradients of the initial state (padded, sorted buffers -> the caller's (B, H)).
  phases.run(1, [&](long) {
    for (int p = 0; p < B; ++p) {
      const long out = static_cast<long>(R.user(p)) * H, in = static_cast<long>(p) * Hp;
      const long out_h = static_cast<long>(R.user(p)) * a.L.P;
      for (int j = 0; j < a.L.P; ++j) a.dh0[out_h + j] = a.dh_pass[in + j];
      if (a.dc0)
        for (int j = 0; j < H; ++j) a.dc0[out + j] = a.dc[in + j];
    }
  });
}
