// The physical peak of one instruction set: independent multiply-add chains held in registers,
// no memory traffic. Enough chains to cover the FMA latency times the FMA ports of any current x86
// core (latency 4-5, 2 ports: 8-10 in flight), with registers to spare so nothing spills (16 vector
// registers up to AVX2, 32 with AVX-512). The generic build has no FMA instruction: there a chain
// step is a multiply and an add, which is still that build's peak.
constexpr int kPeakChains = W == 16 ? 24 : 12;

// Runs `rounds` rounds of every chain; returns the floating-point operations done (2 per lane per
// step) and writes the chains' sum to *sink so the compiler cannot drop the work.
double peak_fma_flops(long rounds, float* sink) {
  vf acc[kPeakChains];
  for (int k = 0; k < kPeakChains; ++k) acc[k] = splat(1.0f + 1e-3f * k);
  // acc -> acc * m + c converges to c / (1 - m) = 1: the values stay normal, never denormal or inf.
  const vf m = splat(0.999999f), c = splat(1e-6f);
  for (long r = 0; r < rounds; ++r) {
#pragma GCC unroll 32  // every chain in its own register: a loop over the array would go through memory
    for (int k = 0; k < kPeakChains; ++k) acc[k] = acc[k] * m + c;
  }
  vf sum = {};
  for (int k = 0; k < kPeakChains; ++k) sum += acc[k];
  float total = 0.0f;
  for (int i = 0; i < W; ++i) total += sum[i];
  *sink = total;
  return 2.0 * W * kPeakChains * static_cast<double>(rounds);
}
