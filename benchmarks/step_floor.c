/* The floor of one B=1 LSTM step (benchmarks/RESULTS.md, "What bounds the B=1 rows"): the recurrent
   product alone, the way rnnfast's tiles compute it (one row, the four gate vectors of a 16-unit
   block, packed panels of K rows), with nothing else of a step.

     cc -O2 -mavx512f -mfma -pthread benchmarks/step_floor.c -o step_floor && ./step_floor [H]

   H=256 (default), each thread's half of W_hh is 8 panels of K=256 (512 KB):
     one thread:  no barrier: the L2's read rate.
     two threads: 8 panels each (H=256 split in two, as rnnfast's team splits it) and a spin barrier
                  per step; each step reads the whole h, half of it written by the other thread
                  the step before. What a two-thread step costs beyond the product.
   H=512: each thread's half is 16 panels of K=512 (2 MB, more than a 1 MB L2), on two threads at
   once, in index order every step and in alternating order (every other step reversed, as the
   kernels run B=1 steps): what L3 bandwidth and L2 reuse allow.
   Medians over 20000 steps (4000 at H=512). Needs AVX-512F. */
#include <immintrin.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { NV = 4, W = 16 };

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
static void tile(int K, const float* h, const float* panel, float* out) {
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
  int tid, threads, K, panels, steps, barrier, alternate;
  double median_us;
} Job;

static float* h_slots;                        /* two slots of h (K floats each) */
static _Alignas(64) atomic_long done[2][16];  /* steps finished, one cache line per thread */

static void* run(void* p) {
  Job* job = p;
  const int K = job->K;
  const long panel = (long)K * NV * W;
  float* w = aligned_alloc(64, sizeof(float) * panel * job->panels);
  for (long i = 0; i < panel * job->panels; i++) w[i] = 1e-4f * (float)(i % 97);
  double* t = malloc(sizeof(double) * job->steps);
  const int cols = K / job->threads / W; /* 16-unit blocks of h this thread writes */
  for (int s = 0; s < job->steps; s++) {
    const double t0 = seconds();
    const float* hprev = h_slots + (s & 1) * K;
    float* hnext = h_slots + ((s + 1) & 1) * K + job->tid * (K / job->threads);
    for (int i = 0; i < job->panels; i++) {
      const int j = job->alternate && (s & 1) ? job->panels - 1 - i : i;
      tile(K, hprev, w + j * panel, hnext + (j % cols) * W);
    }
    if (job->barrier) {
      atomic_store_explicit(&done[job->tid][0], s + 1, memory_order_release);
      while (atomic_load_explicit(&done[1 - job->tid][0], memory_order_acquire) < s + 1) _mm_pause();
    }
    t[s] = seconds() - t0;
  }
  qsort(t, job->steps, sizeof(double), by_value);
  job->median_us = t[job->steps / 2] * 1e6;
  free(t);
  free(w);
  return NULL;
}

/* Both jobs at once on two threads. */
static void run_two(Job* jobs) {
  pthread_t other;
  for (int k = 0; k < 2; k++) atomic_store(&done[k][0], 0);
  pthread_create(&other, NULL, run, &jobs[1]);
  run(&jobs[0]);
  pthread_join(other, NULL);
}

int main(int argc, char** argv) {
  const int H = argc > 1 ? atoi(argv[1]) : 256;
  if (H != 256 && H != 512) {
    fprintf(stderr, "usage: step_floor [256|512]\n");
    return 2;
  }
  h_slots = aligned_alloc(64, sizeof(float) * 2 * H);
  for (int i = 0; i < 2 * H; i++) h_slots[i] = 1e-3f * (float)(i % 13);
  if (H == 256) {
    Job one = {0, 1, 256, 8, 20000, 0, 0, 0};
    run(&one);
    printf("one thread, 512 KB of W_hh:                 %.3f us per step (%.0f GB/s)\n", one.median_us,
           sizeof(float) * 256.0 * NV * W * 8 / one.median_us / 1e3);
    Job two[2] = {{0, 2, 256, 8, 20000, 1, 0, 0}, {1, 2, 256, 8, 20000, 1, 0, 0}};
    run_two(two);
    printf("two threads, 512 KB each, barrier per step: %.3f / %.3f us per step\n", two[0].median_us,
           two[1].median_us);
    return 0;
  }
  for (int alternate = 0; alternate < 2; alternate++) {
    Job two[2] = {{0, 2, 512, 16, 4000, 0, alternate, 0}, {1, 2, 512, 16, 4000, 0, alternate, 0}};
    run_two(two);
    printf("two threads, 2 MB each, %s order: %.2f / %.2f us per step\n", alternate ? "alternating" : "index",
           two[0].median_us, two[1].median_us);
  }
  return 0;
}
