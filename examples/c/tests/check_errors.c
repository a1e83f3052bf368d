/* Bad files and bad arguments give a status and a clear message, never a crash; one model shared
 * by several threads (each with its own stream) gives the single-thread results.
 * Usage: check_errors FIXTURE_DIR (from make_fixtures.py). */
#include <pthread.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rnnfast/rnnfast.h>

static int failures = 0;
static const char* dir;

static void expect(int status, int want, const char* needle, const char* what) {
  const char* msg = rnnfast_last_error();
  if (status != want || strstr(msg, needle) == NULL) {
    printf("FAIL %s: status %d, message \"%s\"; expected status %d with \"%s\"\n", what, status, msg, want, needle);
    ++failures;
  } else {
    printf("ok   %s: %s\n", what, want == RNNFAST_OK ? "ok" : msg);
  }
}

static const char* fixture(const char* name) {
  static char path[1024];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  return path;
}

static void bad_files(void) {
  rnnfast_model* m = (rnnfast_model*)0x1;
  expect(rnnfast_model_load(fixture("no-such-file"), &m), RNNFAST_ERROR_IO, "cannot open", "missing file");
  if (m != NULL) printf("FAIL missing file: *out not cleared\n"), ++failures;
  expect(rnnfast_model_load(fixture("garbage.bin"), &m), RNNFAST_ERROR_FORMAT, "bad JSON header", "garbage file");
  expect(rnnfast_model_load(fixture("cases.txt"), &m), RNNFAST_ERROR_FORMAT, "not an rnnfast model file", "text file");
  expect(rnnfast_model_load(fixture("checkpoint.safetensors"), &m), RNNFAST_ERROR_FORMAT,
         "metadata format is 'rnnfast.checkpoint', expected 'rnnfast.model'", "training checkpoint");
  expect(rnnfast_model_load(fixture("future.rnnfast"), &m), RNNFAST_ERROR_FORMAT, "format_version '99' is not supported",
         "newer format");
  expect(rnnfast_model_load(fixture("truncated.rnnfast"), &m), RNNFAST_ERROR_FORMAT, "truncated?", "truncated file");
  expect(rnnfast_model_load(fixture("badshape.rnnfast"), &m), RNNFAST_ERROR_FORMAT,
         "tensor 'rnn.weight_hh_l0': expected shape (28, 7), got (28, 6)", "wrong tensor shape");
  expect(rnnfast_model_load(NULL, &m), RNNFAST_ERROR_ARGUMENT, "path: expected a pointer, got NULL", "null path");
  expect(rnnfast_model_load(fixture("lstm2.rnnfast"), NULL), RNNFAST_ERROR_ARGUMENT, "out: expected a pointer",
         "null out");
}

/* Truncations of a good file (at every header byte, then every 61st), and a flipped byte at every header position, load cleanly or
 * fail with a status: never a crash (run under a sanitizer to see it). */
static void damaged_files(void) {
  FILE* f = fopen(fixture("lstm2.rnnfast"), "rb");
  static char data[1 << 16];
  const size_t n = f ? fread(data, 1, sizeof data, f) : 0;
  if (f) fclose(f);
  if (n < 8 || n == sizeof data) {
    printf("FAIL damaged files: cannot read lstm2.rnnfast\n"), ++failures;
    return;
  }
  size_t header = 0;
  for (int k = 7; k >= 0; --k) header = (header << 8) | (unsigned char)data[k];
  char path[1100];
  snprintf(path, sizeof path, "%s/damaged.tmp", dir);
  int loaded = 0, refused = 0, wrong = 0;
  for (size_t cut = 0; cut < n + 8 + header; cut += cut > 8 + header && cut < n ? 61 : 1) {
    const size_t len = cut < n ? cut : n;
    const size_t flip = cut >= n ? cut - n : (size_t)-1; /* after the cuts: flip header byte `flip` */
    if (flip != (size_t)-1) data[flip] ^= 0x5A;
    FILE* g = fopen(path, "wb");
    fwrite(data, 1, len, g);
    fclose(g);
    if (flip != (size_t)-1) data[flip] ^= 0x5A;
    rnnfast_model* m = NULL;
    const int st = rnnfast_model_load(path, &m);
    if (st == RNNFAST_OK) ++loaded, rnnfast_model_free(m);
    else if (st == RNNFAST_ERROR_FORMAT && m == NULL && rnnfast_last_error()[0]) ++refused;
    else ++wrong;
    if (cut < n && st == RNNFAST_OK) ++wrong; /* a truncated file must never load */
  }
  remove(path);
  if (wrong) printf("FAIL damaged files: %d wrong outcomes\n", wrong), ++failures;
  else printf("ok   %d damaged files: %d refused with a message, %d loaded (flips in names or numbers)\n",
              loaded + refused, refused, loaded);
}

static void bad_arguments(void) {
  rnnfast_model *m = NULL, *lm = NULL, *bi = NULL;
  rnnfast_stream* s = NULL;
  float x[6 * 3 * 5] = {0}, y[6 * 3 * 14];
  int lengths[3] = {6, 0, 2}, ids[6] = {1, 2, 3, 4, 5, 99};
  expect(rnnfast_model_load(fixture("lstm2.rnnfast"), &m), RNNFAST_OK, "", "load lstm2");
  expect(rnnfast_model_load(fixture("lm_lstm.rnnfast"), &lm), RNNFAST_OK, "", "load lm_lstm");
  expect(rnnfast_model_load(fixture("gru_bi.rnnfast"), &bi), RNNFAST_OK, "", "load gru_bi");
  expect(rnnfast_model_forward(m, x, 6, 3, lengths, y), RNNFAST_ERROR_ARGUMENT,
         "lengths[1]: expected a value in [1, 6], got 0", "length 0");
  lengths[1] = 7;
  expect(rnnfast_model_forward(m, x, 6, 3, lengths, y), RNNFAST_ERROR_ARGUMENT, "got 7", "length > T");
  expect(rnnfast_model_forward(m, x, 0, 3, NULL, y), RNNFAST_ERROR_ARGUMENT, "expected >= 1, got T=0", "T = 0");
  expect(rnnfast_model_forward(m, NULL, 6, 3, NULL, y), RNNFAST_ERROR_ARGUMENT, "x: expected a pointer", "null x");
  expect(rnnfast_model_forward(NULL, x, 6, 3, NULL, y), RNNFAST_ERROR_ARGUMENT, "model: expected a pointer",
         "null model");
  expect(rnnfast_model_forward(m, x, 6, 3, NULL, y), RNNFAST_OK, "", "good call clears the message");
  if (rnnfast_last_error()[0] != '\0') printf("FAIL message not cleared\n"), ++failures;
  expect(rnnfast_model_forward(lm, x, 6, 1, NULL, y), RNNFAST_ERROR_ARGUMENT, "use rnnfast_model_forward_tokens",
         "features into a token model");
  expect(rnnfast_model_forward_tokens(m, ids, 6, 1, NULL, y), RNNFAST_ERROR_ARGUMENT, "not token ids",
         "tokens into a feature model");
  expect(rnnfast_model_forward_tokens(lm, ids, 6, 1, NULL, y), RNNFAST_ERROR_ARGUMENT,
         "ids[5]: expected a token id in [0, 12), got 99", "id outside the vocabulary");
  expect(rnnfast_stream_create(bi, 1, &s), RNNFAST_ERROR_UNSUPPORTED, "bidirectional", "stream of a bidirectional model");
  expect(rnnfast_stream_create(m, 0, &s), RNNFAST_ERROR_ARGUMENT, "batch: expected >= 1, got 0", "stream batch 0");
  expect(rnnfast_stream_create(lm, 1, &s), RNNFAST_OK, "", "stream of lm_lstm");
  expect(rnnfast_stream_step_tokens(s, ids + 5, y), RNNFAST_ERROR_ARGUMENT, "got 99", "stream id outside the vocabulary");
  expect(rnnfast_stream_step(s, x, y), RNNFAST_ERROR_ARGUMENT, "use rnnfast_stream_step_tokens", "features into an lm stream");
  expect(rnnfast_set_num_threads(0), RNNFAST_ERROR_ARGUMENT, "n: expected >= 1, got 0", "zero threads");
  expect(rnnfast_set_idle_spin(-1.0), RNNFAST_ERROR_ARGUMENT, "microseconds: expected a number in [0, 1e7], got -1",
         "negative idle spin");
  expect(rnnfast_set_idle_spin(0.0 / 0.0), RNNFAST_ERROR_ARGUMENT, "microseconds: expected", "NaN idle spin");
  expect(rnnfast_set_idle_spin(500.0), RNNFAST_OK, "", "idle spin 500 us");
  expect(rnnfast_set_idle_spin(0.0), RNNFAST_OK, "", "default idle spin");
  expect(rnnfast_set_prewake(2), RNNFAST_ERROR_ARGUMENT, "on: expected 0 or 1, got 2", "prewake 2");
  expect(rnnfast_set_prewake(0), RNNFAST_OK, "", "prewake off");
  expect(rnnfast_set_prewake(1), RNNFAST_OK, "", "prewake on");
  if (rnnfast_model_metadata(lm, "cell") == NULL || strcmp(rnnfast_model_metadata(lm, "cell"), "lstm") != 0 ||
      rnnfast_model_metadata(lm, "no such key") != NULL || rnnfast_model_vocab_token(lm, 0) != NULL)
    printf("FAIL metadata\n"), ++failures;
  rnnfast_stream_free(s);
  rnnfast_model_free(m), rnnfast_model_free(lm), rnnfast_model_free(bi);
  rnnfast_model_free(NULL), rnnfast_stream_free(NULL), rnnfast_stream_reset(NULL);
}

/* inference weights: the file's format, changed by a call; a bad name leaves the model as it was */
static void inference_weights(void) {
  rnnfast_model* m = NULL;
  float x[6 * 3 * 5], y32[6 * 3 * 7], y8[6 * 3 * 7], y[6 * 3 * 7];
  for (int i = 0; i < 6 * 3 * 5; ++i) x[i] = (float)((i * 37) % 11) / 5.0f - 1.0f;
  expect(rnnfast_model_load(fixture("lstm2.rnnfast"), &m), RNNFAST_OK, "", "load lstm2");
  if (strcmp(rnnfast_model_inference_weights(m), "float32") != 0 || rnnfast_model_inference_weights(NULL) != NULL)
    printf("FAIL inference weights of a float32 file\n"), ++failures;
  expect(rnnfast_model_forward(m, x, 6, 3, NULL, y32), RNNFAST_OK, "", "float32 forward");
  expect(rnnfast_model_set_inference_weights(m, "int4"), RNNFAST_ERROR_ARGUMENT,
         "weights: expected \"float32\", \"bfloat16\" or \"int8\", got \"int4\"", "unknown weights");
  expect(rnnfast_model_set_inference_weights(NULL, "int8"), RNNFAST_ERROR_ARGUMENT, "model: expected a pointer",
         "null model");
  expect(rnnfast_model_set_inference_weights(m, NULL), RNNFAST_ERROR_ARGUMENT, "weights: expected a pointer",
         "null weights");
  expect(rnnfast_model_set_inference_weights(m, "int8"), RNNFAST_OK, "", "to int8");
  if (strcmp(rnnfast_model_inference_weights(m), "int8") != 0) printf("FAIL not int8\n"), ++failures;
  expect(rnnfast_model_forward(m, x, 6, 3, NULL, y8), RNNFAST_OK, "", "int8 forward");
  double diff = 0.0;
  for (int i = 0; i < 6 * 3 * 7; ++i) diff = fmax(diff, fabs((double)y8[i] - y32[i]));
  if (!(diff > 0.0 && diff < 5e-2)) printf("FAIL int8 differs from float32 by %g\n", diff), ++failures;
  expect(rnnfast_model_set_inference_weights(m, "float32"), RNNFAST_OK, "", "back to float32");
  expect(rnnfast_model_forward(m, x, 6, 3, NULL, y), RNNFAST_OK, "", "float32 again");
  if (memcmp(y, y32, sizeof y) != 0) printf("FAIL float32 after int8 differs\n"), ++failures;
  rnnfast_model_free(m);
}

/* threads: one model, each thread its own stream and forward calls, compared with the main thread's */
enum { kThreads = 4, kSteps = 50, kB = 2 };
static rnnfast_model* shared;
static float reference[kSteps][kB * 256];
static float fwd_reference[20 * kB * 256];
static float inputs[kSteps][kB * 64], fwd_inputs[20 * kB * 64];

static int run_steps(float (*out)[kB * 256], float* fwd) {
  rnnfast_stream* s = NULL;
  if (rnnfast_stream_create(shared, kB, &s) != RNNFAST_OK) return 1;
  for (int t = 0; t < kSteps; ++t)
    if (rnnfast_stream_step(s, inputs[t], out[t]) != RNNFAST_OK) return 1;
  rnnfast_stream_free(s);
  return rnnfast_model_forward(shared, fwd_inputs, 20, kB, NULL, fwd) != RNNFAST_OK;
}

static void* worker(void* arg) {
  static __thread float out[kSteps][kB * 256];
  static __thread float fwd[20 * kB * 256];
  (void)arg;
  int bad = run_steps(out, fwd);
  bad |= memcmp(out, reference, sizeof out) != 0 || memcmp(fwd, fwd_reference, sizeof fwd) != 0;
  return (void*)(long)bad;
}

static void threads(void) {
  expect(rnnfast_model_load(fixture("lstm256.rnnfast"), &shared), RNNFAST_OK, "", "load lstm256");
  for (int t = 0; t < kSteps; ++t)
    for (int i = 0; i < kB * 64; ++i) inputs[t][i] = (float)((t * 7 + i * 13) % 17) / 17.0f - 0.5f;
  for (int i = 0; i < 20 * kB * 64; ++i) fwd_inputs[i] = (float)((i * 11) % 23) / 23.0f - 0.5f;
  if (run_steps(reference, fwd_reference)) printf("FAIL reference run: %s\n", rnnfast_last_error()), ++failures;
  pthread_t th[kThreads];
  for (int k = 0; k < kThreads; ++k) pthread_create(&th[k], NULL, worker, NULL);
  int bad = 0;
  for (int k = 0; k < kThreads; ++k) {
    void* r;
    pthread_join(th[k], &r);
    bad += (int)(long)r;
  }
  if (bad) printf("FAIL %d of %d threads sharing one model differ from the single-thread run\n", bad, kThreads), ++failures;
  else printf("ok   %d threads sharing one model: bitwise the single-thread results\n", kThreads);
  rnnfast_model_free(shared);
}

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s FIXTURE_DIR\n", argv[0]);
    return 2;
  }
  dir = argv[1];
  bad_files();
  damaged_files();
  bad_arguments();
  inference_weights();
  threads();
  printf("%d failures\n", failures);
  return failures ? 1 : 0;
}
