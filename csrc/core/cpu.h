// CPU feature detection and the instruction-set choice (docs/ARCHITECTURE.md).
// Compiled without architecture flags so it runs on any x86-64; elsewhere (or with RNNFAST_NO_X86)
// only the generic kernels exist and nothing x86-specific is compiled.
#pragma once
#include <string>
#include <vector>

#if (defined(__x86_64__) || defined(__i386__)) && !defined(RNNFAST_NO_X86)
#define RNNFAST_X86 1
#else
#define RNNFAST_X86 0
#endif

namespace rnnfast {

enum class Isa { generic = 0, avx2 = 1, avx512 = 2 };

const char* isa_name(Isa isa);
bool isa_from_name(const std::string& name, Isa* out);

// ISAs this CPU and OS can run, best last.
std::vector<Isa> supported_isas();

// The ISA the kernels use: the best supported one, or RNNFAST_ISA when set; set_isa overrides.
Isa active_isa();
void set_isa(Isa isa);  // throws std::invalid_argument if the CPU cannot run it

// Per-core data cache sizes in bytes, from cpuid (leaf 4 or 0x8000001D), else the OS, else
// 32 KiB / 1 MiB / 8 MiB; the blocking that depends on cache size is derived from them.
struct CacheSizes {
  long l1d = 32 * 1024, l2 = 1024 * 1024, l3 = 8 * 1024 * 1024;
  const char* source = "default";
};
const CacheSizes& cache_sizes();

constexpr int kMaxKernelThreads = 64;  // more are clamped (the kernels' work sharing is sized for it)

// The default thread count and what it came from: the CPUs this process may run on (affinity
// mask), the cgroup CPU quota (0: none) and the MPI ranks sharing this host.
struct ThreadDefault {
  int threads = 1, affinity = 1, online = 1, mpi_local_ranks = 1;
  double cgroup_quota = 0;
};
const ThreadDefault& thread_default();
int default_thread_count(int affinity, int online, double cgroup_quota, int mpi_local_ranks);
double parse_cpu_max(const std::string& text);  // "max 100000" -> 0, "150000 100000" -> 1.5

int num_threads();           // the process's setting, capped by the calling thread's cap
void set_num_threads(int n);  // n >= 1
// The calling thread's calls use at most cap threads (0: no cap); returns the previous cap.
// rnnfast.torch sets torch.get_num_threads() around its kernel calls, as torch.nn's modules use.
int set_thread_cap(int cap);

}  // namespace rnnfast
