/* Generate text token by token with a character-level language model exported from Python:
 *
 *     rnnfast.export(model, "charlm.rnnfast", vocab=vocab)      # models.LanguageModel + text.Vocab
 *     ./generate charlm.rnnfast --prime "Once " --length 200 --temperature 0.8 --seed 1
 *
 * --greedy takes the most likely token each step (deterministic). Each token is printed as soon
 * as it is drawn. Only the public C API (rnnfast/rnnfast.h) is used. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rnnfast/rnnfast.h>

static int die(const char* what) {
  fprintf(stderr, "generate: %s: %s\n", what, rnnfast_last_error());
  return 1;
}

/* The longest vocabulary token at the start of text, or -1. */
static int match_token(const rnnfast_model* m, const char* text, size_t* used) {
  int best = -1;
  size_t best_len = 0;
  for (int id = 0; id < rnnfast_model_vocab_size(m); ++id) {
    const char* tok = rnnfast_model_vocab_token(m, id);
    const size_t n = strlen(tok);
    if (n > best_len && strncmp(text, tok, n) == 0) best = id, best_len = n;
  }
  *used = best_len;
  return best;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static double uniform(void) { /* xorshift64*: enough for sampling */
  rng_state ^= rng_state >> 12, rng_state ^= rng_state << 25, rng_state ^= rng_state >> 27;
  return (double)((rng_state * 2685821657736338717ull) >> 11) / 9007199254740992.0;
}

static int next_token(const float* logits, int V, double temperature, int greedy) {
  int best = 0;
  for (int j = 1; j < V; ++j)
    if (logits[j] > logits[best]) best = j;
  if (greedy) return best;
  double total = 0.0;
  for (int j = 0; j < V; ++j) total += exp((logits[j] - logits[best]) / temperature);
  double u = uniform() * total;
  for (int j = 0; j < V; ++j) {
    u -= exp((logits[j] - logits[best]) / temperature);
    if (u <= 0.0) return j;
  }
  return V - 1;
}

int main(int argc, char** argv) {
  const char *path = NULL, *prime = "\n";
  int length = 200, greedy = 0;
  double temperature = 1.0;
  for (int i = 1; i < argc; ++i) {
    if (!strcmp(argv[i], "--greedy")) greedy = 1;
    else if (!strcmp(argv[i], "--prime") && i + 1 < argc) prime = argv[++i];
    else if (!strcmp(argv[i], "--length") && i + 1 < argc) length = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--temperature") && i + 1 < argc) temperature = atof(argv[++i]);
    else if (!strcmp(argv[i], "--seed") && i + 1 < argc) rng_state += strtoull(argv[++i], NULL, 10) * 0x2545F4914F6CDD1Dull;
    else if (argv[i][0] != '-' && !path) path = argv[i];
    else return fprintf(stderr, "usage: generate MODEL [--prime TEXT] [--length N] [--temperature T] [--seed S] [--greedy]\n"), 2;
  }
  if (!path || length < 0 || !(temperature > 0.0))
    return fprintf(stderr, "usage: generate MODEL [--prime TEXT] [--length N >= 0] [--temperature T > 0] [--seed S] [--greedy]\n"), 2;

  rnnfast_model* model = NULL;
  if (rnnfast_model_load(path, &model) != RNNFAST_OK) return die("load");
  if (rnnfast_model_kind_of(model) != RNNFAST_MODEL_LANGUAGE_MODEL || !rnnfast_model_vocab_token(model, 0)) {
    fprintf(stderr, "generate: %s: expected a language model exported with its vocabulary (export(..., vocab=))\n", path);
    return 1;
  }
  const int V = rnnfast_model_vocab_size(model);
  rnnfast_stream* stream = NULL;
  if (rnnfast_stream_create(model, 1, &stream) != RNNFAST_OK) return die("stream");
  float* logits = malloc(sizeof(float) * V);

  int token = -1;
  for (const char* p = prime; *p;) { /* feed the prime, one token per step */
    size_t used;
    token = match_token(model, p, &used);
    if (token < 0) return fprintf(stderr, "\ngenerate: the prime has text no token matches: \"%s\"\n", p), 1;
    if (rnnfast_stream_step_tokens(stream, &token, logits) != RNNFAST_OK) return die("step");
    p += used;
  }
  if (token < 0) return fprintf(stderr, "generate: --prime is empty\n"), 2;
  fputs(prime, stdout);
  for (int i = 0; i < length; ++i) {
    token = next_token(logits, V, temperature, greedy);
    fputs(rnnfast_model_vocab_token(model, token), stdout);
    fflush(stdout);
    if (rnnfast_stream_step_tokens(stream, &token, logits) != RNNFAST_OK) return die("step");
  }
  free(logits);
  rnnfast_stream_free(stream);
  rnnfast_model_free(model);
  return 0;
}
