// Weight and bias gradients after the backward time loop (per-ISA): one large GEMM each, summed
// over the valid (t, row) pairs in a fixed order, split across threads by output element only.
#pragma once

// Pack panels [p_lo, p_hi) of a K x N block of dG (contiguous rows, N a multiple of W) and, when
// colsum is given, add each column's values to it in row order (the bias gradient, for free).
template <int NV>
static void pack_rows_sum(int K, int N, const float* src, long ld, float* dst, int p_lo, int p_hi, float* colsum) {
  constexpr int NR = NV * W;
  for (int p = p_lo; p < p_hi; ++p) {
    float* out = dst + static_cast<long>(p) * K * NR;
    const int nv = (N - p * NR) / W < NV ? (N - p * NR) / W : NV;  // vectors of real columns
    vf sum[NV];
    for (int v = 0; v < NV; ++v) sum[v] = colsum ? load(colsum + p * NR + v * W) : splat(0.0f);
    for (int k = 0; k < K; ++k) {
      const float* row = src + k * ld + p * NR;
      for (int v = 0; v < NV; ++v) {
        const vf x = v < nv ? load(row + v * W) : splat(0.0f);
        store(out + k * NR + v * W, x);
        sum[v] += x;
      }
    }
    if (colsum)
      for (int v = 0; v < NV; ++v) store(colsum + p * NR + v * W, sum[v]);
  }
}

// One weight's gradient from dG: gw (G*H x M, PyTorch layout) += dGᵀ X for X (rows x M, row
// stride ldx); gb (G*H, may be null) += the column sums of dG.
struct WeightGrad {
  int M;
  const float* X;
  long ldx;
  float* gw;
  long ldgw;
  float* gb;
};

// The gradients of n weights (1 or 2) that share dG, computed as wgrad (M x GHp) = Xᵀ dG (one
// scratch block per weight, back to back), one block of kGemmKC rows of X and dG at a time: the
// GEMMs read Xᵀ in place (row stride 1, k stride ldx) and the block of dG is packed into panels
// once for all of them. The column sums are taken while packing (each panel's run over the
// blocks in order, whoever packs them: a fixed order) and added to every gb given.
static void weight_grads(PhaseRunner& phases, int rows, const BackwardArgs& a, const float* dG, const WeightGrad* w,
                         int n) {
  const int GHp = a.L.GHp, NR = a.L.NR, npanels = ceil_div(GHp, NR);
  bool sums = false;
  long scratch[2] = {0, 0};  // where each weight's wgrad block starts
  for (int i = 0; i < n; ++i) {
    sums = sums || w[i].gb;
    if (i + 1 < n) scratch[i + 1] = scratch[i] + static_cast<long>(w[i].M) * GHp;
  }
  float* colsum = sums ? a.colsum : nullptr;
  for (int k0 = 0; k0 < rows; k0 += kGemmKC) {
    const int kc = rows - k0 < kGemmKC ? rows - k0 : kGemmKC;
    phases.run(npanels, [&](long t) {
      const int p = static_cast<int>(t);
      if (colsum && k0 == 0)
        for (int c = p * NR; c < (p + 1) * NR; ++c) colsum[c] = 0.0f;
      pack_rows_sum<GEMM_NV>(kc, GHp, dG + static_cast<long>(k0) * GHp, GHp, a.bpack, p, p + 1, colsum);
    });
    auto gemm = [&](int i) {
      return Gemm{w[i].M, GHp, kc, w[i].X + static_cast<long>(k0) * w[i].ldx, 1, a.bpack, static_cast<long>(kc) * NR,
                  a.wgrad + scratch[i], GHp, k0 > 0, w[i].ldx};
    };
    const Gemm g0 = gemm(0), g1 = gemm(n - 1);  // g1 == g0 when n == 1
    const long t0 = g0.tiles();
    phases.run(n == 2 ? t0 + g1.tiles() : t0, [&](long t) {
      if (t < t0) g0.tile(t);
      else g1.tile(t - t0);
    });
  }
  constexpr int kScatter = 64;  // gate columns per scatter tile
  phases.run(ceil_div(GHp, kScatter), [&](long t) {
    const int c_lo = static_cast<int>(t) * kScatter, c_hi = c_lo + kScatter < GHp ? c_lo + kScatter : GHp;
    for (int c = c_lo; c < c_hi; ++c) {
      const int row = torch_row(c, a.L.G, a.L.NB, a.H);
      if (row < 0) continue;
      for (int i = 0; i < n; ++i) {
        float* out = w[i].gw + row * w[i].ldgw;
        const float* in = a.wgrad + scratch[i] + c;
        for (int m = 0; m < w[i].M; ++m) out[m] += in[static_cast<long>(m) * GHp];
        if (w[i].gb) w[i].gb[row] += colsum[c];
      }
    }
  });
}

// Cho et al.'s GRU: W_hn's and b_hn's gradients, dan against r⊙h (the n rows of the first W_hh sum
// got zeros). dan is compacted from the gates into dn_rows (rows x Hp, free scratch: dgh, read
// already), so the GEMM runs over the n gate's columns only, as a one-gate layout of weight_grads.
static void n_gate_weight_grad(PhaseRunner& phases, int rows, const BackwardArgs& a, float* dn_rows) {
  const int G = a.L.G, NB = a.L.NB, GHp = a.L.GHp, Hp = a.L.Hp, nblk = Hp / NB, H = a.H;
  constexpr int kRows = 64;
  phases.run(ceil_div(rows, kRows), [&](long t) {
    const long lo = t * kRows, hi = lo + kRows < rows ? lo + kRows : rows;
    for (long row = lo; row < hi; ++row)
      for (int jb = 0; jb < nblk; ++jb) {
        const float* dan = a.gates + row * GHp + static_cast<long>(jb) * G * NB + 2 * NB;
        std::memcpy(dn_rows + row * Hp + jb * NB, dan, sizeof(float) * NB);
      }
  });
  BackwardArgs n = a;
  n.L.G = 1;
  n.L.GHp = Hp;
  const WeightGrad w_hn{H, a.aux, Hp, a.gw_hh + 2L * H * H, H, a.gb_hh ? a.gb_hh + 2 * H : nullptr};
  weight_grads(phases, rows, n, dn_rows, &w_hn, 1);
}

// The projection's gradient (LSTM proj_size): gw_hr (P x H, PyTorch layout) += Σ_rows dh_rowsᵀ m,
// m = o * tanh(c) in aux, both in rows of Hp. One block of kGemmKC rows at a time: the GEMM reads
// dh_rowsᵀ in place and the block of m is packed into panels (bpack), in a fixed order.
static void projection_grad(PhaseRunner& phases, int rows, const BackwardArgs& a) {
  const int P = a.L.P, H = a.H, Hp = a.L.Hp, NR = a.L.NR, npanels = ceil_div(H, NR);
  for (int k0 = 0; k0 < rows; k0 += kGemmKC) {
    const int kc = rows - k0 < kGemmKC ? rows - k0 : kGemmKC;
    const float* m_rows = a.aux + static_cast<long>(k0) * Hp;
    phases.run(npanels, [&](long t) {
      pack_panels<GEMM_NV>(kc, H, m_rows, Hp, 1, a.bpack, static_cast<int>(t), static_cast<int>(t) + 1);
    });
    const Gemm g{P, H, kc, a.dh_rows + static_cast<long>(k0) * Hp, 1, a.bpack, static_cast<long>(kc) * NR, a.gw_hr, H,
                 true, Hp};
    phases.run(g.tiles(), [&](long t) { g.tile(t); });
  }
}
