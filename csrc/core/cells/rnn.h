// Vanilla RNN cell (per-ISA): h' = act(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh), act = tanh or relu.
// One gate, so a hidden block spans U = 4 vectors to keep the register tile as wide as LSTM's.
#pragma once

template <bool kRelu>
struct Rnn {
  static constexpr bool kTwoPhase = false;
  static constexpr int G = 1, U = 4, NB = U * W;
  static constexpr int MR = W == 16 ? 6 : 2;
  static constexpr int BWD_Q = 1, MR_BWD = W == 16 ? 6 : 2;

  static inline void forward(float* g, const float* bx, const vf* rec, const float* /*hp*/, float* ho,
                             const float* /*cp*/, float* /*co*/, float* /*aux*/, const float* /*peep*/,
                             bool /*train*/) {
    for (int u = 0; u < U; ++u) {
      vf a = load(g + u * W) + load(bx + u * W) + rec[u];
      store(ho + u * W, kRelu ? vrelu(a) : vtanh(a));
    }
  }

  static inline void backward(float* g, float* /*gh*/, const vf* dh, vf* pass, float* /*dc*/, const float* /*hp*/,
                              const float* ho, const float* /*cp*/, const float* /*co*/, const float* /*aux*/,
                              const float* /*peep*/) {
    for (int u = 0; u < U; ++u) {
      vf h = load(ho + u * W);
      store(g + u * W, kRelu ? (h > 0.0f ? dh[u] : splat(0.0f)) : dh[u] * (1.0f - h * h));
      pass[u] = splat(0.0f);
    }
  }
};
