// Portable SIMD vectors (GCC/Clang vector extensions) and vectorised activations.
//
// Included only by the per-ISA translation units (isa_*.cpp), inside their own namespace, after
// RNNFAST_VEC_FLOATS is defined: 4 (SSE2, any x86-64), 8 (AVX2+FMA) or 16 (AVX-512). The same
// source thus compiles to three instruction sets; the namespace keeps their symbols apart.
#pragma once  // per translation unit

#include <cstdint>
#include <cstring>

constexpr int W = RNNFAST_VEC_FLOATS;  // floats per vector
typedef float vf __attribute__((vector_size(W * 4)));
typedef int32_t vi __attribute__((vector_size(W * 4)));
typedef float vf_unaligned __attribute__((vector_size(W * 4), aligned(4), may_alias));

static inline vf load(const float* p) { return *reinterpret_cast<const vf_unaligned*>(p); }
static inline void store(float* p, vf v) { *reinterpret_cast<vf_unaligned*>(p) = v; }
static inline vf splat(float a) { return vf{} + a; }

// bfloat16 weights (opt-in for inference): the upper 16 bits of a float, widened on load.
typedef uint16_t vh __attribute__((vector_size(W * 2)));
typedef uint16_t vh_unaligned __attribute__((vector_size(W * 2), aligned(2), may_alias));
static inline vf load_b(const float* p) { return load(p); }
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12 false positive inside the intrinsic
static inline vf load_b(const uint16_t* p) {
#if RNNFAST_VEC_FLOATS == 16  // GCC splits the generic widening into 256-bit halves: 5 ops, not 1
  const vi wide = __builtin_bit_cast(vi, _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))));
#elif RNNFAST_VEC_FLOATS == 8
  const vi wide = __builtin_bit_cast(vi, _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
#else
  const vi wide = __builtin_convertvector(*reinterpret_cast<const vh_unaligned*>(p), vi);
#endif
  return __builtin_bit_cast(vf, wide << 16);
}
#pragma GCC diagnostic pop

// Loads/stores of the first n (< W) floats, for rows whose width is not a multiple of W.
static inline vf load_partial(const float* p, int n) {
  float tmp[W] = {};
  std::memcpy(tmp, p, sizeof(float) * n);
  return load(tmp);
}
static inline void store_partial(float* p, vf v, int n) {
  float tmp[W];
  store(tmp, v);
  std::memcpy(p, tmp, sizeof(float) * n);
}

// exp for the activations: Cody-Waite range reduction, degree-7 Taylor polynomial on
// |r| <= ln2/2 (truncation error < 1e-8 relative), scale by 2^n through the exponent bits.
// Inputs are clamped to [-87, 88] so 2^n stays a normal float; NaN passes through.
static inline vf vexp(vf x) {
  x = x > 88.0f ? splat(88.0f) : x;  // comparisons with NaN are false: NaN is kept
  x = x < -87.0f ? splat(-87.0f) : x;
  const vf shifter = splat(12582912.0f);  // 1.5 * 2^23: adding it rounds to an integer
  vf t = x * 1.44269504088896341f + shifter;
  vf n = t - shifter;
  vf r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  vf p = splat(1.0f / 5040);
  p = p * r + 1.0f / 720;
  p = p * r + 1.0f / 120;
  p = p * r + 1.0f / 24;
  p = p * r + 1.0f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  vi bits = ((__builtin_bit_cast(vi, t) - 0x4B400000) + 127) << 23;
  return p * __builtin_bit_cast(vf, bits);
}

static inline vf vsigmoid(vf x) { return 1.0f / (1.0f + vexp(-x)); }

// tanh: odd Taylor polynomial near zero (where 1 - 2/(e^2x + 1) would cancel), else the exp form.
static inline vf vtanh(vf x) {
  vi sign_mask = vi{} + static_cast<int32_t>(0x80000000u);
  vi xb = __builtin_bit_cast(vi, x);
  vi ab = xb & ~sign_mask;
  vf ax = __builtin_bit_cast(vf, ab);
  vf big = 1.0f - 2.0f / (vexp(ax + ax) + 1.0f);
  vi bigb = __builtin_bit_cast(vi, big) | (xb & sign_mask);
  vf x2 = x * x;
  vf p = splat(62.0f / 2835);
  p = p * x2 - 17.0f / 315;
  p = p * x2 + 2.0f / 15;
  p = p * x2 - 1.0f / 3;
  vf small = x + x * x2 * p;
  return ax < 0.3f ? small : __builtin_bit_cast(vf, bigb);
}

static inline vf vrelu(vf x) { return x < 0.0f ? splat(0.0f) : x; }  // NaN stays NaN

// Flush denormals to zero inside kernels (they cost ~100x per operation); restores on exit.
#if RNNFAST_X86
struct DenormalGuard {
  unsigned saved;
  DenormalGuard() {
    saved = __builtin_ia32_stmxcsr();
    __builtin_ia32_ldmxcsr(saved | 0x8040);  // FTZ | DAZ
  }
  ~DenormalGuard() { __builtin_ia32_ldmxcsr(saved); }
};
#elif defined(__aarch64__)
struct DenormalGuard {
  unsigned long saved;
  DenormalGuard() {
    __asm__ volatile("mrs %0, fpcr" : "=r"(saved));
    __asm__ volatile("msr fpcr, %0" : : "r"(saved | (1ul << 24)));  // FZ
  }
  ~DenormalGuard() { __asm__ volatile("msr fpcr, %0" : : "r"(saved)); }
};
#else
struct DenormalGuard {  // denormals keep their (slow but exact) arithmetic
  DenormalGuard() {}
};
#endif
