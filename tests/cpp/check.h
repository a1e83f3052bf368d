// A minimal test harness for the core's C++ tests: CHECK records a failure and goes on, main()
// returns the failure count, so ctest shows every failing case at once.
#pragma once

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "core/cpu.h"
#include "core/kernel_api.h"

namespace check {

inline int& failures() {
  static int n = 0;
  return n;
}

#define CHECK(cond, ...)                                        \
  do {                                                          \
    if (!(cond)) {                                              \
      ++check::failures();                                      \
      std::printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
      std::printf(__VA_ARGS__);                                 \
      std::printf("\n");                                        \
    }                                                           \
  } while (0)

// Runs body and checks that it throws an E (never aborts, never returns normally).
#define CHECK_THROWS(E, body, what)                            \
  do {                                                          \
    bool thrown = false;                                        \
    try {                                                       \
      body;                                                     \
    } catch (const E&) {                                        \
      thrown = true;                                            \
    }                                                           \
    CHECK(thrown, "expected %s: %s", #E, what);                 \
  } while (0)

inline std::vector<float> randn(std::mt19937& rng, size_t n, float scale = 0.5f) {
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// Largest |a - b| relative to tolerance atol + rtol*|b|: <= 1 means close.
inline double worst(const float* a, const float* b, size_t n, double atol = 2e-5, double rtol = 2e-5) {
  double w = 0;
  for (size_t i = 0; i < n; ++i) {
    const double e = std::fabs(double(a[i]) - b[i]) / (atol + rtol * std::fabs(double(b[i])));
    if (!(e <= w)) w = e;  // NaN counts as worst
  }
  return w;
}

inline const char* cell_str(rnnfast::CellKind c) {
  switch (c) {
    case rnnfast::CellKind::lstm: return "lstm";
    case rnnfast::CellKind::gru: return "gru";
    case rnnfast::CellKind::rnn_relu: return "rnn_relu";
    default: return "rnn_tanh";
  }
}

constexpr rnnfast::CellKind kCells[] = {rnnfast::CellKind::rnn_tanh, rnnfast::CellKind::rnn_relu,
                                        rnnfast::CellKind::lstm, rnnfast::CellKind::gru};

inline int report(const char* name) {
  std::printf("%s: %s (%d failures)\n", name, failures() ? "FAILED" : "ok", failures());
  return failures() ? 1 : 0;
}

}  // namespace check
