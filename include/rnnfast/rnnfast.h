/* rnnfast C API: load a model exported with rnnfast.export(module, path) and run it without Python.
 *
 * Plain C (C99 and C++), stable ABI: opaque handles, ints and float/int pointers only. No exception
 * or signal crosses this boundary: every function that can fail returns an rnnfast_status (0 = ok)
 * and leaves a message for rnnfast_last_error() in the calling thread.
 *
 * Threads: a model is immutable once loaded and may be shared by any number of threads; a stream
 * belongs to one thread at a time. Streams allocate everything when created: a step allocates nothing.
 * Layouts are time-major and row-major: x (T, B, input_size), ids (T, B), y (T, B, output_size).
 */
#ifndef RNNFAST_RNNFAST_H
#define RNNFAST_RNNFAST_H

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define RNNFAST_API
#else
#define RNNFAST_API __attribute__((visibility("default")))
#endif

#define RNNFAST_VERSION_MAJOR 0
#define RNNFAST_VERSION_MINOR 1
#define RNNFAST_VERSION_PATCH 0

typedef enum rnnfast_status {
  RNNFAST_OK = 0,
  RNNFAST_ERROR_ARGUMENT = 1,    /* a null pointer, a size out of range, an id outside the vocabulary */
  RNNFAST_ERROR_IO = 2,          /* the file cannot be opened or read */
  RNNFAST_ERROR_FORMAT = 3,      /* not an rnnfast model file, a damaged one, or an unsupported version */
  RNNFAST_ERROR_UNSUPPORTED = 4, /* a valid request this model cannot serve (a stream of a bidirectional model) */
  RNNFAST_ERROR_MEMORY = 5,      /* out of memory */
  RNNFAST_ERROR_INTERNAL = 6     /* a bug: please report it with the message */
} rnnfast_status;

typedef enum rnnfast_model_kind {
  RNNFAST_MODEL_RNN = 0,                 /* a recurrent stack: float features in, top-layer outputs out */
  RNNFAST_MODEL_LANGUAGE_MODEL = 1,      /* token ids in, next-token logits out (one row per step) */
  RNNFAST_MODEL_SEQUENCE_CLASSIFIER = 2  /* ids or features in, one row of logits per sequence */
} rnnfast_model_kind;

typedef struct rnnfast_model rnnfast_model;
typedef struct rnnfast_stream rnnfast_stream;

/* "0.1.0", and the newest file format version this library reads (it reads 1 up to that). */
RNNFAST_API const char* rnnfast_version(void);
RNNFAST_API int rnnfast_format_version(void);

/* The message of the calling thread's last failed call ("" if none). Valid until its next call. */
RNNFAST_API const char* rnnfast_last_error(void);

/* Threads of the kernels (process-wide, >= 1); returns the status. */
RNNFAST_API int rnnfast_set_num_threads(int n);
RNNFAST_API int rnnfast_get_num_threads(void);

/* Idle worker threads: how long they spin after a call before they sleep, in microseconds (0 to
   1e7; 0: the calibrated default, about one wake-up; more keeps a core busy that long after every
   call, for sparse latency-critical calls; also RNNFAST_IDLE_SPIN_US), and whether they wake
   shortly before calls that come at a steady period (on = 1, the default; 0: never). Process-wide;
   return the status. */
RNNFAST_API int rnnfast_set_idle_spin(double microseconds);
RNNFAST_API int rnnfast_set_prewake(int on);

/* ---- models ---------------------------------------------------------------------------------- */
RNNFAST_API int rnnfast_model_load(const char* path, rnnfast_model** out);
RNNFAST_API void rnnfast_model_free(rnnfast_model* model); /* null is fine */

/* The queries below return -1 for a null model (or stream). */
RNNFAST_API int rnnfast_model_kind_of(const rnnfast_model* model); /* an rnnfast_model_kind */
/* Features per step that `forward` takes (the embedding size of token models: forward_tokens embeds). */
RNNFAST_API int rnnfast_model_input_size(const rnnfast_model* model);
/* Features (RNN: directions * hidden), logits (language model) or outputs (classifier) per row. */
RNNFAST_API int rnnfast_model_output_size(const rnnfast_model* model);
RNNFAST_API int rnnfast_model_vocab_size(const rnnfast_model* model); /* 0 without an embedding */
RNNFAST_API int rnnfast_model_hidden_size(const rnnfast_model* model);
RNNFAST_API int rnnfast_model_num_layers(const rnnfast_model* model);
RNNFAST_API int rnnfast_model_is_bidirectional(const rnnfast_model* model);
/* A metadata string of the file (e.g. "cell", "config"), or NULL when absent. Lives as long as the model. */
RNNFAST_API const char* rnnfast_model_metadata(const rnnfast_model* model, const char* key);
/* The UTF-8 text of token `id` when the file holds a vocabulary (export(..., vocab=)), else NULL. */
RNNFAST_API const char* rnnfast_model_vocab_token(const rnnfast_model* model, int id);
/* The format the recurrent weights compute in: "float32", "bfloat16" or "int8" (per-output-channel
 * int8 weights, activations quantized per row and step; ~1e-2 relative difference), as exported
 * (rnnfast.export of a model after set_inference_weights), or NULL for a null model. */
RNNFAST_API const char* rnnfast_model_inference_weights(const rnnfast_model* model);
/* Repack the recurrent weights in `weights` (one of the names above; the file keeps float32, so
 * any format can be chosen). Streams created before keep the weights they were created with.
 * Not while other threads use the model. On failure the model is unchanged. */
RNNFAST_API int rnnfast_model_set_inference_weights(rnnfast_model* model, const char* weights);

/* Whole sequences. x: (T, B, input_size) floats; ids: (T, B) token ids in [0, vocab_size).
 * lengths: B values in [1, T] or NULL (all T); steps past a length give zeros (RNN), the head's
 * bias (language model), and are ignored by a classifier's pooling. y: (T, B, output_size), or
 * (B, output_size) for a classifier. Models with an embedding take forward_tokens, the others forward. */
RNNFAST_API int rnnfast_model_forward(const rnnfast_model* model, const float* x, int T, int B, const int* lengths,
                                      float* y);
RNNFAST_API int rnnfast_model_forward_tokens(const rnnfast_model* model, const int* ids, int T, int B,
                                             const int* lengths, float* y);

/* ---- streams: one step at a time (unidirectional RNN models and language models) ------------- */
RNNFAST_API int rnnfast_stream_create(const rnnfast_model* model, int batch, rnnfast_stream** out);
RNNFAST_API void rnnfast_stream_free(rnnfast_stream* stream); /* null is fine; free streams before their model */
/* x: (B, input_size) -> y: (B, output_size) (the top layer's h). */
RNNFAST_API int rnnfast_stream_step(rnnfast_stream* stream, const float* x, float* y);
/* ids: (B) -> logits: (B, vocab_size) (language models). */
RNNFAST_API int rnnfast_stream_step_tokens(rnnfast_stream* stream, const int* ids, float* logits);
RNNFAST_API void rnnfast_stream_reset(rnnfast_stream* stream); /* all states to zero */
/* The state as floats: h (num_layers, B, hidden), then for an LSTM c (num_layers, B, hidden). */
RNNFAST_API int rnnfast_stream_state_size(const rnnfast_stream* stream);
RNNFAST_API int rnnfast_stream_get_state(const rnnfast_stream* stream, float* state);
RNNFAST_API int rnnfast_stream_set_state(rnnfast_stream* stream, const float* state);

#ifdef __cplusplus
}
#endif

#endif /* RNNFAST_RNNFAST_H */
