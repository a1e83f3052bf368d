// Every optimised layer kernel against the scalar reference, on every ISA this CPU runs: forward in
// training and inference, backward, both directions, ragged lengths, odd sizes, 1 and 2 threads,
// and the bidirectional pair against two single directions.
#include <algorithm>
#include <cstring>

#include "check.h"
#include "core/layer.h"
#include "core/reference.h"

using namespace rnnfast;

namespace {

struct Problem {
  CellKind cell;
  int T, B, I, H, G;
  std::vector<float> x, w_ih, w_hh, b_ih, b_hh, h0, c0, dy, dhn, dcn;
  std::vector<int> lengths;

  Problem(CellKind c, int T_, int B_, int I_, int H_, unsigned seed)
      : cell(c), T(T_), B(B_), I(I_), H(H_), G(gate_count(c)) {
    std::mt19937 rng(seed);
    const float scale = 1.0f / std::sqrt(float(H));  // PyTorch's initial range: activations away from saturation
    x = check::randn(rng, size_t(T) * B * I, 1.0f);
    w_ih = check::randn(rng, size_t(G) * H * I, scale);
    w_hh = check::randn(rng, size_t(G) * H * H, scale);
    b_ih = check::randn(rng, size_t(G) * H, scale);
    b_hh = check::randn(rng, size_t(G) * H, scale);
    h0 = check::randn(rng, size_t(B) * H);
    c0 = check::randn(rng, size_t(B) * H);
    dy = check::randn(rng, size_t(T) * B * H, 1.0f);
    dhn = check::randn(rng, size_t(B) * H, 1.0f);
    dcn = check::randn(rng, size_t(B) * H, 1.0f);
    for (int b = 0; b < B; ++b) lengths.push_back(std::max(1, T - (b * 3) % T));  // ragged, one full
  }
};

struct Result {
  std::vector<float> y, hn, cn, dx, dh0, dc0, gwi, gwh, gbi, gbh;
  explicit Result(const Problem& p)
      : y(size_t(p.T) * p.B * p.H), hn(size_t(p.B) * p.H), cn(size_t(p.B) * p.H), dx(size_t(p.T) * p.B * p.I),
        dh0(size_t(p.B) * p.H), dc0(size_t(p.B) * p.H), gwi(size_t(p.G) * p.H * p.I), gwh(size_t(p.G) * p.H * p.H),
        gbi(size_t(p.G) * p.H), gbh(size_t(p.G) * p.H) {}
};

Result reference(const Problem& p, bool reverse) {
  Result r(p);
  reference_forward<float>(p.cell, p.T, p.B, p.I, p.H, p.x.data(), p.lengths.data(), reverse, p.w_ih.data(),
                           p.w_hh.data(), p.b_ih.data(), p.b_hh.data(), p.h0.data(), p.c0.data(), r.y.data(),
                           r.hn.data(), r.cn.data());
  reference_backward<float>(p.cell, p.T, p.B, p.I, p.H, p.x.data(), p.lengths.data(), reverse, p.w_ih.data(),
                            p.w_hh.data(), p.b_ih.data(), p.b_hh.data(), p.h0.data(), p.c0.data(), p.dy.data(),
                            p.dhn.data(), p.dcn.data(), r.dx.data(), r.dh0.data(), r.dc0.data(), r.gwi.data(),
                            r.gwh.data(), r.gbi.data(), r.gbh.data());
  return r;
}

PackedWeights pack(const Problem& p, Isa isa, bool with_backward) {
  return PackedWeights(p.cell, p.I, p.H, p.w_ih.data(), p.w_hh.data(), p.b_ih.data(), p.b_hh.data(), with_backward,
                       isa);
}

Result optimised(const Problem& p, Isa isa, bool reverse, bool train) {
  Result r(p);
  const PackedWeights w = pack(p, isa, train);
  const bool lstm = p.cell == CellKind::lstm;
  TrainCache cache;
  layer_forward(w, p.T, p.B, p.x.data(), p.lengths.data(), reverse, p.h0.data(), lstm ? p.c0.data() : nullptr,
                r.y.data(), p.H, r.hn.data(), lstm ? r.cn.data() : nullptr, train ? &cache : nullptr);
  if (train)
    layer_backward(w, cache, p.x.data(), p.dy.data(), p.H, p.dhn.data(), lstm ? p.dcn.data() : nullptr, r.dx.data(),
                   false, r.dh0.data(), lstm ? r.dc0.data() : nullptr, r.gwi.data(), r.gwh.data(), r.gbi.data(),
                   r.gbh.data());
  return r;
}

// Gradients sum over T*B rows in another order than the reference: a looser tolerance than outputs.
void compare(const char* what, const std::vector<float>& got, const std::vector<float>& want, const Problem& p,
             Isa isa, bool reverse) {
  const bool gradient = what[0] == 'd' || std::strstr(what, "grad");
  const double w = check::worst(got.data(), want.data(), want.size(), gradient ? 1e-4 : 2e-5, gradient ? 1e-4 : 2e-5);
  CHECK(w <= 1.0, "%s %s T=%d B=%d I=%d H=%d isa=%s reverse=%d: worst error %.3g x tolerance", what,
        check::cell_str(p.cell), p.T, p.B, p.I, p.H, isa_name(isa), reverse, w);
}

void test_against_reference(const Problem& p, Isa isa, bool reverse) {
  const Result ref = reference(p, reverse);
  const bool lstm = p.cell == CellKind::lstm;
  for (bool train : {false, true}) {
    const Result got = optimised(p, isa, reverse, train);
    compare(train ? "y (train)" : "y (eval)", got.y, ref.y, p, isa, reverse);
    compare("hn", got.hn, ref.hn, p, isa, reverse);
    if (lstm) compare("cn", got.cn, ref.cn, p, isa, reverse);
    if (!train) continue;
    compare("dx", got.dx, ref.dx, p, isa, reverse);
    compare("dh0", got.dh0, ref.dh0, p, isa, reverse);
    if (lstm) compare("dc0", got.dc0, ref.dc0, p, isa, reverse);
    compare("grad_w_ih", got.gwi, ref.gwi, p, isa, reverse);
    compare("grad_w_hh", got.gwh, ref.gwh, p, isa, reverse);
    compare("grad_b_ih", got.gbi, ref.gbi, p, isa, reverse);
    compare("grad_b_hh", got.gbh, ref.gbh, p, isa, reverse);
  }
}

// Both directions at once equal the forward and the reverse direction run one after the other.
void test_pair(const Problem& p, Isa isa) {
  const bool lstm = p.cell == CellKind::lstm;
  const PackedWeights w0 = pack(p, isa, true), w1 = pack(p, isa, true);
  const size_t s = size_t(p.B) * p.H;
  std::vector<float> y(size_t(p.T) * p.B * 2 * p.H), hn(2 * s), cn(2 * s), h02(2 * s), c02(2 * s);
  std::copy(p.h0.begin(), p.h0.end(), h02.begin());
  std::copy(p.h0.begin(), p.h0.end(), h02.begin() + s);
  std::copy(p.c0.begin(), p.c0.end(), c02.begin());
  std::copy(p.c0.begin(), p.c0.end(), c02.begin() + s);
  TrainCache c0, c1;
  DirectionForward f0{&w0, h02.data(), lstm ? c02.data() : nullptr, y.data(), hn.data(), lstm ? cn.data() : nullptr,
                      &c0};
  DirectionForward f1{&w1, h02.data() + s, lstm ? c02.data() + s : nullptr, y.data() + p.H, hn.data() + s,
                      lstm ? cn.data() + s : nullptr, &c1};
  layer_forward_pair(f0, f1, p.T, p.B, p.x.data(), p.lengths.data(), 2 * p.H);
  for (int d = 0; d < 2; ++d) {
    const Result one = optimised(p, isa, d == 1, false);
    std::vector<float> yd(one.y.size());
    for (size_t r = 0; r < size_t(p.T) * p.B; ++r)
      std::memcpy(yd.data() + r * p.H, y.data() + r * 2 * p.H + d * p.H, sizeof(float) * p.H);
    compare(d ? "pair y (reverse)" : "pair y (forward)", yd, one.y, p, isa, d == 1);
    compare("pair hn", std::vector<float>(hn.begin() + d * s, hn.begin() + (d + 1) * s), one.hn, p, isa, d == 1);
  }
  // Backward: dx is the sum of both directions'; each direction's parameter gradients its own.
  std::vector<float> dy2(y.size());
  for (size_t r = 0; r < size_t(p.T) * p.B; ++r)
    for (int d = 0; d < 2; ++d) std::memcpy(dy2.data() + r * 2 * p.H + d * p.H, p.dy.data() + r * p.H, sizeof(float) * p.H);
  Result g0(p), g1(p);
  std::vector<float> dx(p.x.size()), dh0(2 * s), dc0(2 * s);
  DirectionBackward b0{&w0, &c0, dy2.data(), nullptr, nullptr, dh0.data(), lstm ? dc0.data() : nullptr,
                       g0.gwi.data(), g0.gwh.data(), g0.gbi.data(), g0.gbh.data(), nullptr};
  DirectionBackward b1{&w1, &c1, dy2.data() + p.H, nullptr, nullptr, dh0.data() + s, lstm ? dc0.data() + s : nullptr,
                       g1.gwi.data(), g1.gwh.data(), g1.gbi.data(), g1.gbh.data(), nullptr};
  layer_backward_pair(b0, b1, p.x.data(), 2 * p.H, dx.data());
  std::vector<float> dx_sum(p.x.size(), 0.0f);
  for (int d = 0; d < 2; ++d) {
    Result one(p);
    TrainCache cache;
    const PackedWeights& w = d ? w1 : w0;
    layer_forward(w, p.T, p.B, p.x.data(), p.lengths.data(), d == 1, p.h0.data(), lstm ? p.c0.data() : nullptr,
                  one.y.data(), p.H, one.hn.data(), lstm ? one.cn.data() : nullptr, &cache);
    layer_backward(w, cache, p.x.data(), p.dy.data(), p.H, nullptr, nullptr, dx_sum.data(), d == 1, one.dh0.data(),
                   lstm ? one.dc0.data() : nullptr, one.gwi.data(), one.gwh.data(), one.gbi.data(), one.gbh.data());
    const Result& g = d ? g1 : g0;
    compare("pair grad_w_ih", g.gwi, one.gwi, p, isa, d == 1);
    compare("pair grad_w_hh", g.gwh, one.gwh, p, isa, d == 1);
    compare("pair dh0", std::vector<float>(dh0.begin() + d * s, dh0.begin() + (d + 1) * s), one.dh0, p, isa, d == 1);
  }
  compare("pair dx", dx, dx_sum, p, isa, false);
}

}  // namespace

int main() {
  const int shapes[][4] = {{1, 1, 1, 1}, {5, 3, 7, 17}, {4, 2, 33, 20}, {3, 5, 16, 64}};
  unsigned seed = 1;
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    for (Isa isa : supported_isas()) {
      for (CellKind cell : check::kCells) {
        for (const auto& s : shapes) {
          const Problem p(cell, s[0], s[1], s[2], s[3], seed++);
          for (bool reverse : {false, true}) test_against_reference(p, isa, reverse);
          test_pair(p, isa);
        }
      }
    }
  }
  return check::report("test_layer");
}
