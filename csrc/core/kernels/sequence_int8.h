// The inference time loop with int8 weights, or bfloat16 ones on vdpbf16ps (per-ISA; products in
// gemm_int8.h and gemm_bf16.h, the float loop this mirrors in sequence.h). Both encode every
// activation row first (int8: quantized with a scale; bfloat16: rounded) and multiply it with
// weights packed per hidden block in the instruction's layout; P (Int8Products, Bf16Products)
// says how. Activations are quantized per row: a chunk's x rows in a phase
// before its input projection; h_{t-1} inside the step's tiles, because a row's scale needs the
// whole row, which several tiles of the previous step wrote. Each thread quantizes a block of
// rows once per step, into its own buffer, when its first tile needs it: no extra phase (one
// wait between the threads per step, as in float), at the cost of every thread quantizing the
// rows it uses (B*H values, small next to the step's B*H*G*H products). A one-step call
// (streams) quantizes x the same way and projects each block's input inside its recurrent tile
// (x and h panels share one layout). The cells and state handling are the float loop's.
#pragma once

constexpr int kQuantRowsPerTile = 16;

// One thread's quantized rows of one step's input (h_{t-1}, or x in a one-step call), blocks of
// MR rows quantized on first use. A step is known by its team call, its arguments and its index.
struct StepRows {
  long call = -1;
  const void* args = nullptr;
  int step = -1;
  std::vector<uint8_t> q;
  std::vector<float> scale;
  std::vector<char> ready;  // per block of rows

  // Rows [m0, m0 + mr) of src (row stride ld, K floats) encoded, with their scales.
  template <class P>
  const uint8_t* rows(long call_id, const void* a, int s, int B, int MR, int m0, int mr, const float* src, long ld,
                      int K, const float** scales) {
    const long kp = P::row_bytes(K);
    if (call != call_id || args != a || step != s) {
      call = call_id, args = a, step = s;
      if (q.size() < static_cast<size_t>(B) * kp) q.resize(static_cast<size_t>(B) * kp);
      if (scale.size() < static_cast<size_t>(B)) scale.resize(B);
      ready.assign(ceil_div(B, MR), 0);
    }
    if (!ready[m0 / MR]) {
      for (int m = m0; m < m0 + mr; ++m) scale[m] = P::encode(src + m * ld, K, q.data() + m * kp);
      ready[m0 / MR] = 1;
    }
    *scales = scale.data() + m0;
    return q.data() + m0 * kp;
  }
};
static thread_local StepRows tl_h_rows, tl_x_rows;

// Encode rows [0, n) of src (row stride ld, K floats each) to dst (rows of P::row_bytes(K)), one
// phase of tiles of rows.
template <class P>
static void encode_rows(int n, int K, const float* src, long ld, uint8_t* dst, float* scale, PhaseRunner& phases) {
  const long kp = P::row_bytes(K);
  phases.run(ceil_div(n, kQuantRowsPerTile), [&](long i) {
    const int hi = static_cast<int>(i + 1) * kQuantRowsPerTile < n ? static_cast<int>(i + 1) * kQuantRowsPerTile : n;
    for (int r = static_cast<int>(i) * kQuantRowsPerTile; r < hi; ++r) scale[r] = P::encode(src + r * ld, K, dst + r * kp);
  });
}

// int8: u8 rows with scales, s8 panels with per-column scales and compensation (gemm_int8.h).
struct Int8Products {
  static long row_bytes(int K) { return int8_row_bytes(K); }
  static float encode(const float* src, int K, uint8_t* dst) { return quantize_row(src, K, int8_row_bytes(K), dst); }
  // out[m] += the dequantized products of rows m0..m0+mr-1 with one block panel.
  template <int MR, int NV>
  static void block(int mr, int K, const uint8_t* q, const float* q_scale, const void* panel, const int32_t* comp,
                    const float* w_scale, vf (&out)[MR][NV]) {
    const long kp = int8_row_bytes(K);
    vi acc[MR][NV];
    start_s8<MR, NV>(comp, acc);
    microkernel_s8_rows<MR, NV>(mr, static_cast<int>(kp / 4), q, kp, static_cast<const int8_t*>(panel), acc);
    for (int m = 0; m < mr; ++m) dequantize<NV>(acc[m], q_scale[m], w_scale, out[m]);
  }
};

// The packed weights such a loop reads (P's layout): W_ihᵀ and W_hhᵀ per hidden block.
struct ReducedWeights {
  const void *wx, *wh;
  const int32_t *wx_comp, *wh_comp;  // int8 only
  const float *wx_scale, *wh_scale;  // int8 only
};

template <class Cell, class P>
static void forward_sequence_reduced(const ForwardArgs& a, const ReducedWeights& w, PhaseRunner& phases, long call) {
  constexpr int G = Cell::G, NB = Cell::NB, NV = G * Cell::U, MR = Cell::MR;
  const int T = a.T, B = a.B, H = a.H, Hp = a.L.Hp, GHp = a.L.GHp, I = a.I;
  const RowPlan& R = a.rows;
  const long slot = static_cast<long>(B) * Hp;
  const int nblk = Hp / NB;
  const long kx = P::row_bytes(I), kh = P::row_bytes(H);
  const long x_panel = kx * NV * W, h_panel = kh * NV * W;  // bytes per hidden block
  const bool fused = T == 1 && R.dense();
  auto xpanel = [&](int jb) { return static_cast<const uint8_t*>(w.wx) + jb * x_panel; };
  auto hpanel = [&](int jb) { return static_cast<const uint8_t*>(w.wh) + jb * h_panel; };
  auto col = [](const auto* p, long c0) { return p ? p + c0 : nullptr; };
  auto time_of = [&](int s) { return a.reverse ? T - 1 - s : s; };
  auto state_in = [&](float* base, int s) -> float* { return base + ((s + a.first_slot) & 1) * slot; };
  auto state_out = [&](float* base, int s) -> float* {
    return base ? base + ((s + 1 + a.first_slot) & 1) * slot : nullptr;
  };
  auto zeros = [](vf (&out)[MR][NV]) {
    for (int m = 0; m < MR; ++m)
      for (int v = 0; v < NV; ++v) out[m][v] = splat(0.0f);
  };

  for (int s0 = 0; s0 < T; s0 += a.chunk) {
    const int s1 = s0 + a.chunk < T ? s0 + a.chunk : T;
    const int t_lo = a.reverse ? T - s1 : s0, t_hi = t_lo + (s1 - s0);
    const long row_lo = R.first(t_lo), nrows = R.first(t_hi) - row_lo;
    const float* xrows = a.x + row_lo * I;
    if (!R.dense()) {
      gather_chunk(a, t_lo, t_hi, a.xg, phases);
      xrows = a.xg;
    }
    if (!fused && nrows > 0) {  // the chunk's input projection, without bias (the cell adds it)
      encode_rows<P>(static_cast<int>(nrows), I, xrows, I, a.xq, a.xq_scale, phases);
      constexpr int kRowsPerTile = 8 * MR;
      const long ngroups = (nrows + kRowsPerTile - 1) / kRowsPerTile;
      phases.run(ngroups * nblk, [&](long tile) {
        const int jb = static_cast<int>(tile % nblk);
        const long g0 = tile / nblk * kRowsPerTile, g1 = g0 + kRowsPerTile < nrows ? g0 + kRowsPerTile : nrows;
        const long c0 = static_cast<long>(jb) * G * NB;
        for (long m0 = g0; m0 < g1; m0 += MR) {
          const int mr = g1 - m0 < MR ? static_cast<int>(g1 - m0) : MR;
          vf out[MR][NV];
          zeros(out);
          P::template block<MR, NV>(mr, I, a.xq + m0 * kx, a.xq_scale + m0, xpanel(jb), col(w.wx_comp, c0),
                                    col(w.wx_scale, c0), out);
          for (int m = 0; m < mr; ++m)
            for (int v = 0; v < NV; ++v) store(a.gates + (m0 + m) * GHp + c0 + v * W, out[m][v]);
        }
      });
    }
    for (int s = s0; s < s1; ++s) {
      const int t = time_of(s), n = R.rows(t), nmb = ceil_div(n, MR);
      if (n == 0) continue;
      const float* hprev = state_in(a.hs, s);
      const float* cprev = a.cs ? state_in(a.cs, s) : nullptr;
      float *hnext = state_out(a.hs, s), *cnext = state_out(a.cs, s);
      float* gates_t = a.gates + (R.first(t) - row_lo) * GHp;
      phases.run(static_cast<long>(nblk) * nmb, [&](long tile) {
        const int jb = static_cast<int>(tile / nmb), m0 = static_cast<int>(tile % nmb) * MR;
        const int mr = n - m0 < MR ? n - m0 : MR;
        const int j0 = jb * NB, ncols = H - j0 < NB ? H - j0 : NB;
        const long c0 = static_cast<long>(jb) * G * NB;
        vf out[MR][NV];
        const float* scales;
        if (fused) {  // this block's input part, into the gate rows the cell reads it from
          const uint8_t* xq = tl_x_rows.rows<P>(call, &a, s, n, MR, m0, mr, a.x, I, I, &scales);
          zeros(out);
          P::template block<MR, NV>(mr, I, xq, scales, xpanel(jb), col(w.wx_comp, c0), col(w.wx_scale, c0), out);
          for (int m = 0; m < mr; ++m)
            for (int v = 0; v < NV; ++v) store(gates_t + static_cast<long>(m0 + m) * GHp + c0 + v * W, out[m][v]);
        }
        for (int m = 0; m < MR; ++m)
          for (int v = 0; v < NV; ++v) out[m][v] = load(a.w.bh + c0 + v * W);
        const uint8_t* hq = tl_h_rows.rows<P>(call, &a, s, n, MR, m0, mr, hprev, Hp, H, &scales);
        P::template block<MR, NV>(mr, H, hq, scales, hpanel(jb), col(w.wh_comp, c0), col(w.wh_scale, c0), out);
        for (int m = 0; m < mr; ++m) {
          const int p = m0 + m;
          const long r = static_cast<long>(p) * Hp + j0;
          Cell::forward(gates_t + static_cast<long>(p) * GHp + c0, a.w.bx + c0, out[m], hprev + r, hnext + r,
                        cprev ? cprev + r : nullptr, cprev ? cnext + r : nullptr, nullptr, nullptr, false);
          copy_out(a.y + (static_cast<long>(t) * B + R.user(p)) * a.ldy + j0, hnext + r, ncols);
        }
      }, reverse_tiles(t, nmb, a.first_slot));
    }
  }
}
