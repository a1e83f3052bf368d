// The non-recurrent parts of the exported models, as the Python models compute them: embedding
// lookup, the linear head on the kernels' GEMM (same products as nn.Linear), classifier pooling.
#pragma once

#include <vector>

namespace rnnfast::capi {

// Throws std::invalid_argument naming the first id outside [0, V).
void check_ids(const int* ids, long n, int V);
// out (n, E): rows of table (V, E). ids must have passed check_ids.
void embed(const float* table, int E, const int* ids, long n, float* out);

// y (M, N) = x (M, K) W^T + b with W (N, K); work has linear_work_size(K, N) floats. A step
// passes its preallocated work; forward calls pass an empty vector to grow.
long linear_work_size(int K, int N);
void linear(const float* x, int M, int K, const float* w, const float* b, int N, float* y, float* work);

// The same product for the few rows of a stream step, as dot products of x with W's rows: the
// GEMM would pack W (or pad x to a whole panel) on every call. Fixed summation order.
void linear_step(const float* x, int M, int K, const float* w, const float* b, int N, float* y);

enum class Pooling { none, last, mean, max };
// pooled (B, F) from the top layer's y (T, B, F) over steps t < lengths[b] ('mean', 'max'), or
// from its final states hn (D, B, H) with F = D*H ('last': forward then reverse direction).
void pool(Pooling p, const float* y, const float* hn, int T, int B, int D, int H, const int* lengths, float* pooled);

}  // namespace rnnfast::capi
