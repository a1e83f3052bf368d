#include "precision.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#if RNNFAST_X86
#include <cpuid.h>
#endif

namespace rnnfast {

const char* weight_format_name(WeightFormat f) {
  switch (f) {
    case WeightFormat::bfloat16: return "bfloat16";
    case WeightFormat::int8: return "int8";
    default: return "float32";
  }
}

bool weight_format_from_name(const std::string& name, WeightFormat* out) {
  for (WeightFormat f : {WeightFormat::float32, WeightFormat::bfloat16, WeightFormat::int8}) {
    if (name == weight_format_name(f)) {
      *out = f;
      return true;
    }
  }
  return false;
}

namespace {

DotFeatures detect_dot() {
  DotFeatures f;
#if RNNFAST_X86
  unsigned a, b, c, d;
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
    f.avx512_vnni = c & (1u << 11);
    const unsigned max_sub = a;
    if (max_sub >= 1 && __get_cpuid_count(7, 1, &a, &b, &c, &d)) {
      f.avx_vnni = a & (1u << 4);
      f.avx512_bf16 = a & (1u << 5);
    }
  }
#endif
  return f;
}

std::atomic<bool>& enabled_slot() {
  static std::atomic<bool> on{[] {
    const char* e = std::getenv("RNNFAST_DOT_PRODUCTS");
    return !(e && (std::strcmp(e, "0") == 0 || std::strcmp(e, "off") == 0));
  }()};
  return on;
}

}  // namespace

const DotFeatures& dot_features() {
  static const DotFeatures f = detect_dot();
  return f;
}

bool dot_products_enabled() { return enabled_slot().load(); }
void set_dot_products(bool enabled) { enabled_slot().store(enabled); }

bool dot_products_for(Isa isa, WeightFormat f) {
  if (!dot_products_enabled() || !dot_kernels_for(isa)) return false;
  const DotFeatures& d = dot_features();
  if (f == WeightFormat::int8) return isa == Isa::avx512 ? d.avx512_vnni : isa == Isa::avx2 && d.avx_vnni;
  if (f == WeightFormat::bfloat16) return isa == Isa::avx512 && d.avx512_vnni && d.avx512_bf16;  // one twin has both
  return false;
}

std::string weight_kernel_name(Isa isa, WeightFormat f, bool dot) {
  std::string s = std::string(isa_name(isa)) + " " + weight_format_name(f);
  if (f == WeightFormat::int8) s += dot ? " vnni" : " exact";
  if (f == WeightFormat::bfloat16) s += dot ? " dpbf16" : " widening";
  return s;
}

}  // namespace rnnfast
