/* How fast a core streams a buffer it re-reads, by buffer size: the bound on B=1 recurrent steps,
   which read the whole of W_hh once per step (benchmarks/RESULTS.md, "What bounds the B=1 rows").

     cc -O2 -mavx512f -pthread benchmarks/read_bandwidth.c -o read_bandwidth && ./read_bandwidth

   Each thread sums its own buffer with AVX-512 loads (four independent sums); best of 30 samples of
   20 passes each, after 3 warm-up passes. Needs AVX-512F. */
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

typedef struct {
  size_t bytes;
  double gb_per_s;
  float sink;
} Job;

static double seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static void* run(void* p) {
  Job* job = p;
  const size_t n = job->bytes / sizeof(float);
  float* buf = aligned_alloc(64, job->bytes);
  for (size_t i = 0; i < n; i++) buf[i] = 1.0f / (float)(i + 1);
  __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;  /* four sums: loads, not adds, set the pace */
  double best = 1e30;
  for (int sample = -1; sample < 30; sample++) {
    const int passes = sample < 0 ? 3 : 20;
    const double t0 = seconds();
    for (int pass = 0; pass < passes; pass++)
      for (size_t i = 0; i < n; i += 64) {
        s0 = _mm512_add_ps(s0, _mm512_load_ps(buf + i));
        s1 = _mm512_add_ps(s1, _mm512_load_ps(buf + i + 16));
        s2 = _mm512_add_ps(s2, _mm512_load_ps(buf + i + 32));
        s3 = _mm512_add_ps(s3, _mm512_load_ps(buf + i + 48));
      }
    const double t = (seconds() - t0) / passes;
    if (sample >= 0 && t < best) best = t;
  }
  job->gb_per_s = job->bytes / best / 1e9;
  job->sink = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
  free(buf);
  return NULL;
}

int main(void) {
  const size_t kib[] = {256, 512, 768, 2048, 4096, 16384};
  for (size_t i = 0; i < sizeof kib / sizeof kib[0]; i++) {
    for (int threads = 1; threads <= 2; threads++) {
      pthread_t tid[2];
      Job jobs[2];
      for (int t = 0; t < threads; t++) {
        jobs[t].bytes = kib[i] << 10;
        pthread_create(&tid[t], NULL, run, &jobs[t]);
      }
      double total = 0;
      for (int t = 0; t < threads; t++) {
        pthread_join(tid[t], NULL);
        total += jobs[t].gb_per_s;
      }
      printf("%6zu KiB per thread, %d thread(s): %4.0f GB/s per thread\n", kib[i], threads, total / threads);
    }
  }
  return 0;
}
