#include "dense.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

#include "core/cpu.h"
#include "core/kernel_api.h"

namespace rnnfast::capi {

void check_ids(const int* ids, long n, int V) {
  for (long i = 0; i < n; ++i)
    if (ids[i] < 0 || ids[i] >= V)
      throw std::invalid_argument("ids[" + std::to_string(i) + "]: expected a token id in [0, " + std::to_string(V) +
                                  "), got " + std::to_string(ids[i]));
}

void embed(const float* table, int E, const int* ids, long n, float* out) {
  for (long i = 0; i < n; ++i) std::memcpy(out + i * E, table + static_cast<long>(ids[i]) * E, sizeof(float) * E);
}

long linear_work_size(int K, int N) { return kernels_for(active_isa()).gemm_work_size(K, N); }

void linear(const float* x, int M, int K, const float* w, const float* b, int N, float* y, float* work) {
  const IsaKernels& k = kernels_for(active_isa());
  // As the Python binding's gemm: small products are not worth waking a second thread for.
  const int threads = static_cast<double>(M) * N * K < 4.0e6 ? 1 : num_threads();
  k.gemm(M, N, K, x, K, w, 1, K, y, N, false, work, threads);  // W read transposed in place
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) y[static_cast<long>(i) * N + j] += b[j];
}

namespace {

float dot(const float* a, const float* b, int n) {
  constexpr int kLanes = 16;  // independent partial sums: the compiler keeps them in vector registers
  float acc[kLanes] = {};
  int k = 0;
  for (; k + kLanes <= n; k += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] += a[k + l] * b[k + l];
  for (int l = 0; k < n; ++k, ++l) acc[l] += a[k] * b[k];
  float s = 0.0f;
  for (int l = 0; l < kLanes; ++l) s += acc[l];
  return s;
}

}  // namespace

void linear_step(const float* x, int M, int K, const float* w, const float* b, int N, float* y) {
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j)
      y[static_cast<long>(i) * N + j] = dot(x + static_cast<long>(i) * K, w + static_cast<long>(j) * K, K) + b[j];
}

void pool(Pooling p, const float* y, const float* hn, int T, int B, int D, int H, const int* lengths, float* pooled) {
  const int F = D * H;
  for (int b = 0; b < B; ++b) {
    float* out = pooled + static_cast<long>(b) * F;
    const int len = lengths ? lengths[b] : T;
    if (p == Pooling::last) {
      for (int d = 0; d < D; ++d) std::memcpy(out + d * H, hn + (static_cast<long>(d) * B + b) * H, sizeof(float) * H);
      continue;
    }
    std::memcpy(out, y + static_cast<long>(b) * F, sizeof(float) * F);
    for (int t = 1; t < len; ++t) {
      const float* row = y + (static_cast<long>(t) * B + b) * F;
      if (p == Pooling::mean)
        for (int f = 0; f < F; ++f) out[f] += row[f];
      else
        for (int f = 0; f < F; ++f) out[f] = std::max(out[f], row[f]);
    }
    if (p == Pooling::mean)
      for (int f = 0; f < F; ++f) out[f] /= static_cast<float>(len);
  }
}

}  // namespace rnnfast::capi
