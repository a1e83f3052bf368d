// The process's kernel thread team (docs/ARCHITECTURE.md): persistent worker threads that spin briefly,
// then sleep, between calls and inside waits. The calling thread starts a call's work at once;
// workers that wake in time join it, later ones stay out, so a slow or descheduled worker delays
// nothing but the one tile it holds. Our own threads, not OpenMP: an OpenMP region ends at a
// barrier that waits for every team member (also one the OS descheduled before it did anything),
// and OpenMP's spin time is a process-wide setting shared with every other OpenMP library.
#pragma once

#include <atomic>
#include <cstdint>
#include <vector>

namespace rnnfast {

static inline void cpu_relax() {
#if (defined(__x86_64__) || defined(__i386__)) && !defined(RNNFAST_NO_X86)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ volatile("yield");
#endif
}

constexpr int kTeamSizeClasses = 24;

// How a call uses the team: at most `threads` participants (the caller included); `wake`: wake
// sleeping workers (a short call would end before they arrive: only already spinning ones join).
// size_class: log2 of the call's estimated one-thread microseconds (load backoff is kept per class:
// stalls of microsecond calls say little about 100 ms ones).
struct TeamPlan {
  int threads = 1;
  bool wake = true;
  int size_class = kTeamSizeClasses - 1;
};

// What one call's participants share besides their tiles.
struct TeamCall {
  std::atomic<bool> stop{false};  // cancelled: skip the remaining tiles
  int nslots = 1;                 // participants planned (tile shares)
  long wait_ns = 0;               // caller only: time spent waiting for tiles held by others
};

// Caller side, after each wait at a phase start (phases.h): adds it to the call and the counters.
void team_caller_waited(TeamCall& call, long waited_ns);

// Counters over the process's team calls (benchmarks and tests: _core._team_stats).
struct TeamStats {
  long calls = 0;          // team_run calls planned on more than one thread
  long alone = 0;          // of those, run on the caller alone (load backoff, or the team busy)
  long host = 0;           // of those, run on a host OpenMP runtime's threads (set_host_openmp)
  long joins = 0;          // workers that joined a call
  long waits = 0;          // the caller's waits at phase starts for tiles others hold
  long wait_ns = 0;        // their total
  long max_wait_ns = 0;    // the longest
  long wait_hist[6] = {};  // waits by length: < 1 us, < 10 us, < 100 us, < 1 ms, < 10 ms, longer
  long join_hist[6] = {};  // our own workers' joins by their delay after the call was posted (same bins)
  long prewakes = 0;       // idle workers that woke before an expected periodic call
  long prewake_hits = 0;   // of those, that caught the call while spinning
};
TeamStats team_stats(bool reset);

// A counter that threads wait on until it reaches a value: a bounded spin, then a futex sleep.
struct alignas(64) WaitCounter {
  std::atomic<long> value{0};
  std::atomic<uint32_t> seq{0};
  std::atomic<int> sleepers{0};
  void add(long n);
  // Returns the nanoseconds waited (0 when no wait was needed). Gives up when stop is set.
  long wait_at_least(long target, const std::atomic<bool>& stop);
};

// Runs body(ctx, call, slot) on the calling thread (slot 0) and on up to plan.threads - 1 workers
// (slots 1...) that join while the caller still works, and returns once the caller's body has
// returned and every worker that joined has left. The body must do all its work through tiles
// that any participant may take (phases.h), so that it completes with the caller alone. Throws
// Cancelled when the caller's cancellation poll (CancelScope) asked to stop.
using TeamBody = void (*)(void* ctx, TeamCall& call, int slot);
void team_run(TeamPlan plan, TeamBody body, void* ctx);

// Caller side of cancellation: called by the calling thread between phases, about every 20 ms.
void team_poll(TeamCall& call);

// While alive on a thread, its long kernel calls call poll(ctx) about every 20 ms and stop early
// (throwing Cancelled, outputs undefined) when it returns true. The Python binding uses it to let
// Ctrl-C interrupt a call that released the GIL.
struct CancelScope {
  CancelScope(bool (*poll)(void*), void* ctx);
  ~CancelScope();
  CancelScope(const CancelScope&) = delete;
  CancelScope& operator=(const CancelScope&) = delete;
  bool (*poll)(void*);
  void* ctx;
  CancelScope* outer;
};

struct Cancelled {};

// Measured costs of this machine's team (first use), for choosing threads per call.
struct TeamCosts {
  double sync_ns = 0;   // one hand-off of a phase between two running threads
  double wake_ns = 0;   // a sleeping worker's wake-up, from the futex call to its first instruction
  double spin_ns = 0;   // how long waits spin before sleeping
  int samples = 0;      // wake-ups timed
  bool measured = false;
};
TeamCosts team_costs();  // calibrates on first call (milliseconds), again later if it was disturbed

// The plan for a call of `steps` sequential phases of `step_ns` estimated work each (one thread),
// with at most `max_tiles` tiles per phase, under the user's thread limit.
TeamPlan plan_team(double step_ns, long steps, long max_tiles);

// Another library's OpenMP runtime to run long team calls on (rnnfast.torch registers torch's):
// its GOMP_parallel entry point (GCC's ABI for `#pragma omp parallel`, which LLVM's and Intel's
// runtimes provide too), omp_get_thread_num, omp_get_num_threads and omp_get_max_threads (calls
// that need more threads than the host uses stay on our own team). Why: after each of that
// library's parallel regions its pool threads spin for milliseconds (libgomp's default: ~8 ms of
// CPU after a torch op on this project's machines) on the cores our own workers need, and a call
// that starts right after one ran up to ~2x slower. On the spinning threads it keeps every core.
// Calls too short to wake a sleeper (plan.wake false: stream steps) stay on our own team. Null
// pointers: our own team only. A forked child forgets the runtime (its pool did not survive).
void set_host_openmp(void* gomp_parallel, void* omp_get_thread_num, void* omp_get_num_threads,
                     void* omp_get_max_threads);
bool host_openmp();  // one is registered

// Early wake-ups for periodic calls (default on): when calls worth waking workers for come at a
// steady period (2-200 ms; one outlier allowed), as many idle workers as those calls use sleep
// until 1/8 period (1-4 ms) before the next is due and spin through it, instead of being woken
// (late) by it. Costs about a quarter period of one core per call while the calls stay periodic,
// nothing otherwise. Returns the old setting.
bool set_prewake(bool on);
bool prewake();  // in effect

// How long idle workers spin after a call before sleeping, in ns. 0 (default, or RNNFAST_IDLE_SPIN_US
// unset): the calibrated spin time (~a wake-up). More keeps them awake for the next call (sparse
// latency-critical calls) but keeps a core busy that long after every call.
void set_idle_spin_ns(long ns);
long idle_spin_ns();  // in effect: max(the request, the calibrated spin time)

// Test hooks: every call planned on force_threads participants (0: the plan decides; no load
// backoff while forced); workers wait join_delay_us before joining a call (a late worker) and
// tile_delay_us inside each tile they take (a worker descheduled while holding a tile).
// Returns how many times a worker has joined a call so far.
long set_team_testing(int force_threads, int join_delay_us, int tile_delay_us);
// Test hook: the next n calibrations time no worker (as on a machine where none woke in time).
void fail_next_calibrations(int n);
// The load backoff's decisions for a run of team calls of one size class, each 1 ms long and
// stalled (the caller waited 0.9 ms) or not, on a fresh state: 1 where a call runs alone (tests).
std::vector<int> simulate_backoff(const std::vector<int>& stalled);
extern std::atomic<int> g_team_tile_delay_us;
void team_test_delay(int us);
// Test hook: whether time loops alternate their tiles' order from step to step (phases.h; default
// true). Returns the previous setting.
bool set_alternate_tile_order(bool on);
extern std::atomic<bool> g_alternate_tile_order;

}  // namespace rnnfast
