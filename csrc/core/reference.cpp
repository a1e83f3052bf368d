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

// Everything one step computes, kept for backward.
template <class R>
struct Step {
  int t;
  std::vector<R> h_prev, c_prev, act, h, c, rec;  // act: activated gates; rec: h W_hhᵀ + b_hh
};

template <class R>
void cell_step(CellKind cell, int H, const R* xa, Step<R>& s) {
  const int G = gate_count(cell);
  s.act.assign(G * H, R(0));
  s.h.assign(H, R(0));
  s.c = s.c_prev;
  for (int j = 0; j < H; ++j) {
    if (cell == CellKind::lstm) {
      R i = sigmoid(xa[j] + s.rec[j]), f = sigmoid(xa[H + j] + s.rec[H + j]);
      R g = std::tanh(xa[2 * H + j] + s.rec[2 * H + j]), o = sigmoid(xa[3 * H + j] + s.rec[3 * H + j]);
      s.c[j] = f * s.c_prev[j] + i * g;
      s.h[j] = o * std::tanh(s.c[j]);
      s.act[j] = i, s.act[H + j] = f, s.act[2 * H + j] = g, s.act[3 * H + j] = o;
    } else if (cell == CellKind::gru) {
      R r = sigmoid(xa[j] + s.rec[j]), z = sigmoid(xa[H + j] + s.rec[H + j]);
      R n = std::tanh(xa[2 * H + j] + r * s.rec[2 * H + j]);
      s.h[j] = (R(1) - z) * n + z * s.h_prev[j];
      s.act[j] = r, s.act[H + j] = z, s.act[2 * H + j] = n;
    } else {
      R v = xa[j] + s.rec[j];
      s.h[j] = cell == CellKind::rnn_relu ? (v > R(0) || v != v ? v : R(0)) : std::tanh(v);  // relu(NaN) = NaN, as in torch
      s.act[j] = s.h[j];
    }
  }
}

// Runs sample b forward; returns its steps in processing order.
template <class R>
std::vector<Step<R>> run_sample(CellKind cell, int T, int B, int I, int H, int b, const R* x, int len, bool reverse,
                                const R* w_ih, const R* w_hh, const R* b_ih, const R* b_hh, const R* h0, const R* c0) {
  const int G = gate_count(cell);
  std::vector<Step<R>> steps;
  std::vector<R> h(H, R(0)), c(H, R(0)), xa(G * H);
  if (h0) h.assign(h0 + static_cast<long>(b) * H, h0 + static_cast<long>(b + 1) * H);
  if (c0 && cell == CellKind::lstm) c.assign(c0 + static_cast<long>(b) * H, c0 + static_cast<long>(b + 1) * H);
  (void)T;
  for (int k = 0; k < len; ++k) {
    Step<R> s;
    s.t = reverse ? len - 1 - k : k;
    s.h_prev = h;
    s.c_prev = c;
    s.rec.resize(G * H);
    affine(G * H, I, w_ih, b_ih, x + (static_cast<long>(s.t) * B + b) * I, xa.data());
    affine(G * H, H, w_hh, b_hh, h.data(), s.rec.data());
    cell_step(cell, H, xa.data(), s);
    h = s.h;
    c = s.c;
    steps.push_back(std::move(s));
  }
  return steps;
}

}  // namespace

template <class R>
void reference_forward(CellKind cell, int T, int B, int I, int H, const R* x, const int* lengths, bool reverse,
                       const R* w_ih, const R* w_hh, const R* b_ih, const R* b_hh, const R* h0, const R* c0, R* y,
                       R* hn, R* cn) {
  std::memset(y, 0, sizeof(R) * T * B * H);
  for (int b = 0; b < B; ++b) {
    auto steps = run_sample(cell, T, B, I, H, b, x, lengths[b], reverse, w_ih, w_hh, b_ih, b_hh, h0, c0);
    for (auto& s : steps) std::memcpy(y + (static_cast<long>(s.t) * B + b) * H, s.h.data(), sizeof(R) * H);
    std::memcpy(hn + static_cast<long>(b) * H, steps.back().h.data(), sizeof(R) * H);
    if (cn) std::memcpy(cn + static_cast<long>(b) * H, steps.back().c.data(), sizeof(R) * H);
  }
}

template <class R>
void reference_backward(CellKind cell, int T, int B, int I, int H, const R* x, const int* lengths, bool reverse,
                        const R* w_ih, const R* w_hh, const R* b_ih, const R* b_hh, const R* h0, const R* c0,
                        const R* dy, const R* dhn, const R* dcn, R* dx, R* dh0, R* dc0, R* gw_ih, R* gw_hh,
                        R* gb_ih, R* gb_hh) {
  const int G = gate_count(cell);
  std::memset(dx, 0, sizeof(R) * T * B * I);
  for (int b = 0; b < B; ++b) {
    auto steps = run_sample(cell, T, B, I, H, b, x, lengths[b], reverse, w_ih, w_hh, b_ih, b_hh, h0, c0);
    std::vector<R> dh(H, R(0)), dc(H, R(0)), dax(G * H), dah(G * H), dh_prev(H);
    if (dhn) dh.assign(dhn + static_cast<long>(b) * H, dhn + static_cast<long>(b + 1) * H);
    if (dcn && cell == CellKind::lstm) dc.assign(dcn + static_cast<long>(b) * H, dcn + static_cast<long>(b + 1) * H);
    for (int k = static_cast<int>(steps.size()) - 1; k >= 0; --k) {
      const Step<R>& s = steps[k];
      const long row = static_cast<long>(s.t) * B + b;
      for (int j = 0; j < H; ++j) dh[j] += dy[row * H + j];
      std::fill(dh_prev.begin(), dh_prev.end(), R(0));
      for (int j = 0; j < H; ++j) {
        const R* a = s.act.data();
        if (cell == CellKind::lstm) {
          R i = a[j], f = a[H + j], g = a[2 * H + j], o = a[3 * H + j], tc = std::tanh(s.c[j]);
          R dct = dc[j] + dh[j] * o * (R(1) - tc * tc);
          dax[j] = dct * g * i * (R(1) - i);
          dax[H + j] = dct * s.c_prev[j] * f * (R(1) - f);
          dax[2 * H + j] = dct * i * (R(1) - g * g);
          dax[3 * H + j] = dh[j] * tc * o * (R(1) - o);
          dc[j] = dct * f;
          for (int q = 0; q < 4; ++q) dah[q * H + j] = dax[q * H + j];
        } else if (cell == CellKind::gru) {
          R r = a[j], z = a[H + j], n = a[2 * H + j];
          R dan = dh[j] * (R(1) - z) * (R(1) - n * n);
          dax[j] = dan * s.rec[2 * H + j] * r * (R(1) - r);
          dax[H + j] = dh[j] * (s.h_prev[j] - n) * z * (R(1) - z);
          dax[2 * H + j] = dan;
          dah[j] = dax[j], dah[H + j] = dax[H + j], dah[2 * H + j] = dan * r;
          dh_prev[j] = dh[j] * z;
        } else {
          R h = s.h[j];
          dax[j] = cell == CellKind::rnn_relu ? (h > R(0) ? dh[j] : R(0)) : dh[j] * (R(1) - h * h);
          dah[j] = dax[j];
        }
      }
      for (int r = 0; r < G * H; ++r) {
        for (int i = 0; i < I; ++i) {
          gw_ih[static_cast<long>(r) * I + i] += dax[r] * x[row * I + i];
          dx[row * I + i] += dax[r] * w_ih[static_cast<long>(r) * I + i];
        }
        for (int j = 0; j < H; ++j) {
          gw_hh[static_cast<long>(r) * H + j] += dah[r] * s.h_prev[j];
          dh_prev[j] += dah[r] * w_hh[static_cast<long>(r) * H + j];
        }
        if (gb_ih) gb_ih[r] += dax[r];
        if (gb_hh) gb_hh[r] += dah[r];
      }
      dh = dh_prev;
    }
    std::memcpy(dh0 + static_cast<long>(b) * H, dh.data(), sizeof(R) * H);
    if (dc0) std::memcpy(dc0 + static_cast<long>(b) * H, dc.data(), sizeof(R) * H);
  }
}

#define RNNFAST_INSTANTIATE(R)                                                                                     \
  template void reference_forward<R>(CellKind, int, int, int, int, const R*, const int*, bool, const R*, const R*,  \
                                     const R*, const R*, const R*, const R*, R*, R*, R*);                          \
  template void reference_backward<R>(CellKind, int, int, int, int, const R*, const int*, bool, const R*,          \
                                      const R*, const R*, const R*, const R*, const R*, const R*, const R*,        \
                                      const R*, R*, R*, R*, R*, R*, R*, R*);
RNNFAST_INSTANTIATE(float)
RNNFAST_INSTANTIATE(double)

}  // namespace rnnfast
