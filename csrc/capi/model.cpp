#include "model.h"

#include "core/precision.h"

#include <stdexcept>

#include "core/cpu.h"
#include "errors.h"
#include "json.h"
#include "model_file.h"

namespace rnnfast::capi {

namespace {

CellKind cell_from(const std::string& s) {
  if (s == "lstm") return CellKind::lstm;
  if (s == "gru") return CellKind::gru;
  if (s == "rnn_tanh") return CellKind::rnn_tanh;
  if (s == "rnn_relu") return CellKind::rnn_relu;
  throw FormatError("metadata field 'cell': expected lstm, gru, rnn_tanh or rnn_relu, got '" + s + "'");
}

ModelKind kind_from(const std::string& s) {
  if (s == "rnn") return ModelKind::rnn;
  if (s == "language_model") return ModelKind::language_model;
  if (s == "sequence_classifier") return ModelKind::sequence_classifier;
  throw FormatError("metadata field 'model': expected rnn, language_model or sequence_classifier, got '" + s + "'");
}

Pooling pooling_from(ModelKind kind, const std::string& s) {
  if (kind != ModelKind::sequence_classifier) return Pooling::none;
  if (s == "last") return Pooling::last;
  if (s == "mean") return Pooling::mean;
  if (s == "max") return Pooling::max;
  throw FormatError("metadata field 'pooling': expected last, mean or max, got '" + s + "'");
}

std::vector<std::string> vocab_from(const std::string& text, int vocab_size) {
  Json v;
  try {
    v = parse_json(text.data(), text.size());
  } catch (const std::runtime_error& e) {
    throw FormatError(std::string("metadata field 'vocab': ") + e.what());
  }
  std::vector<std::string> out;
  for (const Json& t : v.array) {
    if (t.type != Json::Type::string) throw FormatError("metadata field 'vocab': expected an array of strings");
    out.push_back(t.string);
  }
  if (v.type != Json::Type::array || static_cast<int>(out.size()) != vocab_size)
    throw FormatError("metadata field 'vocab': expected " + std::to_string(vocab_size) + " token strings");
  return out;
}

// A version-2 metadata field, or its default when absent (version 1 files have none).
const std::string& optional_field(const ModelFile& f, const std::string& key, const std::string& fallback) {
  auto it = f.meta.find(key);
  return it == f.meta.end() ? fallback : it->second;
}

bool flag_field(const ModelFile& f, const std::string& key, const char* fallback) {
  const std::string& s = optional_field(f, key, fallback);
  if (s != "0" && s != "1") throw FormatError("metadata field '" + key + "': expected 0 or 1, got '" + s + "'");
  return s == "1";
}

void read_variant(Model& m, const ModelFile& f) {
  const std::string& direction = optional_field(f, "direction", m.directions == 2 ? "bidirectional" : "forward");
  if (direction != "forward" && direction != "reverse" && direction != "bidirectional")
    throw FormatError("metadata field 'direction': expected forward, reverse or bidirectional, got '" + direction + "'");
  if ((direction == "bidirectional") != (m.directions == 2))
    throw FormatError("metadata field 'direction': '" + direction + "' contradicts bidirectional");
  m.reverse_only = direction == "reverse";
  m.variant.peephole = flag_field(f, "peepholes", "0");
  m.variant.reset_before = !flag_field(f, "linear_before_reset", "1");
  if (m.variant.peephole && m.cell != CellKind::lstm)
    throw FormatError("metadata field 'peepholes': only an LSTM has peepholes");
  if (m.variant.reset_before && m.cell != CellKind::gru)
    throw FormatError("metadata field 'linear_before_reset': 0 is a GRU variant");
}

void read_into(Model& m, const ModelFile& f) {
  m.kind = kind_from(f.field("model"));
  m.cell = cell_from(f.field("cell"));
  m.input_size = f.int_field("input_size", 1);
  m.hidden_size = f.int_field("hidden_size", 1);
  m.num_layers = f.int_field("num_layers", 1);
  m.directions = f.int_field("bidirectional", 0) ? 2 : 1;
  read_variant(m, f);
  m.residual = f.meta.count("residual") && f.int_field("residual", 0);
  if (m.residual && m.num_layers < 2) throw FormatError("metadata field 'residual' is 1 but num_layers is 1");
  m.vocab_size = f.int_field("vocab_size", 0);
  m.output_size = f.int_field("output_size", 1);
  m.pooling = pooling_from(m.kind, f.field("pooling"));
  if (m.kind == ModelKind::language_model && m.vocab_size == 0)
    throw FormatError("a language model needs an embedding (vocab_size is 0)");
  if (m.kind == ModelKind::rnn && (m.vocab_size != 0 || m.output_size != m.features()))
    throw FormatError("an rnn model has no embedding and outputs directions * hidden_size features");

  const long G = gate_count(m.cell), H = m.hidden_size;
  for (int k = 0; k < m.num_layers; ++k) {
    const long in = k == 0 ? m.input_size : m.features();
    std::array<Model::LayerWeights, 2> dirs;
    for (int d = 0; d < m.directions; ++d) {
      const std::string sfx = "_l" + std::to_string(k) + (d || m.reverse_only ? "_reverse" : "");
      dirs[d] = {f.tensor("rnn.weight_ih" + sfx, {G * H, in}), f.tensor("rnn.weight_hh" + sfx, {G * H, H}),
                 f.tensor("rnn.bias_ih" + sfx, {G * H}), f.tensor("rnn.bias_hh" + sfx, {G * H}),
                 m.variant.peephole ? f.tensor("rnn.weight_p" + sfx, {3, H}) : std::vector<float>()};
    }
    m.weights.push_back(std::move(dirs));
  }
  auto given = f.meta.find("inference_weights");  // absent in files of rnnfast before int8: float32
  const std::string weights = given == f.meta.end() ? "float32" : given->second;
  if (!weight_format_from_name(weights, &m.inference_weights))
    throw FormatError("metadata field 'inference_weights': expected 'float32', 'bfloat16' or 'int8', got '" +
                      weights + "'");
  set_inference_weights(m, m.inference_weights);
  if (m.vocab_size) m.embedding = f.tensor("embedding.weight", {m.vocab_size, m.input_size});
  m.meta = f.meta;
  auto vocab = f.meta.find("vocab");
  if (vocab != f.meta.end()) m.vocab = vocab_from(vocab->second, m.vocab_size);
  if (m.kind != ModelKind::rnn) {
    m.head_w = f.tensor("head.weight", {m.output_size, m.features()});
    m.head_b = f.tensor("head.bias", {m.output_size});
  }
}

// Every layer over the whole sequence: y_top (T, B, D*H) and the top layer's final h (D, B, H).
void run_stack(const Model& m, const float* x, int T, int B, const int* lengths, float* y_top, float* hn_top) {
  const int D = m.directions, H = m.hidden_size, F = m.features();
  const size_t rows = static_cast<size_t>(T) * B, state = static_cast<size_t>(B) * H;
  std::vector<float> scratch[2], hn(D * state), cn(m.cell == CellKind::lstm ? D * state : 0);
  const float* in = x;
  for (int k = 0; k < m.num_layers; ++k) {
    float* out = y_top;
    if (k + 1 < m.num_layers) {
      scratch[k & 1].resize(rows * F);
      out = scratch[k & 1].data();
    }
    float* c = cn.empty() ? nullptr : cn.data();
    if (D == 1) {
      layer_forward(*m.layers[k][0], T, B, in, lengths, m.reverse_only, nullptr, nullptr, out, F, hn.data(), c,
                    nullptr);
    } else {
      const DirectionForward d0{m.layers[k][0].get(), nullptr, nullptr, out, hn.data(), c, nullptr};
      const DirectionForward d1{m.layers[k][1].get(), nullptr, nullptr, out + H, hn.data() + state,
                                c ? c + state : nullptr, nullptr};
      layer_forward_pair(d0, d1, T, B, in, lengths, F);
    }
    if (m.residual && k > 0)
      for (size_t i = 0; i < rows * F; ++i) out[i] += in[i];
    in = out;
  }
  if (hn_top) std::copy(hn.begin(), hn.end(), hn_top);
}

}  // namespace

std::unique_ptr<Model> load_model(const std::string& path) {
  const ModelFile f = read_model_file(path);
  auto m = std::make_unique<Model>();
  try {
    read_into(*m, f);
  } catch (const FormatError& e) {
    throw FormatError("'" + path + "': " + e.what());
  }
  return m;
}

void model_forward(const Model& m, const float* x, int T, int B, const int* lengths, float* y) {
  const size_t rows = static_cast<size_t>(T) * B;
  if (m.kind == ModelKind::rnn) return run_stack(m, x, T, B, lengths, y, nullptr);
  std::vector<float> top(rows * m.features()), work(linear_work_size(m.features(), m.output_size));
  if (m.kind == ModelKind::language_model) {
    run_stack(m, x, T, B, lengths, top.data(), nullptr);
    return linear(top.data(), static_cast<int>(rows), m.features(), m.head_w.data(), m.head_b.data(), m.output_size,
                  y, work.data());
  }
  std::vector<float> hn(static_cast<size_t>(m.directions) * B * m.hidden_size), pooled(static_cast<size_t>(B) * m.features());
  run_stack(m, x, T, B, lengths, top.data(), hn.data());
  pool(m.pooling, top.data(), hn.data(), T, B, m.directions, m.hidden_size, lengths, pooled.data());
  linear(pooled.data(), B, m.features(), m.head_w.data(), m.head_b.data(), m.output_size, y, work.data());
}

void set_inference_weights(Model& m, WeightFormat format) {
  const Isa isa = active_isa();
  std::vector<std::array<std::shared_ptr<const PackedWeights>, 2>> layers;
  for (int k = 0; k < m.num_layers; ++k) {
    const int in = k == 0 ? m.input_size : m.features();
    std::array<std::shared_ptr<const PackedWeights>, 2> dirs;
    for (int d = 0; d < m.directions; ++d) {
      const Model::LayerWeights& w = m.weights[k][d];
      dirs[d] = std::make_shared<const PackedWeights>(m.cell, in, m.hidden_size, w.w_ih.data(), w.w_hh.data(),
                                                      w.b_ih.data(), w.b_hh.data(), false, isa, format,
                                                      m.directions == 1 && !m.reverse_only, m.variant,
                                                      w.w_p.empty() ? nullptr : w.w_p.data());
    }
    layers.push_back(dirs);
  }
  m.layers = std::move(layers);  // only once every layer packed: a failure leaves the model as it was
  m.inference_weights = format;
}

}  // namespace rnnfast::capi
