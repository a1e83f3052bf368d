// int8 weights for inference (ISA-independent part): symmetric per output channel, packed in the
// panel layout of kernels/gemm_int8.h.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

namespace rnnfast {

// Quantize each row r of the N x K matrix w: scale[r] = max_k |w(r, k)| / 127 and
// q(r, k) = rint(w(r, k) * 127 / max) in [-127, 127] (all zero with scale 0 for a zero row).
// Throws std::invalid_argument for a NaN or infinite weight.
void quantize_weight_rows(int N, int K, const float* w, int8_t* q, float* scale);

// Pack columns [0, ncols) of Bᵀ = q (row c: column c of B, K values) into panels of panel_cols
// columns: column c's weights k = 4i..4i+3 at byte ((c / panel_cols) * kp/4 + i) * panel_cols * 4
// + (c % panel_cols) * 4 + k % 4 (kp = K padded to 4; zeros past K and for null rows).
// rows[c]: the row of q holding column c, or -1 for a zero column. Also comp[c] = 128 * Σ_k q.
void pack_int8_panels(int K, int ncols, int panel_cols, const int8_t* q, const int* rows, int8_t* dst,
                      int32_t* comp);

// Round-to-nearest-even float -> bfloat16 bits (NaN stays a quiet NaN).
inline uint16_t to_bf16_bits(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

// Pack columns [0, ncols) of Bᵀ = w (row c of the float matrix w: column c of B, K values) as
// bfloat16 pairs for vdpbf16ps (kernels/gemm_bf16.h) into panels of panel_cols columns: column
// c's weights k = 2i, 2i+1 at element ((c / panel_cols) * kp/2 + i) * panel_cols * 2 + (c %
// panel_cols) * 2 + k % 2 (kp = K padded to even). rows[c]: the row of w, or -1 for zeros.
void pack_bf16_pair_panels(int K, int ncols, int panel_cols, const float* w, const int* rows, uint16_t* dst);

}  // namespace rnnfast
