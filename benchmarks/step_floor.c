/* The floor of one B=1 LSTM step at H=256 (benchmarks/RESULTS.md, "What bounds the B=1 rows"): the
   recurrent product alone, the way rnnfast's tiles compute it (one row, four gate vectors of a
   16-unit block, K=256, packed panels), with nothing else of a step.

     cc -O2 -mavx512f -mfma -pthread benchmarks/step_floor.c -o step_floor && ./step_floor

   one thread:  8 blocks (512 KB of W_hh, half of H=256's), no barrier: the L2 read rate.
   two threads: 8 blocks each (H=256 split in two, as rnnfast's team splits it), then a spin
                barrier per step; each step reads the whole h, half of it written by the other
                thread the step before. What a two-thread step costs beyond the product.
   Medians over 20000 steps. Needs AVX-512F. */
#include <immintrin.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { K = 256, NV = 4, W = 16, BLOCKS = 8, STEPS = 20000 };
#define PANEL ((long)K * NV * W)

static double seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static int by_value(const void* a, const void* b) {
  const double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

/* One tile: 16 hidden units' four gate sums over K, then a cheap stand-in for the cell. */
static void tile(const float* h, const float* panel, float* out) {
  __m512 c0 = _mm512_setzero_ps(), c1 = c0, c2 = c0, c3 = c0;
  for (int k = 0; k < K; k++) {
    const __m512 a = _mm512_set1_ps(h[k]);
    const float* b = panel + (long)k * NV * W;
    c0 = _mm512_fmadd_ps(_mm512_load_ps(b), a, c0);
    c1 = _mm512_fmadd_ps(_mm512_load_ps(b + W), a, c1);
    c2 = _mm512_fmadd_ps(_mm512_load_ps(b + 2 * W), a, c2);
    c3 = _mm512_fmadd_ps(_mm512_load_ps(b + 3 * W), a, c3);
  }
  const __m512 s = _mm512_mul_ps(_mm512_add_ps(c0, c1), _mm512_add_ps(c2, c3));
  _mm512_store_ps(out, _mm512_div_ps(s, _mm512_add_ps(_mm512_set1_ps(1.0f), _mm512_abs_ps(s))));
}

typedef struct {
  int tid, threads;
  double median_us;
} Job;

static float* h_slots;                 /* two slots of h (K floats each) */
static _Alignas(64) atomic_long done[2][16];  /* steps finished, one cache line per thread */

static void* run(void* p) {
  Job* job = p;
  float* w = aligned_alloc(64, sizeof(float) * PANEL * BLOCKS);
  for (long i = 0; i < PANEL * BLOCKS; i++) w[i] = 1e-4f * (float)(i % 97);
  double* t = malloc(sizeof(double) * STEPS);
  for (int s = 0; s < STEPS; s++) {
    const double t0 = seconds();
    const float* hprev = h_slots + (s & 1) * K;
    float* hnext = h_slots + ((s + 1) & 1) * K + job->tid * (K / job->threads);
    for (int j = 0; j < BLOCKS; j++) tile(hprev, w + j * PANEL, hnext + (j % (K / job->threads / W)) * W);
    if (job->threads == 2) {
      atomic_store_explicit(&done[job->tid][0], s + 1, memory_order_release);
      while (atomic_load_explicit(&done[1 - job->tid][0], memory_order_acquire) < s + 1) _mm_pause();
    }
    t[s] = seconds() - t0;
  }
  qsort(t, STEPS, sizeof(double), by_value);
  job->median_us = t[STEPS / 2] * 1e6;
  free(t);
  free(w);
  return NULL;
}

int main(void) {
  h_slots = aligned_alloc(64, sizeof(float) * 2 * K);
  for (int i = 0; i < 2 * K; i++) h_slots[i] = 1e-3f * (float)(i % 13);
  Job one = {0, 1, 0};
  run(&one);
  printf("one thread, 512 KB of W_hh:             %.3f us per step (%.0f GB/s)\n", one.median_us,
         sizeof(float) * PANEL * BLOCKS / one.median_us / 1e3);
  Job two[2] = {{0, 2, 0}, {1, 2, 0}};
  pthread_t other;
  pthread_create(&other, NULL, run, &two[1]);
  run(&two[0]);
  pthread_join(other, NULL);
  printf("two threads, 512 KB each, barrier per step: %.3f / %.3f us per step\n", two[0].median_us,
         two[1].median_us);
  return 0;
}
