// The kernels built for the generic instruction set (4 floats per vector); see kernels/isa_impl.h.
#include <atomic>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/kernel_api.h"
#include "core/quantize.h"

#define RNNFAST_VEC_FLOATS 4
namespace rnnfast {
namespace generic {
#include "core/kernels/isa_impl.h"
}  // namespace generic
}  // namespace rnnfast
