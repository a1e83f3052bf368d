// Reduced-precision inference weights: their names and which kernels run them on this CPU.
#pragma once

#include <string>

#include "kernel_api.h"

namespace rnnfast {

const char* weight_format_name(WeightFormat f);  // "float32", "bfloat16", "int8"
bool weight_format_from_name(const std::string& name, WeightFormat* out);

// Dot-product instructions of this CPU and OS (cpuid leaf 7; the ISA's registers are checked by
// supported_isas()).
struct DotFeatures {
  bool avx512_vnni = false, avx512_bf16 = false, avx_vnni = false;
};
const DotFeatures& dot_features();

// Whether weights of format f packed for isa run on the dot-product twin of that ISA's kernels
// (int8: AVX512-VNNI or AVX-VNNI vpdpbusd; bfloat16: AVX512_BF16 vdpbf16ps). Off everywhere when
// dot products are disabled: RNNFAST_DOT_PRODUCTS=0 or set_dot_products(false), which tests use
// to run the exact integer and widening fallbacks on a CPU that has the instructions.
bool dot_products_for(Isa isa, WeightFormat f);
bool dot_products_enabled();
void set_dot_products(bool enabled);

// What the forward of such weights runs, e.g. "avx512 int8 vnni" or "generic int8 exact".
std::string weight_kernel_name(Isa isa, WeightFormat f, bool dot);

}  // namespace rnnfast
