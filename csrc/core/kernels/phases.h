// Work sharing inside one team call (per-ISA; the team itself is team.h): a sequence of phases,
// each a set of independent tiles; phase p starts once every tile of phase p-1 is finished.
//
// Each participant first takes the tiles of its own static share, so from step to step a thread
// touches the same slice of the weights and keeps it in its own cache; then it helps with the
// other shares' unclaimed tiles. A share whose worker has not arrived (yet) is done by the others,
// and a thread the OS deschedules delays the others by at most the one tile it holds. A tile is
// computed whole by whichever thread claims it, so results do not depend on the schedule.
#pragma once

constexpr int kMaxThreads = kMaxKernelThreads;

struct PhaseShared {
  struct alignas(64) Counter {
    long value = 0;
  };
  WaitCounter done;              // tiles finished, over all phases so far
  Counter cursor[kMaxThreads];   // tiles claimed from each thread's shares, over all phases
};

class PhaseRunner {
 public:
  // tid: this participant's preferred share; nth: the shares (participants planned). Any number
  // of participants may run the same phases: tiles are claimed, never assigned.
  PhaseRunner(PhaseShared& shared, TeamCall& call, int tid, int nth, bool caller)
      : sh_(shared), call_(call), tid_(tid % nth), nth_(nth), caller_(caller) {}

  // reversed: each share's tiles in the opposite order (the same tiles, so the same results);
  // time loops reverse every other step (reverse_tiles).
  template <class F>
  void run(long ntiles, F&& tile, bool reversed = false) {
    if (call_.stop.load(std::memory_order_relaxed)) return;
    reversed = reversed && g_alternate_tile_order.load(std::memory_order_relaxed);
    if (caller_) team_poll(call_);
    if (nth_ == 1 && call_.nslots == 1) {
      for (long i = 0; i < ntiles; ++i) tile(reversed ? ntiles - 1 - i : i);
      return;
    }
    const long waited = sh_.done.wait_at_least(finished_before_, call_.stop);
    if (caller_ && waited) team_caller_waited(call_, waited);
    for (int k = 0; k < nth_; ++k) {
      const int u = (tid_ + k) % nth_;  // own share first
      const long lo = ntiles * u / nth_, len = ntiles * (u + 1) / nth_ - lo;
      const long base = claimed_before_[u], limit = base + len;
      long* cursor = &sh_.cursor[u].value;
      long cur = __atomic_load_n(cursor, __ATOMIC_RELAXED), finished = 0;
      while (cur < limit) {
        if (__atomic_compare_exchange_n(cursor, &cur, cur + 1, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
          if (!caller_) {
            if (const int us = g_team_tile_delay_us.load(std::memory_order_relaxed)) team_test_delay(us);
          }
          tile(reversed ? lo + len - 1 - (cur - base) : lo + (cur - base));
          ++finished;
          cur = __atomic_load_n(cursor, __ATOMIC_RELAXED);
        }
      }
      // One increment per share, not per tile: the counter's cache line is what the waiting
      // threads spin on, and every write to it is a round trip between cores.
      if (finished) sh_.done.add(finished);
      claimed_before_[u] = limit;
    }
    finished_before_ += ntiles;
  }

 private:
  PhaseShared& sh_;
  TeamCall& call_;
  int tid_, nth_;
  bool caller_;
  long finished_before_ = 0;
  long claimed_before_[kMaxThreads] = {};
};

// Whether a step runs its tiles reversed: every other step (t: a time index or a backward loop's
// counter; forward adds a stream's slot parity, since a stream runs one step per call), when its
// rows fit one row block. Then the step reads each weight once, and where a thread's slice of the
// weights is larger than its cache, least-recently-used eviction drops every line just before the
// next step reads it; a reversed step starts on the lines the step before read last (LSTM B=1
// H=512, streams: 5-20% faster, benchmarks/tile_order.py). With several row blocks each panel
// serves several tiles in a row, and the forward order measured 2-3% faster (LSTM B=64-256).
static inline bool reverse_tiles(int t, int row_blocks, int first_slot = 0) {
  return row_blocks == 1 && ((t + first_slot) & 1) != 0;
}

// body(phases) on the team (team.h): the caller starts at once, workers join as they wake; the
// call returns once every participant has left, so every tile is then finished. Denormals are
// flushed inside. A team of one never leaves the calling thread.
template <class F>
static void in_team(TeamPlan plan, F&& body) {
  struct Ctx {
    F* body;
    PhaseShared shared;
  } ctx{&body, {}};
  team_run(plan, [](void* p, TeamCall& call, int slot) {
    Ctx& c = *static_cast<Ctx*>(p);
    DenormalGuard denormals;
    PhaseRunner phases(c.shared, call, slot, call.nslots, slot == 0);
    (*c.body)(phases);
  }, &ctx);
}

// Two independent jobs at once (the directions of a bidirectional layer), each on its own half of
// the team with its own phases: they never wait for each other, and each half keeps its own job's
// weights in its cores' caches. A participant helps the other job once its own is done, so the
// caller alone (or any one thread) completes both.
template <class F0, class F1>
static void in_two_teams(TeamPlan plan, F0&& job0, F1&& job1) {
  struct Ctx {
    F0* job0;
    F1* job1;
    PhaseShared shared[2];
  } ctx{&job0, &job1, {}};
  team_run(plan, [](void* p, TeamCall& call, int slot) {
    Ctx& c = *static_cast<Ctx*>(p);
    DenormalGuard denormals;
    const int n0 = (call.nslots + 1) / 2, n1 = call.nslots - n0 > 0 ? call.nslots - n0 : 1;
    const int first = slot < n0 ? 0 : 1;
    for (int k = 0; k < 2; ++k) {
      const int job = first ^ k;
      const int tid = job == 1 && slot >= n0 ? slot - n0 : slot;  // its own share, or a helper's guess
      PhaseRunner phases(c.shared[job], call, tid, job == 0 ? n0 : n1, slot == 0);
      if (job == 0) (*c.job0)(phases); else (*c.job1)(phases);
    }
  }, &ctx);
}
