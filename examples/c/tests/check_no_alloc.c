/* A stream step allocates nothing: malloc, calloc and realloc are counted (this program's
 * definitions take the place of the C library's for librnnfast too) while streams of an RNN model
 * and of a language model step, after a few warm-up steps (the first starts the thread team).
 * Usage: check_no_alloc FIXTURE_DIR. Linux/glibc only. */
#include <stdio.h>
#include <string.h>

#include <rnnfast/rnnfast.h>

extern void* __libc_malloc(size_t);
extern void* __libc_calloc(size_t, size_t);
extern void* __libc_realloc(void*, size_t);
static volatile int counting = 0, allocations = 0;

void* malloc(size_t n) {
  if (counting) __atomic_add_fetch(&allocations, 1, __ATOMIC_RELAXED);
  return __libc_malloc(n);
}
void* calloc(size_t k, size_t n) {
  if (counting) __atomic_add_fetch(&allocations, 1, __ATOMIC_RELAXED);
  return __libc_calloc(k, n);
}
void* realloc(void* p, size_t n) {
  if (counting) __atomic_add_fetch(&allocations, 1, __ATOMIC_RELAXED);
  return __libc_realloc(p, n);
}

static int steps(const char* dir, const char* name, int tokens, int batch) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s.rnnfast", dir, name);
  rnnfast_model* m = NULL;
  rnnfast_stream* s = NULL;
  if (rnnfast_model_load(path, &m) || rnnfast_stream_create(m, batch, &s)) {
    printf("FAIL %s: %s\n", name, rnnfast_last_error());
    return 1;
  }
  static float x[4096], y[4096];
  static int ids[64];
  memset(x, 0, sizeof x);
  for (int i = 0; i < 64; ++i) ids[i] = tokens ? i % rnnfast_model_vocab_size(m) : 0;
  for (int t = 0; t < 3; ++t) tokens ? rnnfast_stream_step_tokens(s, ids, y) : rnnfast_stream_step(s, x, y);
  allocations = 0;
  counting = 1;
  int status = 0;
  for (int t = 0; t < 100; ++t) status |= tokens ? rnnfast_stream_step_tokens(s, ids, y) : rnnfast_stream_step(s, x, y);
  counting = 0;
  const int n = allocations;
  rnnfast_stream_free(s);
  rnnfast_model_free(m);
  printf("%s %s: %d allocations in 100 steps (B=%d)\n", n || status ? "FAIL" : "ok  ", name, n, batch);
  return n != 0 || status != 0;
}

int main(int argc, char** argv) {
  if (argc != 2) return fprintf(stderr, "usage: %s FIXTURE_DIR\n", argv[0]), 2;
  int bad = steps(argv[1], "lstm256", 0, 4) + steps(argv[1], "rnn_relu", 0, 1) + steps(argv[1], "lm_lstm", 1, 3) +
            steps(argv[1], "lm_gru", 1, 1);
  return bad ? 1 : 0;
}
