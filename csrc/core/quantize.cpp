#include "quantize.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#include "kernel_api.h"

namespace rnnfast {

void quantize_weight_rows(int N, int K, const float* w, int8_t* q, float* scale) {
  for (int r = 0; r < N; ++r) {
    const float* row = w + static_cast<long>(r) * K;
    float m = 0.0f;
    for (int k = 0; k < K; ++k) {
      if (!std::isfinite(row[k]))
        throw std::invalid_argument("int8 weights: weight row " + std::to_string(r) + " holds a NaN or infinity");
      m = std::max(m, std::fabs(row[k]));
    }
    int8_t* out = q + static_cast<long>(r) * K;
    scale[r] = m / 127.0f;
    const float inv = m > 0.0f ? 127.0f / m : 0.0f;
    for (int k = 0; k < K; ++k) {
      const float v = std::nearbyint(row[k] * inv);  // the current (nearest-even) rounding mode
      out[k] = static_cast<int8_t>(v > 127.0f ? 127 : v < -127.0f ? -127 : static_cast<int>(v));
    }
  }
}

void pack_int8_panels(int K, int ncols, int panel_cols, const int8_t* q, const int* rows, int8_t* dst,
                      int32_t* comp) {
  const long kp = int8_row_bytes(K), panel = kp * panel_cols;
  const int npanels = (ncols + panel_cols - 1) / panel_cols;
  std::memset(dst, 0, static_cast<size_t>(npanels * panel));
  for (int c = 0; c < ncols; ++c) {
    int32_t sum = 0;
    int8_t* out = dst + (c / panel_cols) * panel + static_cast<long>(c % panel_cols) * 4;
    if (rows[c] >= 0) {
      const int8_t* src = q + static_cast<long>(rows[c]) * K;
      for (int k = 0; k < K; ++k) {
        out[static_cast<long>(k / 4) * panel_cols * 4 + k % 4] = src[k];
        sum += src[k];
      }
    }
    comp[c] = 128 * sum;
  }
}

void pack_bf16_pair_panels(int K, int ncols, int panel_cols, const float* w, const int* rows, uint16_t* dst) {
  const long k2 = (static_cast<long>(K) + 1) / 2, panel = k2 * panel_cols * 2;
  const int npanels = (ncols + panel_cols - 1) / panel_cols;
  std::memset(dst, 0, sizeof(uint16_t) * npanels * panel);
  for (int c = 0; c < ncols; ++c) {
    if (rows[c] < 0) continue;
    const float* src = w + static_cast<long>(rows[c]) * K;
    uint16_t* out = dst + (c / panel_cols) * panel + static_cast<long>(c % panel_cols) * 2;
    for (int k = 0; k < K; ++k) out[static_cast<long>(k / 2) * panel_cols * 2 + k % 2] = to_bf16_bits(src[k]);
  }
}

}  // namespace rnnfast
