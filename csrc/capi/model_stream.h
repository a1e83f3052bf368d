// One step at a time through a loaded model: the core's Stream plus, for language models, the
// embedding lookup and the head, with every buffer allocated at creation (a step allocates nothing).
#pragma once

#include <memory>
#include <vector>

#include "core/stream.h"
#include "model.h"

namespace rnnfast::capi {

class ModelStream {
 public:
  // UnsupportedError for bidirectional models and classifiers (they need the whole sequence).
  ModelStream(const Model& m, int batch);

  int batch() const { return B_; }
  const Model& model() const { return m_; }
  void step(const float* x, float* y);              // rnn models: (B, input) -> (B, hidden)
  void step_tokens(const int* ids, float* logits);  // language models: (B) -> (B, vocab)
  void reset() { stream_->reset(); }
  long state_size() const;
  void get_state(float* state) const;
  void set_state(const float* state);

 private:
  const Model& m_;
  int B_;
  std::unique_ptr<Stream> stream_;
  std::vector<float> x_, h_;  // embedded ids, top h
};

}  // namespace rnnfast::capi
