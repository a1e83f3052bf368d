// The machine's physical floating-point peak for the active instruction set (benchmarks divide by it).
#pragma once

namespace rnnfast {

// GFLOP/s of `threads` threads each running the register-only FMA loop of kernels/peak.h for about
// `seconds`, all at once (wall time from start to the last one done). Throws std::invalid_argument
// for threads outside [1, kMaxKernelThreads] or seconds outside (0, 10].
double peak_gflops(int threads, double seconds);

}  // namespace rnnfast
