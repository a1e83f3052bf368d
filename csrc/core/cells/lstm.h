// LSTM cell, fused per-step kernels (per-ISA; see kernels/simd.h). PyTorch gate order i, f, g, o:
//   i = σ(a_i)  f = σ(a_f)  g = tanh(a_g)  o = σ(a_o)    c' = f⊙c + i⊙g    h' = o⊙tanh(c')
// where a = x W_ihᵀ + b_ih + h W_hhᵀ + b_hh. A row's gate block holds G*NB floats laid out as
// [gate][unit]; `rec` holds the recurrent part (h W_hhᵀ + b_hh) in the same order.
// kPeep: the peephole LSTM (Gers & Schmidhuber 2000, ONNX's P input): a_i += p_i⊙c, a_f += p_f⊙c
// (c the previous cell state) and a_o += p_o⊙c' (the new one); `peep` holds the block's p_i, p_f, p_o.
#pragma once

template <bool kPeep>
struct LstmT {
  static constexpr bool kTwoPhase = false;
  static constexpr int G = 4;                     // gates
  static constexpr int U = 1;                     // vectors per gate in a hidden block
  static constexpr int NB = U * W;                // hidden units per block
  static constexpr int MR = W == 16 ? 6 : 2;      // batch rows per forward tile (registers: MR*G*U)
  static constexpr int BWD_Q = W == 16 ? 4 : 2;   // hidden blocks per backward tile
  static constexpr int MR_BWD = W == 16 ? 6 : 4;  // batch rows per backward tile (registers: MR*Q*U)

  // Forward for one batch row and one hidden block. In training, g keeps the activations.
  static inline void forward(float* g, const float* bx, const vf* rec, const float* /*hp*/, float* ho,
                             const float* cp, float* co, float* /*aux*/, const float* peep, bool train) {
    for (int u = 0; u < U; ++u) {
      const int o0 = u * W;
      vf ai = load(g + 0 * NB + o0) + load(bx + 0 * NB + o0) + rec[0 * U + u];
      vf af = load(g + 1 * NB + o0) + load(bx + 1 * NB + o0) + rec[1 * U + u];
      vf ao = load(g + 3 * NB + o0) + load(bx + 3 * NB + o0) + rec[3 * U + u];
      if constexpr (kPeep) {
        ai += load(peep + 0 * NB + o0) * load(cp + o0);
        af += load(peep + 1 * NB + o0) * load(cp + o0);
      }
      vf i = vsigmoid(ai), f = vsigmoid(af);
      vf gg = vtanh(load(g + 2 * NB + o0) + load(bx + 2 * NB + o0) + rec[2 * U + u]);
      vf c = f * load(cp + o0) + i * gg;
      if constexpr (kPeep) ao += load(peep + 2 * NB + o0) * c;
      vf o = vsigmoid(ao);
      store(co + o0, c);
      store(ho + o0, o * vtanh(c));
      if (train) {
        store(g + 0 * NB + o0, i);
        store(g + 1 * NB + o0, f);
        store(g + 2 * NB + o0, gg);
        store(g + 3 * NB + o0, o);
      }
    }
  }

  // Backward for one row and block. dh: gradient of h' (all paths). dc: in, gradient of c';
  // out, gradient of c. g: in, activations; out, gradient of the pre-activations a (the same
  // for the input and the recurrent weights, so gh is unused). pass: what flows to h directly.
  static inline void backward(float* g, float* /*gh*/, const vf* dh, vf* pass, float* dc, const float* /*hp*/,
                              const float* /*ho*/, const float* cp, const float* co, const float* /*aux*/,
                              const float* peep) {
    for (int u = 0; u < U; ++u) {
      const int o0 = u * W;
      vf i = load(g + 0 * NB + o0), f = load(g + 1 * NB + o0);
      vf gg = load(g + 2 * NB + o0), o = load(g + 3 * NB + o0);
      vf tc = vtanh(load(co + o0));
      vf dao = dh[u] * tc * o * (1.0f - o);
      vf dct = load(dc + o0) + dh[u] * o * (1.0f - tc * tc);
      if constexpr (kPeep) dct += dao * load(peep + 2 * NB + o0);  // o saw c'
      vf dai = dct * gg * i * (1.0f - i), daf = dct * load(cp + o0) * f * (1.0f - f);
      store(g + 0 * NB + o0, dai);
      store(g + 1 * NB + o0, daf);
      store(g + 2 * NB + o0, dct * i * (1.0f - gg * gg));
      store(g + 3 * NB + o0, dao);
      if constexpr (kPeep)
        store(dc + o0, dct * f + dai * load(peep + 0 * NB + o0) + daf * load(peep + 1 * NB + o0));
      else
        store(dc + o0, dct * f);
      pass[u] = splat(0.0f);
    }
  }
};
using Lstm = LstmT<false>;
