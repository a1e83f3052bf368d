// Register-blocked matrix multiply on pre-packed B panels (per-ISA, see simd.h).
//
// A is read in place (row-major, any row stride): each step broadcasts one element of MR rows
// and multiplies it with NV vectors of a packed B panel, so MR*NV accumulators stay in registers.
// B is packed once into panels of NV*W columns, K rows each, zero-padded: panel p holds
// B[k][p*NV*W + c] at p*K*NV*W + k*NV*W + c. The recurrent weights are packed this way once and
// cached by the caller; large right-hand sides are packed per K-block inside gemm().
#pragma once

// acc[m][v] += sum_k A[m][k] * Bp[k][v*W..], with A[m][k] at A[m*lda + k*ks] (ks = 1: rows of
// A in memory; lda = 1: A stored transposed, which the weight gradients read in place). The sums
// live in a local array for the whole loop: through the reference the compiler would have to
// assume acc aliases A or B and store it back every step. BT is float, or uint16_t for bfloat16
// weights (widened on load).
template <int MR, int NV, class BT = float>
static inline void microkernel(int K, const float* A, long lda, const BT* Bp, vf (&acc)[MR][NV], long ks = 1) {
  vf c[MR][NV];
#pragma GCC unroll 16
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) c[m][v] = acc[m][v];
  for (int k = 0; k < K; ++k) {
    const BT* b = Bp + static_cast<long>(k) * NV * W;
    vf bv[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) bv[v] = load_b(b + v * W);
#pragma GCC unroll 16
    for (int m = 0; m < MR; ++m) {
      const float a = A[m * lda + k * ks];
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) c[m][v] += bv[v] * a;
    }
  }
#pragma GCC unroll 16
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[m][v] = c[m][v];
}

// The same kernel for mr <= MR rows (row tails): every row count gets its own instantiation, so
// tails also keep their accumulators in registers.
template <int MR, int NV, class BT = float>
static inline void microkernel_rows(int mr, int K, const float* A, long lda, const BT* Bp, vf (&acc)[MR][NV],
                                    long ks = 1) {
  if constexpr (MR == 1) {
    microkernel<1, NV, BT>(K, A, lda, Bp, acc, ks);
  } else {
    if (mr == MR)
      microkernel<MR, NV, BT>(K, A, lda, Bp, acc, ks);
    else
      microkernel_rows<MR - 1, NV, BT>(mr, K, A, lda, Bp, reinterpret_cast<vf(&)[MR - 1][NV]>(acc), ks);
  }
}

// Pack panels [p_lo, p_hi) of the K x N matrix B(k, n) = src[k * rs + n * cs].
template <int NV>
static void pack_panels(int K, int N, const float* src, long rs, long cs, float* dst, int p_lo, int p_hi) {
  const int NR = NV * W;
  for (int p = p_lo; p < p_hi; ++p) {
    float* out = dst + static_cast<long>(p) * K * NR;
    const int n0 = p * NR, nn = N - n0 < NR ? N - n0 : NR;
    for (int k = 0; k < K; ++k) {
      for (int c = 0; c < nn; ++c) out[k * NR + c] = src[k * rs + static_cast<long>(n0 + c) * cs];
      for (int c = nn; c < NR; ++c) out[k * NR + c] = 0.0f;
    }
  }
}

static inline int ceil_div(int a, int b) { return (a + b - 1) / b; }

// Write rows [0, mr) x columns [0, ncols) of a tile to C, adding C's old values when accumulate.
template <int MR, int NV>
static inline void store_tile(vf (&acc)[MR][NV], int mr, int ncols, float* C, long ldc, bool accumulate) {
  for (int m = 0; m < mr; ++m) {
    float* c = C + m * ldc;
    for (int v = 0; v < NV; ++v) {
      const int n = ncols - v * W;
      if (n <= 0) break;
      if (n >= W) {
        store(c + v * W, accumulate ? load(c + v * W) + acc[m][v] : acc[m][v]);
      } else {
        vf old = accumulate ? load_partial(c + v * W, n) : splat(0.0f);
        store_partial(c + v * W, old + acc[m][v], n);
      }
    }
  }
}

// C (M x N) (+)= A (M x K) * Bp, where Bp holds full-K panels (pack_panels), as tiles of one row
// block (MC rows) by one panel, numbered row block first: consecutive tiles reuse the block of A
// from L2, and each K-slice of a panel (KC x NR) serves the whole row block.
// KC is fixed: it sets how often the register tile is stored and reloaded, and a 256-row slice is
// read from L2 at a third of its bandwidth when L1 cannot hold it. MC comes from this CPU's L2.
constexpr int kGemmKC = 256;
constexpr int GEMM_MR = 6, GEMM_NV = W == 16 ? 4 : 2;  // register tile of the general GEMM
static_assert(kGemmKC == kBackwardPackRows, "backward pack scratch is sized by kBackwardPackRows");

// Rows of A per tile: the block a tile sweeps (MC x KC floats) takes a quarter of L2, leaving the
// rest for the B slices and C (252 rows with a 1 MiB L2). Any MC gives the same sums: it changes
// only which thread computes a row, never the order of a row's products.
inline int gemm_mc() {
  static const int mc = [] {
    long rows = cache_sizes().l2 / 4 / (kGemmKC * static_cast<long>(sizeof(float)));
    rows = rows < 8 * GEMM_MR ? 8 * GEMM_MR : rows > 1020 ? 1020 : rows;
    return static_cast<int>(rows / GEMM_MR * GEMM_MR);
  }();
  return mc;
}

template <class BT = float>
struct GemmT {
  int M, N, K;
  const float* A;
  long lda;
  const BT* Bp;
  long panel_stride;
  float* C;
  long ldc;
  bool accumulate;
  long a_ks = 1;  // A(m, k) at A[m*lda + k*a_ks]

  static constexpr int NR = GEMM_NV * W;
  long tiles() const { return static_cast<long>(ceil_div(M, gemm_mc())) * ceil_div(N, NR); }

  void tile(long t) const {
    const int MC = gemm_mc(), npanels = ceil_div(N, NR);
    const int mb = static_cast<int>(t / npanels), p = static_cast<int>(t % npanels);
    const int ncols = N - p * NR < NR ? N - p * NR : NR;
    const int m_end = (mb + 1) * MC < M ? (mb + 1) * MC : M;
    for (int k0 = 0; k0 < K || k0 == 0; k0 += kGemmKC) {
      const int kc = K - k0 < kGemmKC ? K - k0 : kGemmKC;
      const BT* panel = Bp + p * panel_stride + static_cast<long>(k0) * NR;
      for (int m0 = mb * MC; m0 < m_end; m0 += GEMM_MR) {
        const int mr = m_end - m0 < GEMM_MR ? m_end - m0 : GEMM_MR;
        vf acc[GEMM_MR][GEMM_NV];
        for (int m = 0; m < GEMM_MR; ++m)
          for (int v = 0; v < GEMM_NV; ++v) acc[m][v] = splat(0.0f);
        microkernel_rows<GEMM_MR, GEMM_NV, BT>(mr, kc, A + static_cast<long>(m0) * lda + k0 * a_ks, lda, panel, acc,
                                               a_ks);
        store_tile<GEMM_MR, GEMM_NV>(acc, mr, ncols, C + static_cast<long>(m0) * ldc + p * NR, ldc,
                                     accumulate || k0 > 0);
      }
      if (K == 0) break;
    }
  }
};
using Gemm = GemmT<float>;
