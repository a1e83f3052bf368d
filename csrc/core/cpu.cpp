#include "cpu.h"

#include <atomic>
#include <cstdlib>
#include <stdexcept>

#include <thread>

#include <cpuid.h>
#include <sched.h>

namespace rnnfast {
namespace {

unsigned long long xgetbv0() {
  unsigned eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<unsigned long long>(edx) << 32) | eax;
}

// The CPU must have the instructions and the OS must save the wider registers.
std::vector<Isa> detect() {
  std::vector<Isa> isas{Isa::generic};
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return isas;
  const bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28);
  if (!(osxsave && avx)) return isas;
  const unsigned long long xcr0 = xgetbv0();
  const bool os_ymm = (xcr0 & 0x6) == 0x6, os_zmm = (xcr0 & 0xe6) == 0xe6;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return isas;
  const bool avx2 = b & (1u << 5), avx512f = b & (1u << 16), avx512dq = b & (1u << 17),
             avx512bw = b & (1u << 30), avx512vl = b & (1u << 31);
  if (os_ymm && avx2 && fma) isas.push_back(Isa::avx2);
  if (os_zmm && avx2 && fma && avx512f && avx512dq && avx512bw && avx512vl) isas.push_back(Isa::avx512);
  return isas;
}

Isa initial_isa() {
  const auto isas = detect();
  Isa best = isas.back();
  if (const char* env = std::getenv("RNNFAST_ISA")) {
    Isa wanted;
    // An unknown or unsupported request falls back to the best ISA; cpu_info() shows the truth.
    if (isa_from_name(env, &wanted)) {
      for (Isa i : isas)
        if (i == wanted) return wanted;
    }
  }
  return best;
}

std::atomic<int>& isa_slot() {
  static std::atomic<int> slot{static_cast<int>(initial_isa())};
  return slot;
}

int default_threads() {
  int n = static_cast<int>(std::thread::hardware_concurrency());
#ifdef __linux__
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) n = CPU_COUNT(&set);
#endif
  return n < 1 ? 1 : n < kMaxKernelThreads ? n : kMaxKernelThreads;
}

std::atomic<int>& threads_slot() {
  static std::atomic<int> slot{default_threads()};
  return slot;
}

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::avx2: return "avx2";
    case Isa::avx512: return "avx512";
    default: return "generic";
  }
}

bool isa_from_name(const std::string& name, Isa* out) {
  for (Isa i : {Isa::generic, Isa::avx2, Isa::avx512}) {
    if (name == isa_name(i)) {
      *out = i;
      return true;
    }
  }
  return false;
}

std::vector<Isa> supported_isas() {
  static const std::vector<Isa> isas = detect();
  return isas;
}

Isa active_isa() { return static_cast<Isa>(isa_slot().load()); }

void set_isa(Isa isa) {
  for (Isa i : supported_isas()) {
    if (i == isa) {
      isa_slot().store(static_cast<int>(isa));
      return;
    }
  }
  throw std::invalid_argument(std::string("this CPU cannot run the ") + isa_name(isa) + " kernels");
}

int num_threads() { return threads_slot().load(); }

void set_num_threads(int n) {
  if (n < 1) throw std::invalid_argument("num_threads must be >= 1, got " + std::to_string(n));
  threads_slot().store(n < kMaxKernelThreads ? n : kMaxKernelThreads);
}

}  // namespace rnnfast
