/* The C API against Python's outputs on exported models (fixtures from make_fixtures.py):
 * forward with ragged lengths, stream steps (features and tokens), stream state, reset.
 * Usage: check_outputs FIXTURE_DIR. Exit status 0 when every case matches to 1e-5 (q_*: 2e-3). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rnnfast/rnnfast.h>

static int failures = 0;

static void* read_all(const char* dir, const char* name, const char* ext, size_t bytes) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s.%s", dir, name, ext);
  FILE* f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "cannot open %s\n", path);
    exit(2);
  }
  void* p = malloc(bytes ? bytes : 1);
  if (fread(p, 1, bytes, f) != bytes || fgetc(f) != EOF) {
    fprintf(stderr, "%s: expected exactly %zu bytes\n", path, bytes);
    exit(2);
  }
  fclose(f);
  return p;
}

/* Reduced-precision cases (q_*): Python's float rounding on another ISA may move one value of h
 * across an int8 quantization (or bfloat16 rounding) boundary: a difference of one quantum. */
static double tolerance(const char* name) { return strncmp(name, "q_", 2) == 0 ? 2e-3 : 1e-5; }

static void compare(const char* name, const char* what, const float* got, const float* want, size_t n) {
  double worst = 0.0;
  size_t at = 0;
  for (size_t i = 0; i < n; ++i) {
    const double err = fabs((double)got[i] - want[i]) / (1.0 + fabs(want[i]));
    if (!(err <= worst)) worst = err, at = i;  /* NaN counts as the worst */
  }
  if (!(worst <= tolerance(name))) {
    printf("FAIL %s %s: element %zu is %.8g, Python gave %.8g\n", name, what, at, got[at], want[at]);
    ++failures;
  } else {
    printf("ok   %s %s (%zu values, max error %.2g)\n", name, what, n, worst);
  }
}

static void check(int status, const char* what) {
  if (status != RNNFAST_OK) {
    printf("FAIL %s: status %d: %s\n", what, status, rnnfast_last_error());
    exit(1);
  }
}

static void run_case(const char* dir, const char* name, int T, int B, int S, int SB) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s.rnnfast", dir, name);
  rnnfast_model* m = NULL;
  check(rnnfast_model_load(path, &m), path);
  const int tokens = rnnfast_model_vocab_size(m) > 0;
  const char* weights = rnnfast_model_inference_weights(m);
  if (!weights || strcmp(weights, rnnfast_model_metadata(m, "inference_weights")) != 0) {
    printf("FAIL %s: inference weights %s, the file says %s\n", name, weights ? weights : "NULL",
           rnnfast_model_metadata(m, "inference_weights"));
    ++failures;
  }
  const int in = rnnfast_model_input_size(m), out = rnnfast_model_output_size(m);
  const int per_seq = rnnfast_model_kind_of(m) == RNNFAST_MODEL_SEQUENCE_CLASSIFIER;
  const size_t x_n = (size_t)T * B * (tokens ? 1 : in), y_n = per_seq ? (size_t)B * out : (size_t)T * B * out;

  void* x = read_all(dir, name, "x", x_n * 4);
  int* lengths = read_all(dir, name, "lengths", (size_t)B * 4);
  float* want = read_all(dir, name, "y", y_n * 4);
  float* y = malloc(y_n * 4);
  check(tokens ? rnnfast_model_forward_tokens(m, x, T, B, lengths, y) : rnnfast_model_forward(m, x, T, B, lengths, y),
        "forward");
  compare(name, "forward (ragged)", y, want, y_n);
  free(x), free(lengths), free(want), free(y);

  rnnfast_stream* s = NULL;
  const int st = rnnfast_stream_create(m, SB, &s);
  if (S == 0) {  /* bidirectional models and classifiers refuse streams, with a reason */
    if (st != RNNFAST_ERROR_UNSUPPORTED || s != NULL || strstr(rnnfast_last_error(), "rnnfast_model_forward") == NULL) {
      printf("FAIL %s: stream_create gave %d (%s), expected RNNFAST_ERROR_UNSUPPORTED\n", name, st, rnnfast_last_error());
      ++failures;
    } else {
      printf("ok   %s refuses streams: %s\n", name, rnnfast_last_error());
    }
    rnnfast_model_free(m);
    return;
  }
  check(st, "stream_create");
  const size_t sx_step = (size_t)SB * (tokens ? 1 : in), sy_step = (size_t)SB * out;
  const size_t state_n = (size_t)rnnfast_stream_state_size(s);
  char* sx = read_all(dir, name, "sx", (size_t)S * sx_step * 4);
  float* sy_want = read_all(dir, name, "sy", (size_t)S * sy_step * 4);
  float* state_want = read_all(dir, name, "state", state_n * 4);
  float* sy = malloc((size_t)S * sy_step * 4);
  float* state = malloc(state_n * 4);
  for (int t = 0; t < S; ++t) {
    const void* xt = sx + (size_t)t * sx_step * 4;
    check(tokens ? rnnfast_stream_step_tokens(s, xt, sy + t * sy_step) : rnnfast_stream_step(s, xt, sy + t * sy_step),
          "stream step");
  }
  compare(name, tokens ? "stream_step_tokens" : "stream_step", sy, sy_want, (size_t)S * sy_step);
  check(rnnfast_stream_get_state(s, state), "get_state");
  compare(name, "stream state", state, state_want, state_n);

  /* reset gives the first step again; set_state then get_state gives the state back */
  rnnfast_stream_reset(s);
  check(tokens ? rnnfast_stream_step_tokens(s, (const int*)sx, sy) : rnnfast_stream_step(s, (const float*)sx, sy),
        "step after reset");
  compare(name, "first step after reset", sy, sy_want, sy_step);
  check(rnnfast_stream_set_state(s, state_want), "set_state");
  memset(state, 0, state_n * 4);
  check(rnnfast_stream_get_state(s, state), "get_state");
  compare(name, "set_state round trip", state, state_want, state_n);

  free(sx), free(sy_want), free(state_want), free(sy), free(state);
  rnnfast_stream_free(s);
  rnnfast_model_free(m);
}

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s FIXTURE_DIR\n", argv[0]);
    return 2;
  }
  char path[1024], name[256];
  snprintf(path, sizeof path, "%s/cases.txt", argv[1]);
  FILE* f = fopen(path, "r");
  if (!f) {
    fprintf(stderr, "cannot open %s (run make_fixtures.py first)\n", path);
    return 2;
  }
  int T, B, S, SB, cases = 0;
  while (fscanf(f, "%255s %d %d %d %d", name, &T, &B, &S, &SB) == 5) {
    run_case(argv[1], name, T, B, S, SB);
    ++cases;
  }
  fclose(f);
  printf("%d cases, %d failures (rnnfast %s)\n", cases, failures, rnnfast_version());
  return failures || cases == 0 ? 1 : 0;
}
