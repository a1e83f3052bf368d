// bfloat16 inference products on vdpbf16ps (AVX512_BF16; compiled only into the avx512 dot twin).
//
// The instruction multiplies pairs of bfloat16 and adds both products to a float lane, so weights
// and activations are both bfloat16: each activation row is rounded (to nearest even) once per
// step or chunk. Panels: W_ihᵀ and W_hhᵀ per hidden block (G*NB columns), K padded to even;
// column c's weights k = 2i, 2i+1 are the two halves of float lane c of row i: byte
// (i * G*NB + c) * 4 + (k % 2) * 2. Twice the multiply-adds per instruction of float FMA, and the
// rounding of the activations costs ~2e-3 relative more than the widening path (weights only).
#pragma once

struct Bf16Products {
  static long row_bytes(int K) { return bf16_pair_row_bytes(K); }

  // Round K floats to bfloat16 (a zero pads K to even); bfloat16 rows need no scale.
  static float encode(const float* src, int K, uint8_t* dst) {
    uint16_t* d = reinterpret_cast<uint16_t*>(dst);
    for (int i = 0; i < K; i += 16) {
      const __mmask16 m = K - i >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << (K - i)) - 1);
      const __m256bh h = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, src + i));
      _mm256_mask_storeu_epi16(d + i, m, __builtin_bit_cast(__m256i, h));
    }
    if (K % 2) d[K] = 0;
    return 1.0f;
  }

  template <int MR, int NV>
  static inline void kernel(int k2, const uint8_t* A, long lda, const uint8_t* Bp, vf (&c)[MR][NV]) {
    for (int i = 0; i < k2; ++i) {
      const uint8_t* b = Bp + static_cast<long>(i) * NV * W * 4;
      __m512bh bv[NV];
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) bv[v] = __builtin_bit_cast(__m512bh, _mm512_loadu_si512(b + v * W * 4));
#pragma GCC unroll 16
      for (int m = 0; m < MR; ++m) {
        int32_t a2;
        std::memcpy(&a2, A + m * lda + i * 4, 4);
        const __m512bh av = __builtin_bit_cast(__m512bh, _mm512_set1_epi32(a2));
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v)
          c[m][v] = __builtin_bit_cast(vf, _mm512_dpbf16_ps(__builtin_bit_cast(__m512, c[m][v]), av, bv[v]));
      }
    }
  }

  template <int MR, int NV>
  static inline void kernel_rows(int mr, int k2, const uint8_t* A, long lda, const uint8_t* Bp, vf (&c)[MR][NV]) {
    if constexpr (MR == 1) {
      kernel<1, NV>(k2, A, lda, Bp, c);
    } else {
      if (mr == MR)
        kernel<MR, NV>(k2, A, lda, Bp, c);
      else
        kernel_rows<MR - 1, NV>(mr, k2, A, lda, Bp, reinterpret_cast<vf(&)[MR - 1][NV]>(c));
    }
  }

  // out[m] += the products of rows m0..m0+mr-1 with one block panel.
  template <int MR, int NV>
  static void block(int mr, int K, const uint8_t* q, const float*, const void* panel, const int32_t*, const float*,
                    vf (&out)[MR][NV]) {
    vf acc[MR][NV];
    for (int m = 0; m < MR; ++m)
      for (int v = 0; v < NV; ++v) acc[m][v] = splat(0.0f);
    kernel_rows<MR, NV>(mr, (K + 1) / 2, q, row_bytes(K), static_cast<const uint8_t*>(panel), acc);
    for (int m = 0; m < mr; ++m)
      for (int v = 0; v < NV; ++v) out[m][v] += acc[m][v];
  }
};
