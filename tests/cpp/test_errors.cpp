// The core reports bad arguments and exhausted memory as exceptions (std::invalid_argument,
// std::bad_alloc), never by aborting; and a failed call leaves the objects usable.
#include <climits>
#include <memory>
#include <new>
#include <stdexcept>

#include "check.h"
#include "core/layer.h"
#include "core/stream.h"

using namespace rnnfast;

int main() {
  const Isa isa = supported_isas().back();
  std::mt19937 rng(7);
  const int I = 3, H = 5, G = 4, T = 4, B = 2;
  const auto wi = check::randn(rng, G * H * I), wh = check::randn(rng, G * H * H);
  const auto x = check::randn(rng, T * B * I);
  std::vector<float> y(T * B * H), hn(B * H), cn(B * H), dx(T * B * I), dh0(B * H), dc0(B * H), gwi(wi.size()),
      gwh(wh.size());

  CHECK_THROWS(std::invalid_argument, PackedWeights(CellKind::lstm, 0, H, wi.data(), wh.data(), nullptr, nullptr,
                                                    false, isa), "input_size 0");
  CHECK_THROWS(std::invalid_argument, PackedWeights(CellKind::lstm, I, -1, wi.data(), wh.data(), nullptr, nullptr,
                                                    false, isa), "hidden_size -1");
  CHECK_THROWS(std::invalid_argument, PackedWeights(CellKind::lstm, I, H, wi.data(), wh.data(), nullptr, nullptr,
                                                    true, isa, WeightFormat::bfloat16), "bfloat16 weights with backward");
  CHECK_THROWS(std::invalid_argument, PackedWeights(CellKind::lstm, I, H, wi.data(), wh.data(), nullptr, nullptr,
                                                    true, isa, WeightFormat::int8), "int8 weights with backward");
  // Far more memory than any machine has: an exception, not an abort (the weights are never read).
  CHECK_THROWS(std::bad_alloc, PackedWeights(CellKind::lstm, INT_MAX / 2, 1 << 20, wi.data(), wh.data(), nullptr,
                                             nullptr, true, isa), "a 2^60-float layer");

  const PackedWeights w(CellKind::lstm, I, H, wi.data(), wh.data(), nullptr, nullptr, true, isa);
  TrainCache cache;
  const int bad_lengths[] = {T + 1, 1}, zero_lengths[] = {0, 1};
  CHECK_THROWS(std::invalid_argument, layer_forward(w, T, B, x.data(), bad_lengths, false, nullptr, nullptr, y.data(),
                                                    H, hn.data(), cn.data(), &cache), "a length above T");
  CHECK_THROWS(std::invalid_argument, layer_forward(w, T, B, x.data(), zero_lengths, false, nullptr, nullptr, y.data(),
                                                    H, hn.data(), cn.data(), &cache), "a length of 0");
  CHECK_THROWS(std::invalid_argument, layer_forward(w, 0, B, x.data(), nullptr, false, nullptr, nullptr, y.data(), H,
                                                    hn.data(), cn.data(), nullptr), "T = 0");
  CHECK_THROWS(std::invalid_argument, layer_backward(w, cache, x.data(), y.data(), H, nullptr, nullptr, dx.data(),
                                                     false, dh0.data(), dc0.data(), gwi.data(), gwh.data(), nullptr,
                                                     nullptr), "backward before any forward");
  // A huge batch: the training cache cannot be allocated.
  CHECK_THROWS(std::bad_alloc, layer_forward(w, 1 << 30, 1 << 12, x.data(), nullptr, false, nullptr, nullptr,
                                             y.data(), H, hn.data(), cn.data(), &cache), "a 2^42-row cache");

  // After those failures the same cache and weights still work, once per forward.
  layer_forward(w, T, B, x.data(), nullptr, false, nullptr, nullptr, y.data(), H, hn.data(), cn.data(), &cache);
  const PackedWeights other(CellKind::lstm, I, H + 1, check::randn(rng, G * (H + 1) * I).data(),
                            check::randn(rng, G * (H + 1) * (H + 1)).data(), nullptr, nullptr, true, isa);
  std::vector<float> big(G * (H + 1) * (H + 1)), bigi(G * (H + 1) * I), dh_big(B * (H + 1));
  CHECK_THROWS(std::invalid_argument, layer_backward(other, cache, x.data(), y.data(), H, nullptr, nullptr, dx.data(),
                                                     false, dh_big.data(), dh_big.data(), bigi.data(), big.data(),
                                                     nullptr, nullptr), "backward with other weights");
  layer_backward(w, cache, x.data(), y.data(), H, nullptr, nullptr, dx.data(), false, dh0.data(), dc0.data(),
                 gwi.data(), gwh.data(), nullptr, nullptr);
  CHECK(cache.consumed, "the cache is consumed by its backward");
  CHECK_THROWS(std::invalid_argument, layer_backward(w, cache, x.data(), y.data(), H, nullptr, nullptr, dx.data(),
                                                     false, dh0.data(), dc0.data(), gwi.data(), gwh.data(), nullptr,
                                                     nullptr), "a second backward");

  auto shared = std::make_shared<const PackedWeights>(CellKind::lstm, I, H, wi.data(), wh.data(), nullptr, nullptr,
                                                      false, isa);
  auto gru = std::make_shared<const PackedWeights>(CellKind::gru, H, H, check::randn(rng, 3 * H * H).data(),
                                                   check::randn(rng, 3 * H * H).data(), nullptr, nullptr, false, isa);
  CHECK_THROWS(std::invalid_argument, Stream({}, 1), "a stream without layers");
  CHECK_THROWS(std::invalid_argument, Stream({shared}, 0), "batch 0");
  CHECK_THROWS(std::invalid_argument, Stream({shared, shared}, 1), "layer sizes that do not chain");
  CHECK_THROWS(std::invalid_argument, Stream({shared, gru}, 1), "mixed cells");
  CHECK_THROWS(std::invalid_argument, set_num_threads(0), "0 threads");
  return check::report("test_errors");
}
