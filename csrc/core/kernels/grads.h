// Weight and bias gradients after the backward time loop (per-ISA): one large GEMM each, summed
// over all T*B rows in a fixed order, split across threads by output element only.
#pragma once

// dst (C x R) = src (R x C, row stride lds) transposed; thread tid takes a share of columns.
static void transpose_part(int tid, int nth, int R, int C, const float* src, long lds, float* dst) {
  const int c_lo = static_cast<int>(static_cast<long>(C) * tid / nth);
  const int c_hi = static_cast<int>(static_cast<long>(C) * (tid + 1) / nth);
  constexpr int BS = 32;
  for (int r0 = 0; r0 < R; r0 += BS)
    for (int c0 = c_lo; c0 < c_hi; c0 += BS) {
      const int r1 = r0 + BS < R ? r0 + BS : R, c1 = c0 + BS < c_hi ? c0 + BS : c_hi;
      for (int r = r0; r < r1; ++r)
        for (int c = c0; c < c1; ++c) dst[static_cast<long>(c) * R + r] = src[r * lds + c];
    }
}

// PyTorch row (gate g, unit j) of internal gate column c, or -1 for a padding column.
static inline int torch_row(int c, int G, int NB, int H) {
  const int jb = c / (G * NB), rem = c % (G * NB), g = rem / NB, j = jb * NB + rem % NB;
  return j < H ? g * H + j : -1;
}

// gw (G*H x M, PyTorch layout) += dGᵀ A, computed as Aᵀ-rows: wgrad (M x GHp) = At (M x TB) dG (TB x GHp).
static void weight_grad(int tid, int nth, int M, const BackwardArgs& a, const float* dG, const float* At, float* gw,
                        long ldgw) {
  const int TB = a.T * a.B, GHp = a.L.GHp, NR = a.L.NR, npanels = ceil_div(GHp, NR);
  for (int k0 = 0; k0 < TB; k0 += kGemmKC) {
    const int kc = TB - k0 < kGemmKC ? TB - k0 : kGemmKC;
    pack_panels<GEMM_NV>(kc, GHp, dG + static_cast<long>(k0) * GHp, GHp, 1, a.bpack, npanels * tid / nth,
                         npanels * (tid + 1) / nth);
#pragma omp barrier
    gemm_packed_part<GEMM_MR, GEMM_NV>(tid, nth, M, GHp, kc, At + k0, TB, a.bpack, static_cast<long>(kc) * NR,
                                       a.wgrad, GHp, k0 > 0);
#pragma omp barrier
  }
  const int c_lo = static_cast<int>(static_cast<long>(GHp) * tid / nth);
  const int c_hi = static_cast<int>(static_cast<long>(GHp) * (tid + 1) / nth);
  for (int c = c_lo; c < c_hi; ++c) {
    const int row = torch_row(c, a.L.G, a.L.NB, a.H);
    if (row < 0) continue;
    float* out = gw + row * ldgw;
    for (int i = 0; i < M; ++i) out[i] += a.wgrad[static_cast<long>(i) * GHp + c];
  }
#pragma omp barrier
}

// gb (G*H) += column sums of dG (TB x GHp); each thread sums whole columns, rows in order.
static void bias_grad_part(int tid, int nth, const BackwardArgs& a, const float* dG, float* gb) {
  const int TB = a.T * a.B, GHp = a.L.GHp, nvec = GHp / W;
  for (int v = nvec * tid / nth; v < nvec * (tid + 1) / nth; ++v) {
    vf sum = splat(0.0f);
    for (int r = 0; r < TB; ++r) sum += load(dG + static_cast<long>(r) * GHp + v * W);
    float lanes[W];
    store(lanes, sum);
    for (int l = 0; l < W; ++l) {
      const int row = torch_row(v * W + l, a.L.G, a.L.NB, a.H);
      if (row >= 0) gb[row] += lanes[l];
    }
  }
}
