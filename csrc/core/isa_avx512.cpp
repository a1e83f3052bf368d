// The kernels built for the avx512 instruction set (16 floats per vector); see kernels/isa_impl.h.
#include <atomic>
#include <cstdint>
#include <cstring>
#include <vector>
#include <immintrin.h>  // one widening load in simd.h (compiled with this file's ISA flags)

#include "core/kernel_api.h"
#include "core/quantize.h"

#define RNNFAST_VEC_FLOATS 16
#define RNNFAST_DOT_TWIN Isa::avx512  // weights packed for dot products run on isa_avx512_dot.cpp
namespace rnnfast {
namespace avx512 {
#include "core/kernels/isa_impl.h"
}  // namespace avx512
}  // namespace rnnfast
