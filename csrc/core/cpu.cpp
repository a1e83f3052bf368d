#include "cpu.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <thread>

#include <sched.h>
#include <unistd.h>
#if RNNFAST_X86
#include <cpuid.h>
#endif

namespace rnnfast {
namespace {

#if RNNFAST_X86
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

// Data and unified caches from cpuid leaf 4 (Intel) or 0x8000001D (AMD); false if neither.
bool cpuid_caches(CacheSizes* out) {
  unsigned a, b, c, d;
  unsigned leaf = 4;
  if (__get_cpuid(0, &a, &b, &c, &d) && b == 0x68747541 /* "Auth"enticAMD */) leaf = 0x8000001D;
  if (__get_cpuid_max(leaf & 0x80000000u, nullptr) < leaf) return false;
  bool any = false;
  for (unsigned sub = 0; sub < 16; ++sub) {
    __cpuid_count(leaf, sub, a, b, c, d);
    const unsigned type = a & 0x1f, level = (a >> 5) & 7;
    if (type == 0) break;
    if (type != 1 && type != 3) continue;  // instruction caches do not hold our data
    const long bytes = static_cast<long>(((b >> 22) & 0x3ff) + 1) * (((b >> 12) & 0x3ff) + 1) * ((b & 0xfff) + 1) * (c + 1);
    if (level == 1) out->l1d = bytes;
    if (level == 2) out->l2 = bytes;
    if (level == 3) out->l3 = bytes;
    any = true;
  }
  return any && out->l1d > 0 && out->l2 > 0;
}
#else
std::vector<Isa> detect() { return {Isa::generic}; }
#endif

// What the OS reports (glibc's sysconf), for CPUs whose cpuid says nothing.
bool sysconf_caches(CacheSizes* out) {
#ifdef _SC_LEVEL1_DCACHE_SIZE
  const long l1 = sysconf(_SC_LEVEL1_DCACHE_SIZE), l2 = sysconf(_SC_LEVEL2_CACHE_SIZE), l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
  if (l1 <= 0 || l2 <= 0) return false;
  out->l1d = l1, out->l2 = l2, out->l3 = l3 > 0 ? l3 : 0;
  return true;
#else
  (void)out;
  return false;
#endif
}

CacheSizes detect_caches() {
  CacheSizes c;
#if RNNFAST_X86
  if (cpuid_caches(&c)) {
    c.source = "cpuid";
    return c;
  }
  c = CacheSizes{};
#endif
  if (sysconf_caches(&c)) {
    c.source = "sysconf";
    return c;
  }
  return CacheSizes{};  // the fallback: 32 KiB, 1 MiB, 8 MiB
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

std::string read_line(const std::string& path) {
  std::ifstream f(path);
  std::string line;
  std::getline(f, line);
  return line;
}

// The CPU quota of this process's cgroup in CPUs (0: none): v2 cpu.max, else v1 cfs quota/period.
double cgroup_cpu_quota() {
  std::string v2_path;
  std::ifstream cg("/proc/self/cgroup");
  for (std::string line; std::getline(cg, line);)
    if (line.rfind("0::", 0) == 0) v2_path = line.substr(3);
  for (const std::string& dir : {"/sys/fs/cgroup" + v2_path, std::string("/sys/fs/cgroup")}) {
    const std::string line = read_line(dir + "/cpu.max");
    if (!line.empty()) return parse_cpu_max(line);
  }
  for (const std::string dir : {"/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/cpu"}) {
    const std::string quota = read_line(dir + "/cpu.cfs_quota_us"), period = read_line(dir + "/cpu.cfs_period_us");
    if (!quota.empty() && !period.empty()) return parse_cpu_max(quota + " " + period);
  }
  return 0;
}

// Ranks of an MPI job on this host, from the launcher's environment (1 when not under MPI).
int mpi_local_ranks() {
  for (const char* name : {"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "PMI_LOCAL_SIZE", "PMIX_LOCAL_SIZE",
                           "MV2_COMM_WORLD_LOCAL_SIZE", "SLURM_NTASKS_PER_NODE"}) {
    if (const char* v = std::getenv(name)) {
      const int n = std::atoi(v);
      if (n >= 1) return n;
    }
  }
  return 1;
}

ThreadDefault detect_thread_default() {
  ThreadDefault d;
  d.online = static_cast<int>(std::thread::hardware_concurrency());
  d.affinity = d.online;
#ifdef __linux__
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) d.affinity = CPU_COUNT(&set);
#endif
  d.cgroup_quota = cgroup_cpu_quota();
  d.mpi_local_ranks = mpi_local_ranks();
  d.threads = default_thread_count(d.affinity, d.online, d.cgroup_quota, d.mpi_local_ranks);
  return d;
}

std::atomic<int>& threads_slot() {
  static std::atomic<int> slot{thread_default().threads};
  return slot;
}

}  // namespace

double parse_cpu_max(const std::string& text) {
  char quota[32] = {};
  long period = 0;
  if (std::sscanf(text.c_str(), "%31s %ld", quota, &period) != 2 || period <= 0) return 0;
  const long q = std::atol(quota);  // "max" (v2) or -1 (v1): no quota
  return q > 0 ? static_cast<double>(q) / period : 0;
}

int default_thread_count(int affinity, int online, double cgroup_quota, int mpi_local_ranks) {
  int n = affinity >= 1 ? affinity : 1;
  // A launcher that bound each rank to its own cores already shrank the mask; else share the host.
  if (mpi_local_ranks > 1 && affinity >= online) n = n / mpi_local_ranks;
  if (cgroup_quota > 0) n = std::min(n, static_cast<int>(std::floor(cgroup_quota)));
  return std::clamp(n, 1, kMaxKernelThreads);
}

const CacheSizes& cache_sizes() {
  static const CacheSizes c = detect_caches();
  return c;
}

const ThreadDefault& thread_default() {
  static const ThreadDefault d = detect_thread_default();
  return d;
}

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

namespace {
thread_local int t_thread_cap = 0;
}  // namespace

int num_threads() {
  const int n = threads_slot().load();
  return t_thread_cap > 0 && t_thread_cap < n ? t_thread_cap : n;
}

int set_thread_cap(int cap) {
  if (cap < 0) throw std::invalid_argument("cap must be >= 0 (0: none), got " + std::to_string(cap));
  const int previous = t_thread_cap;
  t_thread_cap = cap;
  return previous;
}

void set_num_threads(int n) {
  if (n < 1) throw std::invalid_argument("num_threads must be >= 1, got " + std::to_string(n));
  threads_slot().store(n < kMaxKernelThreads ? n : kMaxKernelThreads);
}

}  // namespace rnnfast
