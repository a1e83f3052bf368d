// int8 inference products (per-ISA): u8 activations x s8 weights summed exactly in int32.
//
// Weights are symmetric int8 per output column (scale s_c). Activations are quantized per row and
// call, symmetric too: q = rint(a * 127 / max|a|) in [-127, 127], stored as u = q + 128 because
// the dot-product instruction (vpdpbusd) multiplies unsigned by signed bytes. The constant zero
// point makes the correction one per-column vector, 128 * Σ_k w(k, c), packed with the weights
// (a per-row zero point would cost a product per output). So
//   Σ_k q(k) w(k, c) = Σ_k u(k) w(k, c) - 128 * Σ_k w(k, c)    (exact in int32 for K <= 65536)
//   y(c) = float(that) * s_row * s_c.
// Panels: W_ihᵀ and W_hhᵀ both per hidden block (G*NB columns, as the recurrent float panels),
// K padded to a multiple of 4; column c's 4 weights of k = 4i..4i+3 are the 4 bytes of int32
// lane c of row i: byte (i * G*NB + c) * 4 + k % 4. One lane sums 4 products per instruction.
// RNNFAST_VNNI (the dot-product twin translation units) uses the instruction; elsewhere the same
// integer sums are computed with int32 vector arithmetic (exact, slower).
#pragma once

typedef int8_t vb_unaligned __attribute__((vector_size(W * 4), aligned(1), may_alias));
typedef uint8_t vu8 __attribute__((vector_size(W)));

// acc + Σ_{j<4} a_j * b_j per int32 lane, where a4 holds the 4 unsigned bytes a_0..a_3 (a_0 lowest)
// and each lane of b 4 signed bytes.
static inline vi dot4(vi acc, uint32_t a4, vi b) {
#if defined(RNNFAST_VNNI) && RNNFAST_VEC_FLOATS == 16
  return __builtin_bit_cast(vi, _mm512_dpbusd_epi32(__builtin_bit_cast(__m512i, acc),
                                                    _mm512_set1_epi32(static_cast<int>(a4)),
                                                    __builtin_bit_cast(__m512i, b)));
#elif defined(RNNFAST_VNNI) && RNNFAST_VEC_FLOATS == 8
  return __builtin_bit_cast(vi, _mm256_dpbusd_avx_epi32(__builtin_bit_cast(__m256i, acc),
                                                        _mm256_set1_epi32(static_cast<int>(a4)),
                                                        __builtin_bit_cast(__m256i, b)));
#else
  // Sign-extend byte j of each lane: shift it to the top as unsigned (no signed overflow), then
  // arithmetic-shift it back down.
  typedef uint32_t vu32 __attribute__((vector_size(W * 4)));
  const vu32 u = __builtin_bit_cast(vu32, b);
  const int32_t a0 = a4 & 255, a1 = (a4 >> 8) & 255, a2 = (a4 >> 16) & 255, a3 = a4 >> 24;
  return acc + (__builtin_bit_cast(vi, u << 24) >> 24) * a0 + (__builtin_bit_cast(vi, u << 16) >> 24) * a1 +
         (__builtin_bit_cast(vi, u << 8) >> 24) * a2 + (b >> 24) * a3;
#endif
}

// acc[m][v] += Σ_k A[m][k] * Bp[k][v*W..] for an int8 panel (layout above); A rows of k4*4 bytes
// at A + m*lda.
template <int MR, int NV>
static inline void microkernel_s8(int k4, const uint8_t* A, long lda, const int8_t* Bp, vi (&acc)[MR][NV]) {
  vi c[MR][NV];
#pragma GCC unroll 16
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) c[m][v] = acc[m][v];
  for (int i = 0; i < k4; ++i) {
    const int8_t* b = Bp + static_cast<long>(i) * NV * W * 4;
    vi bv[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) bv[v] = __builtin_bit_cast(vi, *reinterpret_cast<const vb_unaligned*>(b + v * W * 4));
#pragma GCC unroll 16
    for (int m = 0; m < MR; ++m) {
      uint32_t a4;
      std::memcpy(&a4, A + m * lda + i * 4, 4);
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) c[m][v] = dot4(c[m][v], a4, bv[v]);
    }
  }
#pragma GCC unroll 16
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[m][v] = c[m][v];
}

// The same for mr <= MR rows: one instantiation per row count keeps tails in registers.
template <int MR, int NV>
static inline void microkernel_s8_rows(int mr, int k4, const uint8_t* A, long lda, const int8_t* Bp,
                                       vi (&acc)[MR][NV]) {
  if constexpr (MR == 1) {
    microkernel_s8<1, NV>(k4, A, lda, Bp, acc);
  } else {
    if (mr == MR)
      microkernel_s8<MR, NV>(k4, A, lda, Bp, acc);
    else
      microkernel_s8_rows<MR - 1, NV>(mr, k4, A, lda, Bp, reinterpret_cast<vi(&)[MR - 1][NV]>(acc));
  }
}

// Quantize n floats to n_pad bytes (u = q + 128, zero-valued padding u = 128) and return the row's
// scale max|a| / 127 (0 for a zero row; NaN when the row holds a NaN, so the result is NaN too).
// Rounding: to nearest even (the 1.5 * 2^23 shift; |a * 127 / max| <= 127), as numpy's rint, of
// the float product (no fused multiply-add, so every ISA and a float32 reference agree bitwise).
__attribute__((optimize("fp-contract=off"), noinline)) static float quantize_row(const float* src, int n, long n_pad, uint8_t* dst) {
  vf amax = splat(0.0f);
  vi nan = vi{};
  int i = 0;
  for (; i + W <= n; i += W) {
    const vf v = load(src + i);
    const vf a = v < 0.0f ? -v : v;
    amax = a > amax ? a : amax;
    nan |= v != v;
  }
  float m = 0.0f;
  bool has_nan = false;
  for (int l = 0; l < W; ++l) {
    m = amax[l] > m ? amax[l] : m;
    has_nan = has_nan || nan[l];
  }
  for (int j = i; j < n; ++j) {
    const float a = src[j] < 0.0f ? -src[j] : src[j];
    m = a > m ? a : m;
    has_nan = has_nan || src[j] != src[j];
  }
  if (has_nan || m == 0.0f || !(m <= 3.4e38f)) {  // NaN, zero or infinite rows: no usable scale
    for (long j = 0; j < n_pad; ++j) dst[j] = 128;
    return has_nan || m != 0.0f ? __builtin_nanf("") : 0.0f;
  }
  const float inv = 127.0f / m;
  const vf shifter = splat(12582912.0f);
  for (i = 0; i + W <= n; i += W) {
    const vf r = (load(src + i) * inv + shifter) - shifter;
    const vi q = __builtin_convertvector(r, vi) + 128;
    *reinterpret_cast<vu8*>(dst + i) = __builtin_convertvector(q, vu8);
  }
  for (int j = i; j < n; ++j) {
    const float r = (src[j] * inv + 12582912.0f) - 12582912.0f;
    dst[j] = static_cast<uint8_t>(static_cast<int>(r) + 128);
  }
  for (long j = n; j < n_pad; ++j) dst[j] = 128;
  return m / 127.0f;
}

// Dequantize one tile row: out[v] = base[v] + float(acc[v]) * s_row * scale[v*W..].
template <int NV>
static inline void dequantize(const vi (&acc)[NV], float s_row, const float* scale, vf (&out)[NV]) {
#pragma GCC unroll 8
  for (int v = 0; v < NV; ++v) out[v] = out[v] + __builtin_convertvector(acc[v], vf) * s_row * load(scale + v * W);
}

// Accumulators of one tile, starting from minus the zero-point compensation of its columns.
template <int MR, int NV>
static inline void start_s8(const int32_t* comp, vi (&acc)[MR][NV]) {
  for (int v = 0; v < NV; ++v) {
    vi c;
    std::memcpy(&c, comp + v * W, sizeof c);
    for (int m = 0; m < MR; ++m) acc[m][v] = -c;
  }
}
