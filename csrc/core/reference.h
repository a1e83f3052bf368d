// Scalar reference ("twin") of every kernel: the plainest correct code, one sample and one step
// at a time, in PyTorch's layout. The test oracle for the optimised paths (also in double).
#pragma once

#include "kernel_api.h"

namespace rnnfast {

// Shapes as layer_forward/layer_backward, but y is dense (T, B, H) and lengths is required.
// w_p: a peephole LSTM's (3, H) p_i, p_f, p_o, or null; reset_before: Cho et al.'s GRU.
template <class R>
void reference_forward(CellKind cell, int T, int B, int I, int H, const R* x, const int* lengths, bool reverse,
                       const R* w_ih, const R* w_hh, const R* b_ih, const R* b_hh, const R* h0, const R* c0, R* y,
                       R* hn, R* cn, const R* w_p = nullptr, bool reset_before = false, int P = 0,
                       const R* w_hr = nullptr, const R* ln = nullptr);
// Shapes as layer_forward/layer_backward, but y is dense (T, B, P) and lengths is required.
// P > 0 with w_hr (P, H): the LSTM projection h = W_hr (o * tanh(c)); w_hh is then (G*H, P) and
// h0, hn, dhn, dh0 have P columns. P = 0: none (h has H columns).
// ln (LSTM only, 18H values, kernel_api.h): the layer-normalised LSTM of Ba, Kiros & Hinton
// (2016); its gradient is added to gln (18H).


// Recomputes the forward, then accumulates parameter gradients and writes dx, dh0, dc0.
template <class R>
void reference_backward(CellKind cell, int T, int B, int I, int H, const R* x, const int* lengths, bool reverse,
                        const R* w_ih, const R* w_hh, const R* b_ih, const R* b_hh, const R* h0, const R* c0,
                        const R* dy, const R* dhn, const R* dcn, R* dx, R* dh0, R* dc0, R* gw_ih, R* gw_hh,
                        R* gb_ih, R* gb_hh, const R* w_p = nullptr, bool reset_before = false,
                        R* gw_p = nullptr, int P = 0, const R* w_hr = nullptr, R* gw_hr = nullptr,
                        const R* ln = nullptr, R* gln = nullptr);

}  // namespace rnnfast
