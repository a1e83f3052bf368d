/* Timing loop for benchmarks/capi_step.py: n stream steps of the installed C API, in C (so no
 * Python or ctypes cost is counted). Returns the total seconds, or -1 on an error. */
#include <time.h>

#include <rnnfast/rnnfast.h>

double rnnfast_bench_steps(rnnfast_stream* s, int tokens, const float* x, const int* ids, float* y, int n) {
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  for (int i = 0; i < n; ++i)
    if ((tokens ? rnnfast_stream_step_tokens(s, ids, y) : rnnfast_stream_step(s, x, y)) != RNNFAST_OK) return -1.0;
  clock_gettime(CLOCK_MONOTONIC, &b);
  return (double)(b.tv_sec - a.tv_sec) + 1e-9 * (double)(b.tv_nsec - a.tv_nsec);
}
