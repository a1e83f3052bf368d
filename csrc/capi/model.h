// A loaded deployment model: packed recurrent layers plus the embedding and head of the models,
// and its whole-sequence forward. Immutable after load_model (and set_inference_weights), so
// threads may share one.
#pragma once

#include <array>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/layer.h"
#include "dense.h"

namespace rnnfast::capi {

enum class ModelKind { rnn = 0, language_model = 1, sequence_classifier = 2 };

struct Model {
  ModelKind kind = ModelKind::rnn;
  CellKind cell = CellKind::lstm;
  int input_size = 0, hidden_size = 0, num_layers = 0, directions = 1;
  bool reverse_only = false;  // direction "reverse": every layer runs backwards in time only
  CellVariant variant;        // peepholes, linear_before_reset (format version 2)
  bool residual = false;  // layers after the first add their input to their output
  int vocab_size = 0;   // 0: no embedding (input features are given)
  int output_size = 0;  // per step (rnn, language model) or per sequence (classifier)
  Pooling pooling = Pooling::none;
  // [layer][direction]; unidirectional layers are packed for single steps too (streams).
  std::vector<std::array<std::shared_ptr<const PackedWeights>, 2>> layers;
  // The float32 weights they were packed from (PyTorch layout), to repack in another format.
  struct LayerWeights {
    std::vector<float> w_ih, w_hh, b_ih, b_hh, w_p;  // w_p: peepholes (3, H), or empty
  };
  std::vector<std::array<LayerWeights, 2>> weights;
  WeightFormat inference_weights = WeightFormat::float32;  // the file's, or set_inference_weights
  std::vector<float> embedding;       // (vocab_size, input_size)
  std::vector<float> head_w, head_b;  // (output_size, directions * hidden_size), (output_size)
  std::map<std::string, std::string> meta;  // the file's metadata strings
  std::vector<std::string> vocab;           // token texts by id, or empty

  int features() const { return directions * hidden_size; }  // of the top layer's output
};

// IoError / FormatError (errors.h) for unreadable or invalid files.
std::unique_ptr<Model> load_model(const std::string& path);

// Repack every layer in format f (streams made before keep the weights they were made with).
void set_inference_weights(Model& m, WeightFormat f);

// x: (T, B, input_size), already embedded for token models; y as rnnfast_model_forward.
void model_forward(const Model& m, const float* x, int T, int B, const int* lengths, float* y);

}  // namespace rnnfast::capi
