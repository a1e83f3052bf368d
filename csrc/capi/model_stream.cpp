#include "model_stream.h"

#include <stdexcept>
#include <string>

#include "errors.h"

namespace rnnfast::capi {

ModelStream::ModelStream(const Model& m, int batch) : m_(m), B_(batch) {
  if (batch < 1) throw std::invalid_argument("batch: expected >= 1, got " + std::to_string(batch));
  if (m.directions == 2)
    throw UnsupportedError("streams need a unidirectional model: a bidirectional layer reads the whole sequence; "
                           "use rnnfast_model_forward");
  if (m.reverse_only)
    throw UnsupportedError("streams need a forward model: a reverse layer starts at the end of the sequence; "
                           "use rnnfast_model_forward");
  if (m.kind == ModelKind::sequence_classifier)
    throw UnsupportedError("streams are for rnn and language models: a classifier pools over the whole sequence; "
                           "use rnnfast_model_forward");
  std::vector<std::shared_ptr<const PackedWeights>> layers;
  for (const auto& dirs : m.layers) layers.push_back(dirs[0]);
  stream_ = std::make_unique<Stream>(std::move(layers), batch, m.residual);
  if (m.kind == ModelKind::language_model) {
    x_.resize(static_cast<size_t>(batch) * m.input_size);
    h_.resize(static_cast<size_t>(batch) * m.hidden_size);
  }
}

void ModelStream::step(const float* x, float* y) {
  if (m_.kind != ModelKind::rnn)
    throw std::invalid_argument("this model takes token ids: use rnnfast_stream_step_tokens");
  stream_->step(x, y);
}

void ModelStream::step_tokens(const int* ids, float* logits) {
  if (m_.kind != ModelKind::language_model)
    throw std::invalid_argument("this model takes features, not token ids: use rnnfast_stream_step");
  check_ids(ids, B_, m_.vocab_size);
  embed(m_.embedding.data(), m_.input_size, ids, B_, x_.data());
  stream_->step(x_.data(), h_.data());
  linear_step(h_.data(), B_, m_.hidden_size, m_.head_w.data(), m_.head_b.data(), m_.output_size, logits);
}

long ModelStream::state_size() const {
  const long n = static_cast<long>(m_.num_layers) * B_ * m_.hidden_size;
  return m_.cell == CellKind::lstm ? 2 * n : n;
}

void ModelStream::get_state(float* state) const {
  const long n = static_cast<long>(m_.num_layers) * B_ * m_.hidden_size;
  stream_->get_state(state, m_.cell == CellKind::lstm ? state + n : nullptr);
}

void ModelStream::set_state(const float* state) {
  const long n = static_cast<long>(m_.num_layers) * B_ * m_.hidden_size;
  stream_->set_state(state, m_.cell == CellKind::lstm ? state + n : nullptr);
}

}  // namespace rnnfast::capi
