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

// Copy n floats of a (zero-padded) hidden block to an output row of which only n are valid.
static inline void copy_out(float* dst, const float* src, int n) {
  for (int i = 0; i + W <= n; i += W) store(dst + i, load(src + i));
  if (n % W) store_partial(dst + n / W * W, load(src + n / W * W), n % W);
}
static inline void zero_out(float* dst, int n) {
  for (int i = 0; i + W <= n; i += W) store(dst + i, splat(0.0f));
  if (n % W) store_partial(dst + n / W * W, splat(0.0f), n % W);
}

// wx, wh: the packed input and recurrent weights, float or bfloat16 (BT). wx_step: W_ih packed per
// hidden block, or null. Given it, a one-step forward (streams, cells) projects each block's input
// inside its recurrent tile, so a step is one phase, not two: one wait less between the threads.
template <class Cell, class BT>
static void forward_sequence_with(const ForwardArgs& a, const BT* wx, const BT* wh, const BT* wx_step,
                                  PhaseRunner& phases) {
  constexpr int G = Cell::G, NB = Cell::NB, NV = G * Cell::U, MR = Cell::MR;
  const int T = a.T, B = a.B, H = a.H, Hp = a.L.Hp, GHp = a.L.GHp, I = a.I;
  const long slot = static_cast<long>(B) * Hp;
  const int nblk = Hp / NB, nmb = ceil_div(B, MR);
  const long x_panel = static_cast<long>(I) * a.L.NR, h_panel = static_cast<long>(H) * NV * W;
  const long x_step_panel = static_cast<long>(I) * NV * W;
  const bool fused = T == 1 && wx_step;
  auto time_of = [&](int s) { return a.reverse ? T - 1 - s : s; };
  auto prev_slot = [&](int s) { return a.training ? (a.reverse ? T - s : s) : ((s + a.first_slot) & 1); };
  auto out_slot = [&](int s) { return a.training ? (a.reverse ? T - 1 - s : s + 1) : ((s + 1 + a.first_slot) & 1); };

  for (int s0 = 0; s0 < T; s0 += a.chunk) {
    const int s1 = s0 + a.chunk < T ? s0 + a.chunk : T;
    const int t_lo = a.reverse ? T - s1 : s0;
    // Input projection of every step in the chunk: one GEMM (bias is added in the cell).
    const GemmT<BT> xproj{(s1 - s0) * B, GHp, I, a.x + static_cast<long>(t_lo) * B * I, I, wx, x_panel, a.gates,
                          GHp, false};
    if (!fused) phases.run(xproj.tiles(), [&](long t) { xproj.tile(t); });
    for (int s = s0; s < s1; ++s) {
      const int t = time_of(s);
      const float* hprev = a.hs + prev_slot(s) * slot;
      float* hout = a.hs + out_slot(s) * slot;
      const float* cprev = a.cs ? a.cs + prev_slot(s) * slot : nullptr;
      float* cout = a.cs ? a.cs + out_slot(s) * slot : nullptr;
      phases.run(static_cast<long>(nblk) * nmb, [&](long tile) {
        const int jb = static_cast<int>(tile / nmb), m0 = static_cast<int>(tile % nmb) * MR;
        const int mr = B - m0 < MR ? B - m0 : MR;
        const int j0 = jb * NB, ncols = H - j0 < NB ? H - j0 : NB;
        vf acc[MR][NV];
        if (fused) {  // this block's input part, into the gate rows the cell reads it from
          for (int m = 0; m < MR; ++m)
            for (int v = 0; v < NV; ++v) acc[m][v] = splat(0.0f);
          microkernel_rows<MR, NV, BT>(mr, I, a.x + static_cast<long>(m0) * I, I, wx_step + jb * x_step_panel, acc);
          for (int m = 0; m < mr; ++m)
            for (int v = 0; v < NV; ++v)
              store(a.gates + static_cast<long>(m0 + m) * GHp + static_cast<long>(jb) * G * NB + v * W, acc[m][v]);
        }
        for (int m = 0; m < MR; ++m)
          for (int v = 0; v < NV; ++v) acc[m][v] = load(a.w.bh + static_cast<long>(jb) * G * NB + v * W);
        microkernel_rows<MR, NV, BT>(mr, H, hprev + static_cast<long>(m0) * Hp, Hp, wh + jb * h_panel, acc);
        for (int m = 0; m < mr; ++m) {
          const int b = m0 + m;
          const long r = static_cast<long>(b) * Hp + j0;
          float* yrow = a.y + (static_cast<long>(t) * B + b) * a.ldy + j0;
          if (t < a.lengths[b]) {
            float* g = a.gates + (static_cast<long>(t - t_lo) * B + b) * GHp + static_cast<long>(jb) * G * NB;
            float* aux = a.aux ? a.aux + (static_cast<long>(t) * B + b) * Hp + j0 : nullptr;
            Cell::forward(g, a.w.bx + static_cast<long>(jb) * G * NB, acc[m], hprev + r, hout + r,
                          cprev ? cprev + r : nullptr, cout ? cout + r : nullptr, aux, a.training);
            copy_out(yrow, hout + r, ncols);
          } else {  // past this sample's length: state carried, output zero
            for (int i = 0; i < NB; i += W) store(hout + r + i, load(hprev + r + i));
            if (cout)
              for (int i = 0; i < NB; i += W) store(cout + r + i, load(cprev + r + i));
            zero_out(yrow, ncols);
          }
        }
      });
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

template <class Cell>
static void backward_sequence(const BackwardArgs& a, PhaseRunner& phases) {
  // A backward tile spans Q hidden blocks, so its recurrent GEMM (dh = dG W_hh) keeps Q*U
  // vectors per row in registers, as wide as the forward tile.
  constexpr int G = Cell::G, NB = Cell::NB, U = Cell::U, Q = Cell::BWD_Q, MR = Cell::MR_BWD;
  const int T = a.T, B = a.B, H = a.H, I = a.I, Hp = a.L.Hp, GHp = a.L.GHp, TB = T * B, NR = a.L.NR;
  const long slot = static_cast<long>(B) * Hp;
  const int nblk = Hp / NB, nsb = ceil_div(nblk, Q), nmb = ceil_div(B, MR);
  const long dh_panel = static_cast<long>(GHp) * Q * U * W;
  auto time_of = [&](int s) { return a.reverse ? T - 1 - s : s; };
  auto prev_slot = [&](int t) { return a.reverse ? t + 1 : t; };  // slot of the state before time t
  auto out_slot = [&](int t) { return a.reverse ? t : t + 1; };
  const float* hprev_rows = a.hs + (a.reverse ? slot : 0);  // row t*B + b: state before time t

  // Steps in reverse processing order; s == -1 only turns the last gradient into dh0.
  for (int s = T - 1; s >= -1; --s) {
    const int t = s >= 0 ? time_of(s) : -1;
    const float* dgh_next = s + 1 < T ? a.dgh + static_cast<long>(time_of(s + 1)) * B * GHp : nullptr;
    phases.run(static_cast<long>(nsb) * nmb, [&](long tile) {
      const int sb = static_cast<int>(tile / nmb), m0 = static_cast<int>(tile % nmb) * MR;
      const int mr = B - m0 < MR ? B - m0 : MR;
      vf acc[MR][Q * U];
      for (int m = 0; m < MR; ++m)
        for (int v = 0; v < Q * U; ++v) acc[m][v] = splat(0.0f);
      if (dgh_next)
        microkernel_rows<MR, Q * U>(mr, GHp, dgh_next + static_cast<long>(m0) * GHp, GHp,
                                    a.w.wh_bwd + sb * dh_panel, acc);
      for (int m = 0; m < mr; ++m) {
        const int b = m0 + m;
        const long row = static_cast<long>(t) * B + b;
        const bool valid = s >= 0 && t < a.lengths[b];
        for (int q = 0; q < Q && sb * Q + q < nblk; ++q) {
          const int jb = sb * Q + q, j0 = jb * NB, ncols = H - j0 < NB ? H - j0 : NB;
          const long r = static_cast<long>(b) * Hp + j0;
          vf dh[U], pass[U];
          for (int u = 0; u < U; ++u) dh[u] = acc[m][q * U + u] + load(a.dh_pass + r + u * W);
          if (s < 0) {
            for (int u = 0; u < U; ++u) store(a.dh_pass + r + u * W, dh[u]);
            continue;
          }
          float* g = a.gates + row * GHp + static_cast<long>(jb) * G * NB;
          float* gh = a.dgh + row * GHp + static_cast<long>(jb) * G * NB;
          if (valid) {
            const float* dyrow = a.dy + row * a.ldy + j0;
            for (int u = 0; u < U; ++u) {
              const int n = ncols - u * W;
              if (n >= W) dh[u] += load(dyrow + u * W);
              else if (n > 0) dh[u] += load_partial(dyrow + u * W, n);
            }
            Cell::backward(g, gh, dh, pass, a.dc + r, a.hs + prev_slot(t) * slot + r,
                           a.hs + out_slot(t) * slot + r, a.cs ? a.cs + prev_slot(t) * slot + r : nullptr,
                           a.cs ? a.cs + out_slot(t) * slot + r : nullptr, a.aux ? a.aux + row * Hp + j0 : nullptr);
          } else {  // the state passed through this step unchanged
            for (int i = 0; i < G * NB; i += W) {
              store(g + i, splat(0.0f));
              store(gh + i, splat(0.0f));
            }
            for (int u = 0; u < U; ++u) pass[u] = dh[u];
          }
          for (int u = 0; u < U; ++u) store(a.dh_pass + r + u * W, pass[u]);
        }
      }
    });
  }

  // After the loop: the large GEMMs over all T*B rows at once.
  const Gemm dx{TB, I, GHp, a.gates, GHp, a.w.wx_bwd, static_cast<long>(GHp) * NR, a.dx, I, a.dx_accumulate};
  phases.run(dx.tiles(), [&](long t) { dx.tile(t); });
  weight_grad(phases, I, a, a.gates, a.x, I, a.gw_ih, I, a.gb_ih);
  weight_grad(phases, H, a, a.dgh, hprev_rows, Hp, a.gw_hh, H, a.gb_hh);
  // Gradients of the initial state (padded buffers -> (B, H)), once dh_pass is final.
  phases.run(1, [&](long) {
    for (int b = 0; b < B; ++b)
      for (int j = 0; j < H; ++j) {
        a.dh0[static_cast<long>(b) * H + j] = a.dh_pass[static_cast<long>(b) * Hp + j];
        if (a.dc0) a.dc0[static_cast<long>(b) * H + j] = a.dc[static_cast<long>(b) * Hp + j];
      }
  });
}
