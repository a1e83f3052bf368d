// CPU feature detection and the instruction-set choice (docs/ARCHITECTURE.md).
// Compiled without architecture flags so it runs on any x86-64.
#pragma once
#include <string>
#include <vector>

namespace rnnfast {

enum class Isa { generic = 0, avx2 = 1, avx512 = 2 };

const char* isa_name(Isa isa);
bool isa_from_name(const std::string& name, Isa* out);

// ISAs this CPU and OS can run, best last.
std::vector<Isa> supported_isas();

// The ISA the kernels use: the best supported one, or RNNFAST_ISA when set; set_isa overrides.
Isa active_isa();
void set_isa(Isa isa);  // throws std::invalid_argument if the CPU cannot run it

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

int num_threads();
void set_num_threads(int n);  // n >= 1

}  // namespace rnnfast
