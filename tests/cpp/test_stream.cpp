// A stream stepped T times equals the layer forwards over the whole sequence, layer by layer, on
// every ISA this CPU runs (with and without the per-block step weights); reset and set_state work.
#include <memory>

#include "check.h"
#include "core/layer.h"
#include "core/stream.h"

using namespace rnnfast;

namespace {

struct Layer {
  std::vector<float> w_ih, w_hh, b_ih, b_hh;
};

void test_stream(CellKind cell, Isa isa, int T, int B, int I, int H, int L, bool step_weights, unsigned seed) {
  std::mt19937 rng(seed);
  const int G = gate_count(cell);
  const bool lstm = cell == CellKind::lstm;
  std::vector<Layer> layers;
  std::vector<std::shared_ptr<const PackedWeights>> packed;
  for (int k = 0; k < L; ++k) {
    const int in = k ? H : I;
    layers.push_back({check::randn(rng, size_t(G) * H * in), check::randn(rng, size_t(G) * H * H),
                      check::randn(rng, size_t(G) * H), check::randn(rng, size_t(G) * H)});
    const Layer& l = layers.back();
    packed.push_back(std::make_shared<PackedWeights>(cell, in, H, l.w_ih.data(), l.w_hh.data(), l.b_ih.data(),
                                                     l.b_hh.data(), false, isa, WeightFormat::float32, step_weights));
  }
  const std::vector<float> x = check::randn(rng, size_t(T) * B * I, 1.0f);

  // The whole sequence, one layer after the other.
  std::vector<float> in = x, hn_all, cn_all;
  for (int k = 0; k < L; ++k) {
    std::vector<float> y(size_t(T) * B * H), hn(size_t(B) * H), cn(size_t(B) * H);
    layer_forward(*packed[k], T, B, in.data(), nullptr, false, nullptr, nullptr, y.data(), H, hn.data(),
                  lstm ? cn.data() : nullptr, nullptr);
    hn_all.insert(hn_all.end(), hn.begin(), hn.end());
    cn_all.insert(cn_all.end(), cn.begin(), cn.end());
    in = y;
  }

  Stream s(packed, B);
  for (int pass = 0; pass < 2; ++pass) {  // the second pass after reset() must repeat the first
    std::vector<float> out(size_t(B) * H);
    for (int t = 0; t < T; ++t) {
      s.step(x.data() + size_t(t) * B * I, out.data());
      const double w = check::worst(out.data(), in.data() + size_t(t) * B * H, out.size());
      CHECK(w <= 1.0, "stream %s isa=%s step=%d pass=%d step_weights=%d: worst error %.3g x tolerance",
            check::cell_str(cell), isa_name(isa), t, pass, step_weights, w);
    }
    std::vector<float> h(hn_all.size()), c(cn_all.size());
    s.get_state(h.data(), lstm ? c.data() : nullptr);
    CHECK(check::worst(h.data(), hn_all.data(), h.size()) <= 1.0, "stream state h %s", check::cell_str(cell));
    if (lstm) CHECK(check::worst(c.data(), cn_all.data(), c.size()) <= 1.0, "stream state c");
    s.reset();
  }
  // set_state then get_state gives the state back.
  std::vector<float> h = check::randn(rng, hn_all.size()), c = check::randn(rng, hn_all.size()), h2(h.size()),
                     c2(c.size());
  s.set_state(h.data(), lstm ? c.data() : nullptr);
  s.get_state(h2.data(), lstm ? c2.data() : nullptr);
  CHECK(h == h2, "set_state/get_state h");
  if (lstm) CHECK(c == c2, "set_state/get_state c");
}

}  // namespace

int main() {
  unsigned seed = 100;
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    for (Isa isa : supported_isas())
      for (CellKind cell : check::kCells)
        for (bool step_weights : {false, true}) {
          test_stream(cell, isa, 6, 1, 5, 17, 2, step_weights, seed++);
          test_stream(cell, isa, 4, 3, 32, 64, 3, step_weights, seed++);
        }
  }
  return check::report("test_stream");
}
