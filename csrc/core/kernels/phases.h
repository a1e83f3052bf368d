// Work sharing inside one parallel region (per-ISA): a sequence of phases, each a set of
// independent tiles; phase p starts once every tile of phase p-1 is finished.
//
// Each thread first takes the tiles of its own static share, so from step to step a thread
// touches the same slice of the weights and keeps it in its own cache; then it helps with the
// other shares' unclaimed tiles. A thread the OS deschedules therefore delays the others by at
// most the one tile it holds, where a barrier would stall every step until it ran again. A tile is
// computed whole by whichever thread claims it, so results do not depend on the schedule.
#pragma once

#ifdef _OPENMP
#include <omp.h>
#else
static inline int omp_get_thread_num() { return 0; }
static inline int omp_get_num_threads() { return 1; }
#endif

constexpr int kMaxThreads = kMaxKernelThreads;

struct PhaseShared {
  struct alignas(64) Counter {
    long value = 0;
  };
  Counter done;                  // tiles finished, over all phases so far
  Counter cursor[kMaxThreads];   // tiles claimed from each thread's shares, over all phases
};

class PhaseRunner {
 public:
  PhaseRunner(PhaseShared& shared, int tid, int nth) : sh_(shared), tid_(tid), nth_(nth) {}

  template <class F>
  void run(long ntiles, F&& tile) {
    if (nth_ == 1) {
      for (long i = 0; i < ntiles; ++i) tile(i);
      return;
    }
    while (__atomic_load_n(&sh_.done.value, __ATOMIC_ACQUIRE) < finished_before_) __builtin_ia32_pause();
    for (int k = 0; k < nth_; ++k) {
      const int u = (tid_ + k) % nth_;  // own share first
      const long lo = ntiles * u / nth_, len = ntiles * (u + 1) / nth_ - lo;
      const long base = claimed_before_[u], limit = base + len;
      long* cursor = &sh_.cursor[u].value;
      long cur = __atomic_load_n(cursor, __ATOMIC_RELAXED), finished = 0;
      while (cur < limit) {
        if (__atomic_compare_exchange_n(cursor, &cur, cur + 1, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
          tile(lo + (cur - base));
          ++finished;
          cur = __atomic_load_n(cursor, __ATOMIC_RELAXED);
        }
      }
      // One increment per share, not per tile: the counter's cache line is what the waiting
      // threads spin on, and every write to it is a round trip between cores.
      if (finished) __atomic_fetch_add(&sh_.done.value, finished, __ATOMIC_RELEASE);
      claimed_before_[u] = limit;
    }
    finished_before_ += ntiles;
  }

 private:
  PhaseShared& sh_;
  int tid_, nth_;
  long finished_before_ = 0;
  long claimed_before_[kMaxThreads] = {};
};

// body(phases) on a team of nthreads: one parallel region, denormals flushed inside. A team of
// one runs on the calling thread: libgomp allocates and frees a team even for one thread.
template <class F>
static void in_team(int nthreads, F&& body) {
  PhaseShared shared;
  if (nthreads <= 1) {
    DenormalGuard denormals;
    PhaseRunner phases(shared, 0, 1);
    body(phases);
    return;
  }
#pragma omp parallel num_threads(nthreads)
  {
    DenormalGuard denormals;
    PhaseRunner phases(shared, omp_get_thread_num(), omp_get_num_threads());
    body(phases);
  }
}

// Two independent jobs at once (the directions of a bidirectional layer), each on its own half of
// one team with its own phases: they never wait for each other, and each half keeps its own
// job's weights in its cores' caches. One thread runs them one after the other.
template <class F0, class F1>
static void in_two_teams(int nthreads, F0&& job0, F1&& job1) {
  if (nthreads <= 1) {
    in_team(1, job0);
    in_team(1, job1);
    return;
  }
  PhaseShared shared[2];
#pragma omp parallel num_threads(nthreads)
  {
    DenormalGuard denormals;
    const int tid = omp_get_thread_num(), nth = omp_get_num_threads(), n0 = (nth + 1) / 2;
    if (nth == 1) {
      PhaseRunner p0(shared[0], 0, 1), p1(shared[1], 0, 1);
      job0(p0);
      job1(p1);
    } else if (tid < n0) {
      PhaseRunner phases(shared[0], tid, n0);
      job0(phases);
    } else {
      PhaseRunner phases(shared[1], tid - n0, nth - n0);
      job1(phases);
    }
  }
}
