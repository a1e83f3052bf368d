// The avx2 kernels' dot-product twin: their forward compiled with AVX-VNNI, used
// only for weights packed for it on CPUs that have the instructions (precision.h). One source
// (kernels/forward_entry.h); its own namespace keeps its symbols apart from the plain avx2 ones.
#include <atomic>
#include <cstdint>
#include <cstring>
#include <vector>
#include <immintrin.h>

#include "core/kernel_api.h"
#include "core/quantize.h"

#define RNNFAST_VEC_FLOATS 8
#define RNNFAST_VNNI 1

namespace rnnfast {
namespace avx2dot {
#include "core/kernels/simd.h"
#include "core/kernels/gemm.h"
#include "core/kernels/phases.h"
#include "core/kernels/grads.h"
#include "core/cells/rnn.h"
#include "core/cells/lstm.h"
#include "core/cells/gru.h"
#include "core/kernels/sequence.h"
#include "core/kernels/forward_entry.h"

const IsaKernels& kernels() {
  static const IsaKernels table{nullptr, nullptr, nullptr,       forward, nullptr, forward_pair, nullptr,
                                nullptr, nullptr, int8_products};
  return table;
}
}  // namespace avx2dot
}  // namespace rnnfast
