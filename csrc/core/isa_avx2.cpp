// The kernels built for the avx2 instruction set (8 floats per vector); see kernels/isa_impl.h.
#include <atomic>
#include <cstdint>
#include <cstring>
#include <vector>
#include <immintrin.h>  // one widening load in simd.h (compiled with this file's ISA flags)

#include "core/kernel_api.h"
#include "core/quantize.h"

#define RNNFAST_VEC_FLOATS 8
#define RNNFAST_DOT_TWIN Isa::avx2  // weights packed for dot products run on isa_avx2_dot.cpp
namespace rnnfast {
namespace avx2 {
#include "core/kernels/isa_impl.h"
}  // namespace avx2
}  // namespace rnnfast
