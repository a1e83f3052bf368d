#include "reference.h"

#include <cmath>
#include <cstring>
#include <vector>

namespace rnnfast {
namespace {

template <class R>
R sigmoid(R v) {
  return R(1) / (R(1) + std::exp(-v));
}

// out[r] = b[r] + sum_k W[r][k] v[k] for r < rows.
template <class R>
void affine(int rows, int K, const R* W, const R* b, const R* v, R* out) {
  for (int r = 0; r < rows; ++r) {
    R s = b ? b[r] : R(0);
    for (int k = 0; k < K; ++k) s += W[static_cast<long>(r) * K + k] * v[k];
    out[r] = s;
  }
}

// Layer norm of v (n values) with gain g and bias b into out (may be v); keeps the normalised
// values (hat) and 1 / std for backward.
template <class R>
void ln_forward(int n, const R* v, const R* g, const R* b, R* out, std::vector<R>& hat, R& rstd) {
  R mean = 0, var = 0;
  for (int j = 0; j < n; ++j) mean += v[j];
  mean /= n;
  for (int j = 0; j < n; ++j) var += (v[j] - mean) * (v[j] - mean);
  rstd = R(1) / std::sqrt(var / n + R(kLayerNormEps));
  hat.resize(n);
  for (int j = 0; j < n; ++j) {
    hat[j] = (v[j] - mean) * rstd;
    out[j] = hat[j] * g[j] + b[j];
  }
}

// Backward of ln_forward: dv from dout; adds to the gain's and the bias's gradients.
template <class R>
void ln_backward(int n, const R* dout, const R* g, const std::vector<R>& hat, R rstd, R* dv, R* dg, R* db) {
  R mean_d = 0, mean_dh = 0;
  for (int j = 0; j < n; ++j) {
    const R dhat = dout[j] * g[j];
    mean_d += dhat;
    mean_dh += dhat * hat[j];
    dg[j] += dout[j] * hat[j];
    db[j] += dout[j];
  }
  mean_d /= n, mean_dh /= n;
  for (int j = 0; j < n; ++j) dv[j] = rstd * (dout[j] * g[j] - mean_d - hat[j] * mean_dh);
}

// Everything one step computes, kept for backward.
template <class R>
struct Step {
  int t;
  std::vector<R> h_prev, c_prev, act, h, c, rec;  // act: activated gates; rec: h W_hhᵀ + b_hh
  std::vector<R> rh;  // reset_before: r⊙h, and rec's n part is (r⊙h) W_hnᵀ + b_hn
  std::vector<R> out;  // the new h: h itself, or with a projection W_hr h (h is then m = o * tanh(c))
  std::vector<R> xhat, hhat, chat;  // layer norm: normalised input and recurrent parts, and c
  R xr = 0, hr = 0, cr = 0;         // their 1 / std
};

// The cell variants (kernel_api.h): p is a peephole LSTM's (3, H), or null; the LSTM's options:
// a projection w_hr (P, H) (P = H without), layer norm's gains and biases ln (18H), or null.
template <class R>
struct Variant {
  const R* p;
  bool reset_before;
  int P;
  const R* w_hr;
  const R* ln;
};

// ln: the layer-normalised LSTM's gains and biases (LayerNormOffsets), or null.
template <class R>
void cell_step(CellKind cell, int H, const R* xa, Step<R>& s, const Variant<R>& v) {
  const R* ln = v.ln;
  const int G = gate_count(cell);
  s.act.assign(G * H, R(0));
  s.h.assign(H, R(0));
  s.c = s.c_prev;
  for (int j = 0; j < H; ++j) {
    if (cell == CellKind::lstm) {
      const R pi = v.p ? v.p[j] * s.c_prev[j] : R(0), pf = v.p ? v.p[H + j] * s.c_prev[j] : R(0);
      R i = sigmoid(xa[j] + s.rec[j] + pi), f = sigmoid(xa[H + j] + s.rec[H + j] + pf);
      R g = std::tanh(xa[2 * H + j] + s.rec[2 * H + j]);
      s.c[j] = f * s.c_prev[j] + i * g;
      R o = sigmoid(xa[3 * H + j] + s.rec[3 * H + j] + (v.p ? v.p[2 * H + j] * s.c[j] : R(0)));
      s.h[j] = ln ? R(0) : o * std::tanh(s.c[j]);
      s.act[j] = i, s.act[H + j] = f, s.act[2 * H + j] = g, s.act[3 * H + j] = o;
    } else if (cell == CellKind::gru) {
      R r = sigmoid(xa[j] + s.rec[j]), z = sigmoid(xa[H + j] + s.rec[H + j]);
      R n = std::tanh(xa[2 * H + j] + (v.reset_before ? s.rec[2 * H + j] : r * s.rec[2 * H + j]));
      s.h[j] = (R(1) - z) * n + z * s.h_prev[j];
      s.act[j] = r, s.act[H + j] = z, s.act[2 * H + j] = n;
    } else {
      R v = xa[j] + s.rec[j];
      s.h[j] = cell == CellKind::rnn_relu ? (v > R(0) || v != v ? v : R(0)) : std::tanh(v);  // relu(NaN) = NaN, as in torch
      s.act[j] = s.h[j];
    }
  }
  if (ln) {  // h = o * tanh(LN(c))
    std::vector<R> n(H);
    ln_forward(H, s.c.data(), ln + 16 * H, ln + 17 * H, n.data(), s.chat, s.cr);
    for (int j = 0; j < H; ++j) s.h[j] = s.act[3 * H + j] * std::tanh(n[j]);
  }
}

// Runs sample b forward; returns its steps in processing order.
// P: columns of h (H, or the projection's size with w_hr).
template <class R>
std::vector<Step<R>> run_sample(CellKind cell, int T, int B, int I, int H, int b, const R* x, int len, bool reverse,
                                const R* w_ih, const R* w_hh, const R* b_ih, const R* b_hh, const R* h0, const R* c0,
                                const Variant<R>& v) {
  const int P = v.P;
  const R *w_hr = v.w_hr, *ln = v.ln;
  const int G = gate_count(cell);
  std::vector<Step<R>> steps;
  std::vector<R> h(P, R(0)), c(H, R(0)), xa(G * H);
  if (h0) h.assign(h0 + static_cast<long>(b) * P, h0 + static_cast<long>(b + 1) * P);
  if (c0 && cell == CellKind::lstm) c.assign(c0 + static_cast<long>(b) * H, c0 + static_cast<long>(b + 1) * H);
  (void)T;
  for (int k = 0; k < len; ++k) {
    Step<R> s;
    s.t = reverse ? len - 1 - k : k;
    s.h_prev = h;
    s.c_prev = c;
    s.rec.resize(G * H);
    if (ln) {  // LN(x W_ihᵀ) + b_ih and LN(h W_hhᵀ) + b_hh, each over the 4H gates
      const int n = G * H;
      affine<R>(n, I, w_ih, nullptr, x + (static_cast<long>(s.t) * B + b) * I, xa.data());
      affine<R>(n, P, w_hh, nullptr, h.data(), s.rec.data());
      ln_forward(n, xa.data(), ln, ln + n, xa.data(), s.xhat, s.xr);
      ln_forward(n, s.rec.data(), ln + 2 * n, ln + 3 * n, s.rec.data(), s.hhat, s.hr);
      for (int r = 0; r < n; ++r) {
        xa[r] += b_ih ? b_ih[r] : R(0);
        s.rec[r] += b_hh ? b_hh[r] : R(0);
      }
    } else {
      affine(G * H, I, w_ih, b_ih, x + (static_cast<long>(s.t) * B + b) * I, xa.data());
      affine(G * H, P, w_hh, b_hh, h.data(), s.rec.data());
    }
    if (v.reset_before) {  // the n gate's product acts on r⊙h
      s.rh.resize(H);
      for (int j = 0; j < H; ++j) s.rh[j] = sigmoid(xa[j] + s.rec[j]) * h[j];
      affine(H, H, w_hh + 2L * H * H, b_hh ? b_hh + 2 * H : nullptr, s.rh.data(), s.rec.data() + 2 * H);
    }
    cell_step(cell, H, xa.data(), s, v);
    s.out = s.h;
    if (w_hr) {
      s.out.resize(P);
      affine<R>(P, H, w_hr, nullptr, s.h.data(), s.out.data());
    }
    h = s.out;
    c = s.c;
    steps.push_back(std::move(s));
  }
  return steps;
}

}  // namespace

template <class R>
void reference_forward(CellKind cell, int T, int B, int I, int H, const R* x, const int* lengths, bool reverse,
                       const R* w_ih, const R* w_hh, const R* b_ih, const R* b_hh, const R* h0, const R* c0, R* y,
                       R* hn, R* cn, const R* w_p, bool reset_before, int P, const R* w_hr, const R* ln) {
  if (!w_hr) P = H;
  std::memset(y, 0, sizeof(R) * T * B * P);
  const Variant<R> v{w_p, reset_before, P, w_hr, ln};
  for (int b = 0; b < B; ++b) {
    auto steps = run_sample(cell, T, B, I, H, b, x, lengths[b], reverse, w_ih, w_hh, b_ih, b_hh, h0, c0, v);
    for (auto& s : steps) std::memcpy(y + (static_cast<long>(s.t) * B + b) * P, s.out.data(), sizeof(R) * P);
    std::memcpy(hn + static_cast<long>(b) * P, steps.back().out.data(), sizeof(R) * P);
    if (cn) std::memcpy(cn + static_cast<long>(b) * H, steps.back().c.data(), sizeof(R) * H);
  }
}

template <class R>
void reference_backward(CellKind cell, int T, int B, int I, int H, const R* x, const int* lengths, bool reverse,
                        const R* w_ih, const R* w_hh, const R* b_ih, const R* b_hh, const R* h0, const R* c0,
                        const R* dy, const R* dhn, const R* dcn, R* dx, R* dh0, R* dc0, R* gw_ih, R* gw_hh,
                        R* gb_ih, R* gb_hh, const R* w_p, bool reset_before, R* gw_p, int P, const R* w_hr,
                        R* gw_hr, const R* ln, R* gln) {
  const int G = gate_count(cell);
  if (!w_hr) P = H;
  std::memset(dx, 0, sizeof(R) * T * B * I);
  const Variant<R> v{w_p, reset_before, P, w_hr, ln};
  for (int b = 0; b < B; ++b) {
    auto steps = run_sample(cell, T, B, I, H, b, x, lengths[b], reverse, w_ih, w_hh, b_ih, b_hh, h0, c0, v);
    // dout: gradient of the step's new h (P columns); dh: of its cell output (m with a projection).
    std::vector<R> dout(P, R(0)), dh(H, R(0)), dc(H, R(0)), dax(G * H), dah(G * H), dh_prev(P), dn(H), dcl(H);
    std::vector<R> drh(H, R(0));
    if (dhn) dout.assign(dhn + static_cast<long>(b) * P, dhn + static_cast<long>(b + 1) * P);
    if (dcn && cell == CellKind::lstm) dc.assign(dcn + static_cast<long>(b) * H, dcn + static_cast<long>(b + 1) * H);
    for (int k = static_cast<int>(steps.size()) - 1; k >= 0; --k) {
      const Step<R>& s = steps[k];
      const long row = static_cast<long>(s.t) * B + b;
      for (int j = 0; j < P; ++j) dout[j] += dy[row * P + j];
      if (w_hr) {  // h = W_hr m: dm = W_hrᵀ dh, and W_hr's gradient dh mᵀ
        std::fill(dh.begin(), dh.end(), R(0));
        for (int q = 0; q < P; ++q)
          for (int j = 0; j < H; ++j) {
            dh[j] += w_hr[static_cast<long>(q) * H + j] * dout[q];
            gw_hr[static_cast<long>(q) * H + j] += dout[q] * s.h[j];
          }
      } else {
        dh = dout;
      }
      std::fill(dh_prev.begin(), dh_prev.end(), R(0));
      if (cell == CellKind::gru && reset_before) {  // d(r⊙h) = W_hnᵀ dan, needed for dar
        const R* a = s.act.data();
        std::fill(drh.begin(), drh.end(), R(0));
        for (int k = 0; k < H; ++k) {
          const R dan = dh[k] * (R(1) - a[H + k]) * (R(1) - a[2 * H + k] * a[2 * H + k]);
          for (int j = 0; j < H; ++j) drh[j] += dan * w_hh[(2L * H + k) * H + j];
        }
      }
      for (int j = 0; j < H; ++j) {
        const R* a = s.act.data();
        if (cell == CellKind::lstm && ln && j == 0) {  // through LN(c): dcl is c's gradient from h
          for (int u = 0; u < H; ++u) {
            const R tn = std::tanh(s.chat[u] * ln[16 * H + u] + ln[17 * H + u]);
            dn[u] = dh[u] * a[3 * H + u] * (R(1) - tn * tn);
          }
          ln_backward(H, dn.data(), ln + 16 * H, s.chat, s.cr, dcl.data(), gln + 16 * H, gln + 17 * H);
        }
        if (cell == CellKind::lstm) {
          R i = a[j], f = a[H + j], g = a[2 * H + j], o = a[3 * H + j];
          R tc = ln ? std::tanh(s.chat[j] * ln[16 * H + j] + ln[17 * H + j]) : std::tanh(s.c[j]);
          dax[3 * H + j] = dh[j] * tc * o * (R(1) - o);
          R dct = dc[j] + (ln ? dcl[j] : dh[j] * o * (R(1) - tc * tc)) +
                  (w_p ? dax[3 * H + j] * w_p[2 * H + j] : R(0));
          dax[j] = dct * g * i * (R(1) - i);
          dax[H + j] = dct * s.c_prev[j] * f * (R(1) - f);
          dax[2 * H + j] = dct * i * (R(1) - g * g);
          dc[j] = dct * f;
          if (w_p) {
            dc[j] += dax[j] * w_p[j] + dax[H + j] * w_p[H + j];
            gw_p[j] += dax[j] * s.c_prev[j];
            gw_p[H + j] += dax[H + j] * s.c_prev[j];
            gw_p[2 * H + j] += dax[3 * H + j] * s.c[j];
          }
          for (int q = 0; q < 4; ++q) dah[q * H + j] = dax[q * H + j];
        } else if (cell == CellKind::gru) {
          R r = a[j], z = a[H + j], n = a[2 * H + j];
          R dan = dh[j] * (R(1) - z) * (R(1) - n * n);
          dax[j] = reset_before ? drh[j] * s.h_prev[j] * r * (R(1) - r) : dan * s.rec[2 * H + j] * r * (R(1) - r);
          dax[H + j] = dh[j] * (s.h_prev[j] - n) * z * (R(1) - z);
          dax[2 * H + j] = dan;
          dah[j] = dax[j], dah[H + j] = dax[H + j], dah[2 * H + j] = reset_before ? dan : dan * r;
          dh_prev[j] = dh[j] * z + (reset_before ? drh[j] * r : R(0));
        } else {
          R h = s.h[j];
          dax[j] = cell == CellKind::rnn_relu ? (h > R(0) ? dh[j] : R(0)) : dh[j] * (R(1) - h * h);
          dah[j] = dax[j];
        }
      }
      std::vector<R> da = dax;  // the pre-activations' gradient: the biases' (added after any LN)
      if (ln) {  // through LN(x W_ihᵀ) and LN(h W_hhᵀ)
        const int n = G * H;
        ln_backward(n, da.data(), ln, s.xhat, s.xr, dax.data(), gln, gln + n);
        ln_backward(n, da.data(), ln + 2 * n, s.hhat, s.hr, dah.data(), gln + 2 * n, gln + 3 * n);
      }
      for (int r = 0; r < G * H; ++r) {
        for (int i = 0; i < I; ++i) {
          gw_ih[static_cast<long>(r) * I + i] += dax[r] * x[row * I + i];
          dx[row * I + i] += dax[r] * w_ih[static_cast<long>(r) * I + i];
        }
        const bool on_rh = reset_before && r >= 2 * H;  // W_hn acts on r⊙h; its share of dh_prev is in drh
        for (int j = 0; j < P; ++j) {
          gw_hh[static_cast<long>(r) * P + j] += dah[r] * (on_rh ? s.rh[j] : s.h_prev[j]);
          if (!on_rh) dh_prev[j] += dah[r] * w_hh[static_cast<long>(r) * P + j];
        }
        if (gb_ih) gb_ih[r] += ln ? da[r] : dax[r];
        if (gb_hh) gb_hh[r] += ln ? da[r] : dah[r];
      }
      dout = dh_prev;
    }
    std::memcpy(dh0 + static_cast<long>(b) * P, dout.data(), sizeof(R) * P);
    if (dc0) std::memcpy(dc0 + static_cast<long>(b) * H, dc.data(), sizeof(R) * H);
  }
}

#define RNNFAST_INSTANTIATE(R)                                                                                     \
  template void reference_forward<R>(CellKind, int, int, int, int, const R*, const int*, bool, const R*, const R*,  \
                                     const R*, const R*, const R*, const R*, R*, R*, R*, const R*, bool, int,      \
                                     const R*, const R*);                                                          \
  template void reference_backward<R>(CellKind, int, int, int, int, const R*, const int*, bool, const R*,          \
                                      const R*, const R*, const R*, const R*, const R*, const R*, const R*,        \
                                      const R*, R*, R*, R*, R*, R*, R*, R*, const R*, bool, R*, int, const R*, R*,  \
                                      const R*, R*);
RNNFAST_INSTANTIATE(float)
RNNFAST_INSTANTIATE(double)

}  // namespace rnnfast
