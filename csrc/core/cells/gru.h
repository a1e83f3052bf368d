// GRU cell, fused per-step kernels (per-ISA). PyTorch's formulation (gate order r, z, n):
//   r = σ(x_r + h_r)  z = σ(x_z + h_z)  n = tanh(x_n + r⊙h_n)  h' = (1-z)⊙n + z⊙h
// with x_* = x W_i*ᵀ + b_i* and h_* = h W_h*ᵀ + b_h* ("linear before reset", as cuDNN).
// Because r multiplies h_n, the input and recurrent pre-activation gradients differ in the n
// gate, so backward writes both: g (for W_ih, b_ih, x) and gh (for W_hh, b_hh, h).
#pragma once

struct Gru {
  static constexpr bool kTwoPhase = false;
  static constexpr int G = 3, U = 1, NB = U * W;
  static constexpr int MR = W == 16 ? 8 : 3;
  static constexpr int BWD_Q = W == 16 ? 4 : 2, MR_BWD = W == 16 ? 6 : 4;

  // aux keeps h_n (the recurrent part of the n gate) for backward, in training.
  static inline void forward(float* g, const float* bx, const vf* rec, const float* hp, float* ho,
                             const float* /*cp*/, float* /*co*/, float* aux, const float* /*peep*/,
                             bool train) {
    for (int u = 0; u < U; ++u) {
      const int o0 = u * W;
      vf r = vsigmoid(load(g + 0 * NB + o0) + load(bx + 0 * NB + o0) + rec[0 * U + u]);
      vf z = vsigmoid(load(g + 1 * NB + o0) + load(bx + 1 * NB + o0) + rec[1 * U + u]);
      vf hn = rec[2 * U + u];
      vf n = vtanh(load(g + 2 * NB + o0) + load(bx + 2 * NB + o0) + r * hn);
      vf h = load(hp + o0);
      store(ho + o0, n + z * (h - n));
      if (train) {
        store(g + 0 * NB + o0, r);
        store(g + 1 * NB + o0, z);
        store(g + 2 * NB + o0, n);
        store(aux + o0, hn);
      }
    }
  }

  static inline void backward(float* g, float* gh, const vf* dh, vf* pass, float* /*dc*/, const float* hp,
                              const float* /*ho*/, const float* /*cp*/, const float* /*co*/, const float* aux,
                              const float* /*peep*/) {
    for (int u = 0; u < U; ++u) {
      const int o0 = u * W;
      vf r = load(g + 0 * NB + o0), z = load(g + 1 * NB + o0), n = load(g + 2 * NB + o0);
      vf dan = dh[u] * (1.0f - z) * (1.0f - n * n);
      vf dar = dan * load(aux + o0) * r * (1.0f - r);
      vf daz = dh[u] * (load(hp + o0) - n) * z * (1.0f - z);
      store(g + 0 * NB + o0, dar);
      store(g + 1 * NB + o0, daz);
      store(g + 2 * NB + o0, dan);
      store(gh + 0 * NB + o0, dar);
      store(gh + 1 * NB + o0, daz);
      store(gh + 2 * NB + o0, dan * r);
      pass[u] = dh[u] * z;
    }
  }
};

// Cho et al. 2014's GRU (ONNX's default, linear_before_reset=0; Keras reset_after=False): the reset
// gate multiplies h before the recurrent product, n = tanh(x_n + (r⊙h) W_hnᵀ + b_hn). The n gate's
// product needs every r of the row first, so a step is two phases (kernels/sequence.h): r and z
// (writing r⊙h), then n. Backward likewise: dan and daz, then d(r⊙h) = dan W_hn gives dar.
struct GruResetBefore : Gru {
  static constexpr bool kTwoPhase = true;
  static constexpr int kNBlocks = 3;  // hidden blocks per tile of the n phase (kernels/sequence.h)

  // rec: the recurrent parts of r and z. g keeps r and z (phase 2 and backward read them).
  static inline void forward_rz(float* g, const float* bx, const vf* rec, const float* hp, float* rh) {
    vf r = vsigmoid(load(g + 0 * NB) + load(bx + 0 * NB) + rec[0]);
    vf z = vsigmoid(load(g + 1 * NB) + load(bx + 1 * NB) + rec[1]);
    store(g + 0 * NB, r);
    store(g + 1 * NB, z);
    store(rh, r * load(hp));
  }

  // rec_n: (r⊙h) W_hnᵀ + b_hn.
  static inline void forward_n(float* g, const float* bx, vf rec_n, const float* hp, float* ho, bool train) {
    vf n = vtanh(load(g + 2 * NB) + load(bx + 2 * NB) + rec_n);
    vf z = load(g + 1 * NB), h = load(hp);
    store(ho, n + z * (h - n));
    if (train) store(g + 2 * NB, n);
  }

  // Phase 1: gradients of the z and n pre-activations; dan also to dn (the rows of the d(r⊙h)
  // product). gh's n part is 0: W_hn acts on r⊙h, whose gradient phase 2 passes on. r stays in g.
  static inline void backward_zn(float* g, float* gh, vf dh, const float* hp, float* dn, vf& pass) {
    vf z = load(g + 1 * NB), n = load(g + 2 * NB);
    vf dan = dh * (1.0f - z) * (1.0f - n * n);
    vf daz = dh * (load(hp) - n) * z * (1.0f - z);
    store(g + 1 * NB, daz);
    store(g + 2 * NB, dan);
    store(gh + 1 * NB, daz);
    store(gh + 2 * NB, splat(0.0f));
    store(dn, dan);
    pass = dh * z;
  }

  // Phase 2: drh = d(r⊙h) for this block; dar, and h's share through r⊙h added to pass.
  static inline void backward_r(float* g, float* gh, vf drh, const float* hp, float* pass) {
    vf r = load(g + 0 * NB);
    vf dar = drh * load(hp) * r * (1.0f - r);
    store(g + 0 * NB, dar);
    store(gh + 0 * NB, dar);
    store(pass, load(pass) + drh * r);
  }
};
