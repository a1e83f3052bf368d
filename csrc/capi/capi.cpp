// The extern "C" functions of include/rnnfast/rnnfast.h: argument checks, then the C++ model;
// every exception becomes a status code and a thread-local message, none crosses the boundary.
#include "rnnfast/rnnfast.h"

#include <cstdio>
#include <new>
#include <stdexcept>
#include <string>

#include "core/cpu.h"
#include "core/team.h"
#include "errors.h"
#include "core/precision.h"
#include "model.h"
#include "model_file.h"
#include "model_stream.h"

struct rnnfast_model {
  std::unique_ptr<rnnfast::capi::Model> m;
};
struct rnnfast_stream {
  std::unique_ptr<rnnfast::capi::ModelStream> s;
};

namespace {

using namespace rnnfast::capi;

thread_local std::string last_error;

int fail(int status, const std::string& message) {
  try {
    last_error = message;
  } catch (...) {  // no memory even for the message: keep the old one
  }
  return status;
}

// Runs f, mapping exceptions to statuses; clears the message on success.
template <class F>
int guarded(const char* where, F&& f) {
  try {
    f();
    last_error.clear();
    return RNNFAST_OK;
  } catch (const IoError& e) {
    return fail(RNNFAST_ERROR_IO, std::string(where) + ": " + e.what());
  } catch (const FormatError& e) {
    return fail(RNNFAST_ERROR_FORMAT, std::string(where) + ": " + e.what());
  } catch (const UnsupportedError& e) {
    return fail(RNNFAST_ERROR_UNSUPPORTED, std::string(where) + ": " + e.what());
  } catch (const std::invalid_argument& e) {
    return fail(RNNFAST_ERROR_ARGUMENT, std::string(where) + ": " + e.what());
  } catch (const std::bad_alloc&) {
    return fail(RNNFAST_ERROR_MEMORY, std::string(where) + ": out of memory");
  } catch (const std::exception& e) {
    return fail(RNNFAST_ERROR_INTERNAL, std::string(where) + ": internal error: " + e.what());
  } catch (...) {
    return fail(RNNFAST_ERROR_INTERNAL, std::string(where) + ": internal error");
  }
}

void need(const void* p, const char* name) {
  if (!p) throw std::invalid_argument(std::string(name) + ": expected a pointer, got NULL");
}

void check_sizes(int T, int B) {
  if (T < 1 || B < 1)
    throw std::invalid_argument("T and B: expected >= 1, got T=" + std::to_string(T) + ", B=" + std::to_string(B));
}

void check_lengths(const int* lengths, int T, int B) {
  if (!lengths) return;
  for (int b = 0; b < B; ++b)
    if (lengths[b] < 1 || lengths[b] > T)
      throw std::invalid_argument("lengths[" + std::to_string(b) + "]: expected a value in [1, " + std::to_string(T) +
                                  "], got " + std::to_string(lengths[b]));
}

const Model* model_of(const rnnfast_model* model) {
  need(model, "model");
  return model->m.get();
}

}  // namespace

extern "C" {

const char* rnnfast_version(void) { return "0.1.0"; }
int rnnfast_format_version(void) { return kFormatVersion; }
const char* rnnfast_last_error(void) { return last_error.c_str(); }

int rnnfast_set_num_threads(int n) {
  return guarded("rnnfast_set_num_threads", [&] {
    if (n < 1) throw std::invalid_argument("n: expected >= 1, got " + std::to_string(n));
    rnnfast::set_num_threads(n);
  });
}
int rnnfast_get_num_threads(void) { return rnnfast::num_threads(); }

static std::string shortest(double v) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", v);
  return text;
}

int rnnfast_set_idle_spin(double microseconds) {
  return guarded("rnnfast_set_idle_spin", [&] {
    if (!(microseconds >= 0 && microseconds <= 1e7))
      throw std::invalid_argument("microseconds: expected a number in [0, 1e7], got " + shortest(microseconds));
    rnnfast::set_idle_spin_ns(static_cast<long>(microseconds * 1000.0));
  });
}

int rnnfast_set_prewake(int on) {
  return guarded("rnnfast_set_prewake", [&] {
    if (on != 0 && on != 1) throw std::invalid_argument("on: expected 0 or 1, got " + std::to_string(on));
    rnnfast::set_prewake(on == 1);
  });
}

int rnnfast_model_load(const char* path, rnnfast_model** out) {
  return guarded("rnnfast_model_load", [&] {
    need(out, "out");
    *out = nullptr;
    need(path, "path");
    auto handle = std::make_unique<rnnfast_model>();
    handle->m = load_model(path);
    *out = handle.release();
  });
}

void rnnfast_model_free(rnnfast_model* model) { delete model; }

int rnnfast_model_kind_of(const rnnfast_model* m) { return m ? static_cast<int>(m->m->kind) : -1; }
int rnnfast_model_input_size(const rnnfast_model* m) { return m ? m->m->input_size : -1; }
int rnnfast_model_output_size(const rnnfast_model* m) { return m ? m->m->output_size : -1; }
int rnnfast_model_vocab_size(const rnnfast_model* m) { return m ? m->m->vocab_size : -1; }
int rnnfast_model_hidden_size(const rnnfast_model* m) { return m ? m->m->hidden_size : -1; }
int rnnfast_model_num_layers(const rnnfast_model* m) { return m ? m->m->num_layers : -1; }
int rnnfast_model_is_bidirectional(const rnnfast_model* m) { return m ? m->m->directions == 2 : -1; }

const char* rnnfast_model_metadata(const rnnfast_model* m, const char* key) {
  if (!m || !key) return nullptr;
  auto it = m->m->meta.find(key);
  return it == m->m->meta.end() ? nullptr : it->second.c_str();
}

const char* rnnfast_model_inference_weights(const rnnfast_model* m) {
  return m ? rnnfast::weight_format_name(m->m->inference_weights) : nullptr;
}

int rnnfast_model_set_inference_weights(rnnfast_model* model, const char* weights) {
  return guarded("rnnfast_model_set_inference_weights", [&] {
    need(model, "model");
    need(weights, "weights");
    rnnfast::WeightFormat f;
    if (!rnnfast::weight_format_from_name(weights, &f))
      throw std::invalid_argument(std::string("weights: expected \"float32\", \"bfloat16\" or \"int8\", got \"") +
                                  weights + "\"");
    set_inference_weights(*model->m, f);
  });
}

const char* rnnfast_model_vocab_token(const rnnfast_model* m, int id) {
  if (!m || id < 0 || id >= static_cast<int>(m->m->vocab.size())) return nullptr;
  return m->m->vocab[id].c_str();
}

int rnnfast_model_forward(const rnnfast_model* model, const float* x, int T, int B, const int* lengths, float* y) {
  return guarded("rnnfast_model_forward", [&] {
    const Model& m = *model_of(model);
    need(x, "x");
    need(y, "y");
    check_sizes(T, B);
    check_lengths(lengths, T, B);
    if (m.vocab_size) throw std::invalid_argument("this model takes token ids: use rnnfast_model_forward_tokens");
    model_forward(m, x, T, B, lengths, y);
  });
}

int rnnfast_model_forward_tokens(const rnnfast_model* model, const int* ids, int T, int B, const int* lengths,
                                 float* y) {
  return guarded("rnnfast_model_forward_tokens", [&] {
    const Model& m = *model_of(model);
    need(ids, "ids");
    need(y, "y");
    check_sizes(T, B);
    check_lengths(lengths, T, B);
    if (!m.vocab_size) throw std::invalid_argument("this model takes features, not token ids: use rnnfast_model_forward");
    const long n = static_cast<long>(T) * B;
    check_ids(ids, n, m.vocab_size);
    std::vector<float> x(static_cast<size_t>(n) * m.input_size);
    embed(m.embedding.data(), m.input_size, ids, n, x.data());
    model_forward(m, x.data(), T, B, lengths, y);
  });
}

int rnnfast_stream_create(const rnnfast_model* model, int batch, rnnfast_stream** out) {
  return guarded("rnnfast_stream_create", [&] {
    need(out, "out");
    *out = nullptr;
    const Model& m = *model_of(model);
    auto handle = std::make_unique<rnnfast_stream>();
    handle->s = std::make_unique<ModelStream>(m, batch);
    *out = handle.release();
  });
}

void rnnfast_stream_free(rnnfast_stream* stream) { delete stream; }

int rnnfast_stream_step(rnnfast_stream* stream, const float* x, float* y) {
  return guarded("rnnfast_stream_step", [&] {
    need(stream, "stream");
    need(x, "x");
    need(y, "y");
    stream->s->step(x, y);
  });
}

int rnnfast_stream_step_tokens(rnnfast_stream* stream, const int* ids, float* logits) {
  return guarded("rnnfast_stream_step_tokens", [&] {
    need(stream, "stream");
    need(ids, "ids");
    need(logits, "logits");
    stream->s->step_tokens(ids, logits);
  });
}

void rnnfast_stream_reset(rnnfast_stream* stream) {
  if (stream) stream->s->reset();
}

int rnnfast_stream_state_size(const rnnfast_stream* stream) {
  return stream ? static_cast<int>(stream->s->state_size()) : -1;
}

int rnnfast_stream_get_state(const rnnfast_stream* stream, float* state) {
  return guarded("rnnfast_stream_get_state", [&] {
    need(stream, "stream");
    need(state, "state");
    stream->s->get_state(state);
  });
}

int rnnfast_stream_set_state(rnnfast_stream* stream, const float* state) {
  return guarded("rnnfast_stream_set_state", [&] {
    need(stream, "stream");
    need(state, "state");
    stream->s->set_state(state);
  });
}

}  // extern "C"
