#include "core/peak.h"

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "core/cpu.h"

namespace rnnfast {
namespace generic { double peak_fma_flops(long rounds, float* sink); }
#if RNNFAST_X86
namespace avx2 { double peak_fma_flops(long rounds, float* sink); }
namespace avx512 { double peak_fma_flops(long rounds, float* sink); }
#endif

namespace {

using Loop = double (*)(long, float*);

Loop loop_for(Isa isa) {
  switch (isa) {
#if RNNFAST_X86
    case Isa::avx512: return avx512::peak_fma_flops;
    case Isa::avx2: return avx2::peak_fma_flops;
#endif
    default: return generic::peak_fma_flops;
  }
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Rounds that keep one thread busy for about `seconds` (doubling until a run is long enough to time).
long calibrate(Loop loop, double seconds) {
  float sink;
  for (long rounds = 1 << 12;; rounds *= 2) {
    const auto t0 = std::chrono::steady_clock::now();
    loop(rounds, &sink);
    const double t = seconds_since(t0);
    if (t >= 2e-3 || rounds >= (1L << 40)) return t >= seconds ? rounds : static_cast<long>(rounds * seconds / t) + 1;
  }
}

}  // namespace

double peak_gflops(int threads, double seconds) {
  if (threads < 1 || threads > kMaxKernelThreads)
    throw std::invalid_argument("threads: expected 1.." + std::to_string(kMaxKernelThreads) + ", got " +
                                std::to_string(threads));
  if (!(seconds > 0.0 && seconds <= 10.0))
    throw std::invalid_argument("seconds: expected a duration in (0, 10], got " + std::to_string(seconds));
  const Loop loop = loop_for(active_isa());
  const long rounds = calibrate(loop, seconds);
  // Own threads, not the kernels' team: the peak must not depend on how the team schedules work.
  std::atomic<bool> go{false};
  std::vector<double> flops(threads, 0.0);
  std::vector<float> sinks(threads, 0.0f);
  std::vector<std::thread> workers;
  for (int t = 1; t < threads; ++t)
    workers.emplace_back([&, t] {
      while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
      flops[t] = loop(rounds, &sinks[t]);
    });
  const auto t0 = std::chrono::steady_clock::now();
  go.store(true, std::memory_order_release);
  flops[0] = loop(rounds, &sinks[0]);
  for (auto& w : workers) w.join();
  const double wall = seconds_since(t0);
  double total = 0.0;
  for (double f : flops) total += f;
  return total / wall / 1e9;
}

}  // namespace rnnfast
