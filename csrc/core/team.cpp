#include "team.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <ctime>
#include <mutex>
#include <thread>
#include <vector>

#include <pthread.h>
#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "cpu.h"
#include "team_host.h"

namespace rnnfast {
namespace {

long now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void futex_wait(std::atomic<uint32_t>* word, uint32_t expected) {
#ifdef __linux__
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT_PRIVATE, expected, nullptr, nullptr, 0);
#else
  if (word->load() == expected) std::this_thread::sleep_for(std::chrono::microseconds(50));
#endif
}

// As futex_wait, for at most timeout_ns.
void futex_wait_for(std::atomic<uint32_t>* word, uint32_t expected, long timeout_ns) {
#ifdef __linux__
  timespec ts{static_cast<time_t>(timeout_ns / 1000000000L), static_cast<long>(timeout_ns % 1000000000L)};
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT_PRIVATE, expected, &ts, nullptr, 0);
#else
  if (word->load() == expected) std::this_thread::sleep_for(std::chrono::nanoseconds(std::min(timeout_ns, 50000L)));
#endif
}

void futex_wake(std::atomic<uint32_t>* word, int n) {
#ifdef __linux__
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE_PRIVATE, n, nullptr, nullptr, 0);
#else
  (void)word, (void)n;
#endif
}

// Spin-time budget before sleeping; set by the calibration (a sleep/wake round trip costs about
// that much, so spinning longer would waste more than it could save).
std::atomic<long> g_spin_ns{20000};
// How long idle workers spin after a call before they sleep: the calibrated budget, unless the
// user asked for more (set_idle_spin_ns, RNNFAST_IDLE_SPIN_US) to keep them awake between sparse
// latency-critical calls, at the price of a busy core.
std::atomic<long> g_idle_spin_ns{-1};  // -1: not chosen yet (read the environment); 0: calibrated

long idle_spin_budget() {
  long v = g_idle_spin_ns.load(std::memory_order_relaxed);
  if (v < 0) {
    v = 0;
    if (const char* env = std::getenv("RNNFAST_IDLE_SPIN_US")) {
      char* end = nullptr;
      const double us = std::strtod(env, &end);
      if (end != env && *end == '\0' && us >= 0 && us <= 1e7) v = static_cast<long>(us * 1000.0);
    }
    long expected = -1;
    g_idle_spin_ns.compare_exchange_strong(expected, v, std::memory_order_relaxed);
    v = g_idle_spin_ns.load(std::memory_order_relaxed);
  }
  const long calibrated = g_spin_ns.load(std::memory_order_relaxed);
  return v > calibrated ? v : calibrated;
}

// Spins until pred() or budget ns (default: the calibrated spin time) have passed; true if pred() held.
template <class P>
bool spin_until(P&& pred, long budget = -1) {
  if (budget < 0) budget = g_spin_ns.load(std::memory_order_relaxed);
  long start = 0;
  for (int i = 0;; ++i) {
    if (pred()) return true;
    cpu_relax();
    if ((i & 31) == 31) {
      const long t = now_ns();
      if (!start) start = t;
      else if (t - start > budget) return false;
    }
  }
}

std::atomic<int> g_force_threads{0}, g_join_delay_us{0};  // test hooks
std::atomic<long> g_joins{0};
std::atomic<bool> g_prewake{true};  // set_prewake

// The counters behind team_stats.
struct Stats {
  std::atomic<long> calls{0}, alone{0}, host{0}, joins{0}, waits{0}, wait_ns{0}, max_wait_ns{0};
  std::atomic<long> prewakes{0}, prewake_hits{0};
  std::atomic<long> wait_hist[6] = {}, join_hist[6] = {};
};
Stats g_stats;

int log10_bucket(long ns) {  // < 1 us, < 10 us, < 100 us, < 1 ms, < 10 ms, longer
  int bucket = 0;
  for (long limit = 1000; bucket < 5 && ns >= limit; limit *= 10) ++bucket;
  return bucket;
}

constexpr uint64_t kClosed = 1ull << 31, kActiveMask = kClosed - 1;

// The workers and the one call they serve at a time (a second concurrent call runs on its caller
// alone). Never destroyed: workers may still be asleep in it at exit.
struct Pool {
  std::mutex submit;
  std::atomic<uint32_t> job_seq{0};   // bumped per posted call; workers sleep on it
  std::atomic<int> idle_sleepers{0};
  std::atomic<uint64_t> join{0};      // [call seq : 32][closed : 1][participants inside : 31]
  std::atomic<int> next_slot{1};
  int nslots = 1;
  TeamBody body = nullptr;
  void* ctx = nullptr;
  TeamCall* call = nullptr;
  std::atomic<uint32_t> left_seq{0};  // bumped when the last participant leaves a closed call
  std::atomic<int> caller_waiting{0};
  int nworkers = 0;
  std::atomic<long> last_end{0};  // when the previous call on the pool ended
  std::atomic<long> posted_at{0};  // when the current call was posted
  // Calibration hooks: a worker stamps the time it woke.
  std::atomic<long> woke_at{0};
  // Periodic calls (a server answering every 20 ms): when the next is expected, so that idle
  // workers wake a little before it. Woken by the call itself, a worker on the VMs seen here
  // often arrived 0.1-10 ms late (the vCPU's wake-up), later than a whole B=1 call lasts.
  std::atomic<long> next_call_at{0};  // 0: the calls are not periodic
  std::atomic<long> lead_ns{0};       // wake that long before it, and spin up to twice that
  std::atomic<int> prewake_workers{0};  // the workers those calls use
  long starts[4] = {};                // the last calls' starts (under the submit lock)
};

// Under the submit lock, for each call worth waking workers for: four starts at a steady period
// between 2 and 200 ms (two of the three intervals within 1/8 of their median) predict the next.
void predict_next_call(Pool* P, long t, int nslots) {
  P->prewake_workers.store(nslots - 1, std::memory_order_relaxed);
  std::copy(P->starts + 1, P->starts + 4, P->starts);
  P->starts[3] = t;
  long d[3] = {P->starts[1] - P->starts[0], P->starts[2] - P->starts[1], P->starts[3] - P->starts[2]};
  long sorted[3] = {d[0], d[1], d[2]};
  std::sort(sorted, sorted + 3);
  const long period = sorted[1];
  int agree = 0;  // intervals within 1/8 of the median (itself included): one outlier (a GC pause) is allowed
  for (long x : d) agree += std::labs(x - period) * 8 <= period;
  const bool steady = P->starts[0] > 0 && period >= 2000000L && period <= 200000000L && agree >= 2;
  P->lead_ns.store(std::clamp(period / 8, 1000000L, 4000000L), std::memory_order_relaxed);
  P->next_call_at.store(steady ? t + period : 0, std::memory_order_release);
}

std::atomic<Pool*> g_pool{nullptr};
std::once_flag g_atfork_once;
std::mutex* g_costs_lock = new std::mutex;  // a pointer, so that a forked child gets an unlocked one

void leave(Pool* P) {
  const uint64_t j = P->join.fetch_sub(1, std::memory_order_seq_cst) - 1;
  if ((j & kClosed) && (j & kActiveMask) == 0) {
    P->left_seq.fetch_add(1, std::memory_order_seq_cst);
    if (P->caller_waiting.load(std::memory_order_seq_cst)) futex_wake(&P->left_seq, 1);
  }
}

void worker_main(Pool* P, int index) {
  uint32_t seen = P->job_seq.load(std::memory_order_acquire);
  for (;;) {
    auto posted = [&] { return P->job_seq.load(std::memory_order_acquire) != seen; };
    if (!spin_until(posted, idle_spin_budget())) {
      P->idle_sleepers.fetch_add(1, std::memory_order_seq_cst);
      bool early = false;  // woke before an expected call and caught it spinning
      for (;;) {
        // Only as many workers as the periodic calls use wake early.
        const bool mine = g_prewake.load(std::memory_order_relaxed) && index < P->prewake_workers.load();
        const long next = mine ? P->next_call_at.load(std::memory_order_acquire) : 0;
        const long lead = P->lead_ns.load(std::memory_order_relaxed);
        const long t = now_ns();
        if (next && next - lead > t) {
          futex_wait_for(&P->job_seq, seen, next - lead - t);
          if (posted()) break;
          if (now_ns() < next - lead || !g_prewake.load(std::memory_order_relaxed)) continue;  // a signal, or turned off
          P->idle_sleepers.fetch_sub(1, std::memory_order_seq_cst);
          g_stats.prewakes.fetch_add(1, std::memory_order_relaxed);
          early = spin_until(posted, 2 * lead);
          P->idle_sleepers.fetch_add(1, std::memory_order_seq_cst);
          if (early) break;
          long expected = next;  // it did not come: no more early wake-ups until calls are steady again
          P->next_call_at.compare_exchange_strong(expected, 0);
          continue;
        }
        if (posted()) break;
        futex_wait(&P->job_seq, seen);
        if (posted()) break;
      }
      P->idle_sleepers.fetch_sub(1, std::memory_order_seq_cst);
      if (early) g_stats.prewake_hits.fetch_add(1, std::memory_order_relaxed);
      else P->woke_at.store(now_ns(), std::memory_order_relaxed);
    }
    seen = P->job_seq.load(std::memory_order_acquire);
    if (const int us = g_join_delay_us.load(std::memory_order_relaxed)) team_test_delay(us);
    uint64_t j = P->join.load(std::memory_order_acquire);
    bool joined = false;
    while ((j >> 32) == seen && !(j & kClosed)) {
      if (P->join.compare_exchange_weak(j, j + 1, std::memory_order_acq_rel)) {
        joined = true;
        break;
      }
    }
    if (!joined) continue;
    const int slot = P->next_slot.fetch_add(1, std::memory_order_relaxed);
    if (slot < P->nslots) {
      count_join(now_ns() - P->posted_at.load(std::memory_order_relaxed));
      P->body(P->ctx, *P->call, slot);
    }
    leave(P);
  }
}

void reset_after_fork() {
  // Only the forking thread exists in the child: a fresh, empty pool (the old one may be locked
  // by a call another parent thread was making). Its workers start on first use. A host OpenMP
  // runtime's pool did not survive the fork either (libgomp would wait for its lost threads).
  forget_host_openmp();
  g_pool.store(new Pool, std::memory_order_release);
  g_costs_lock = new std::mutex;
}

Pool* pool() {
  Pool* P = g_pool.load(std::memory_order_acquire);
  if (P) return P;
  std::call_once(g_atfork_once, [] {
    pthread_atfork(nullptr, nullptr, reset_after_fork);
    Pool* fresh = new Pool;
    Pool* expected = nullptr;
    if (!g_pool.compare_exchange_strong(expected, fresh)) delete fresh;
  });
  return g_pool.load(std::memory_order_acquire);
}

// Under the submit lock.
void ensure_workers(Pool* P, int n) {
  while (P->nworkers < n) {
    std::thread(worker_main, P, P->nworkers).detach();
    ++P->nworkers;
  }
}

// Runs `plan` on the pool; false if the pool is busy with another call.
bool run_on_pool(Pool* P, int nslots, bool wake, TeamBody body, void* ctx, TeamCall& call) {
  std::unique_lock<std::mutex> lock(P->submit, std::try_to_lock);
  if (!lock.owns_lock()) return false;
  ensure_workers(P, nslots - 1);
  call.nslots = nslots;
  P->nslots = nslots;
  P->body = body;
  P->ctx = ctx;
  P->call = &call;
  P->next_slot.store(1, std::memory_order_relaxed);
  const uint32_t seq = P->job_seq.load(std::memory_order_relaxed) + 1;
  P->join.store(static_cast<uint64_t>(seq) << 32, std::memory_order_release);
  const long posted = now_ns();
  P->posted_at.store(posted, std::memory_order_relaxed);
  P->job_seq.store(seq, std::memory_order_seq_cst);
  if (wake && g_prewake.load(std::memory_order_relaxed)) predict_next_call(P, posted, nslots);
  // A short call may wake sleepers too when calls follow each other closer than the spin time:
  // once awake, the workers then stay spinning from one call to the next (stream steps).
  if (!wake) wake = posted - P->last_end.load(std::memory_order_relaxed) < idle_spin_budget();
  if (wake && P->idle_sleepers.load(std::memory_order_seq_cst) > 0) futex_wake(&P->job_seq, nslots - 1);

  struct CloseOnExit {  // also when the caller's body throws: workers must be out before we return
    Pool* P;
    TeamCall& call;
    ~CloseOnExit() {
      uint64_t j = P->join.fetch_or(kClosed, std::memory_order_seq_cst) | kClosed;
      if ((j & kActiveMask) == 0) return;
      const long t0 = now_ns();
      struct AddWait {
        TeamCall& call;
        long t0;
        ~AddWait() { call.wait_ns += now_ns() - t0; }
      } add{call, t0};
      if (spin_until([&] { return (P->join.load(std::memory_order_acquire) & kActiveMask) == 0; })) return;
      P->caller_waiting.store(1, std::memory_order_seq_cst);
      for (;;) {
        const uint32_t left = P->left_seq.load(std::memory_order_seq_cst);
        if ((P->join.load(std::memory_order_seq_cst) & kActiveMask) == 0) break;
        futex_wait(&P->left_seq, left);
      }
      P->caller_waiting.store(0, std::memory_order_relaxed);
    }
  } close{P, call};
  struct StampEnd {
    Pool* P;
    ~StampEnd() { P->last_end.store(now_ns(), std::memory_order_relaxed); }
  } stamp{P};
  body(ctx, call, 0);
  return true;
}

// Load backoff, per size class of call: a multi-thread call in which the caller spent a third of its time waiting for
// tiles held by others (a descheduled worker) would have been as fast alone; after two, calls run
// on one thread for a while and for a number of calls (both doubling while it recurs, up to
// ~2.6 s and 256 calls: sparse calls, e.g. one every 20 ms, outlast any time window), then the
// team is tried again.
// One stall alone is not load: an interrupt, or the hypervisor taking the worker's vCPU once,
// happens on an idle machine too (it sent one fresh process in four or five to one thread for
// seconds). Two stalls among the last eight team calls of a class are.
struct alignas(64) Backoff {
  std::atomic<long> alone_until{0}, alone_calls{0}, last_stall{0};
  std::atomic<int> level{0};
  std::atomic<unsigned> recent{0};  // a bit per team call of this class, newest lowest: 1 = stalled
};
Backoff g_backoff[kTeamSizeClasses];

void record_call(Backoff& b, const TeamCall& call, long elapsed_ns) {
  const long t = now_ns();
  const bool stalled = call.wait_ns * 3 > elapsed_ns && elapsed_ns > 20000;
  const unsigned recent = ((b.recent.load(std::memory_order_relaxed) << 1) | (stalled ? 1u : 0u)) & 0xFFu;
  b.recent.store(recent, std::memory_order_relaxed);
  if (stalled && __builtin_popcount(recent) >= 2) {
    const int level = std::min(b.level.load(std::memory_order_relaxed) + 1, 8);
    b.level.store(level, std::memory_order_relaxed);
    b.alone_until.store(t + (10000000L << level), std::memory_order_relaxed);
    b.alone_calls.store(1L << level, std::memory_order_relaxed);
    b.last_stall.store(t, std::memory_order_relaxed);
  } else if (!stalled && t - b.last_stall.load(std::memory_order_relaxed) > 1000000000L) {
    const int level = b.level.load(std::memory_order_relaxed);
    if (level > 0) b.level.store(level - 1, std::memory_order_relaxed);
  }
}

bool alone_now(Backoff& b) {
  if (now_ns() < b.alone_until.load(std::memory_order_relaxed)) return true;
  return b.alone_calls.load(std::memory_order_relaxed) > 0 && b.alone_calls.fetch_sub(1, std::memory_order_relaxed) > 0;
}

thread_local CancelScope* t_scope = nullptr;
thread_local long t_last_poll = 0;

}  // namespace

void count_join(long delay_ns) {
  g_joins.fetch_add(1, std::memory_order_relaxed);
  g_stats.joins.fetch_add(1, std::memory_order_relaxed);
  if (delay_ns >= 0) g_stats.join_hist[log10_bucket(delay_ns)].fetch_add(1, std::memory_order_relaxed);
}

void WaitCounter::add(long n) {
  value.fetch_add(n, std::memory_order_seq_cst);
  if (sleepers.load(std::memory_order_seq_cst) > 0) {
    seq.fetch_add(1, std::memory_order_seq_cst);
    futex_wake(&seq, 1 << 30);
  }
}

long WaitCounter::wait_at_least(long target, const std::atomic<bool>& stop) {
  auto ready = [&] { return value.load(std::memory_order_acquire) >= target || stop.load(std::memory_order_relaxed); };
  if (ready()) return 0;
  const long t0 = now_ns();
  if (!spin_until(ready)) {
    sleepers.fetch_add(1, std::memory_order_seq_cst);
    for (;;) {
      const uint32_t s = seq.load(std::memory_order_seq_cst);
      if (value.load(std::memory_order_seq_cst) >= target || stop.load(std::memory_order_seq_cst)) break;
      futex_wait(&seq, s);
    }
    sleepers.fetch_sub(1, std::memory_order_seq_cst);
  }
  return now_ns() - t0;
}

void team_caller_waited(TeamCall& call, long waited_ns) {
  call.wait_ns += waited_ns;
  g_stats.waits.fetch_add(1, std::memory_order_relaxed);
  g_stats.wait_ns.fetch_add(waited_ns, std::memory_order_relaxed);
  long longest = g_stats.max_wait_ns.load(std::memory_order_relaxed);
  while (waited_ns > longest &&
         !g_stats.max_wait_ns.compare_exchange_weak(longest, waited_ns, std::memory_order_relaxed)) {
  }
  g_stats.wait_hist[log10_bucket(waited_ns)].fetch_add(1, std::memory_order_relaxed);
}

TeamStats team_stats(bool reset) {
  auto take = [reset](std::atomic<long>& a) { return reset ? a.exchange(0) : a.load(); };
  TeamStats s;
  s.calls = take(g_stats.calls);
  s.alone = take(g_stats.alone);
  s.host = take(g_stats.host);
  s.joins = take(g_stats.joins);
  s.waits = take(g_stats.waits);
  s.wait_ns = take(g_stats.wait_ns);
  s.max_wait_ns = take(g_stats.max_wait_ns);
  for (int i = 0; i < 6; ++i) s.wait_hist[i] = take(g_stats.wait_hist[i]);
  for (int i = 0; i < 6; ++i) s.join_hist[i] = take(g_stats.join_hist[i]);
  s.prewakes = take(g_stats.prewakes);
  s.prewake_hits = take(g_stats.prewake_hits);
  return s;
}

CancelScope::CancelScope(bool (*p)(void*), void* c) : poll(p), ctx(c), outer(t_scope) {
  t_scope = this;
  t_last_poll = now_ns();
}
CancelScope::~CancelScope() { t_scope = outer; }

void team_poll(TeamCall& call) {
  if (!t_scope || call.stop.load(std::memory_order_relaxed)) return;
  const long t = now_ns();
  if (t - t_last_poll < 20000000L) return;
  t_last_poll = t;
  if (t_scope->poll(t_scope->ctx)) call.stop.store(true, std::memory_order_seq_cst);
}

void team_run(TeamPlan plan, TeamBody body, void* ctx) {
  TeamCall call;
  const int forced = g_force_threads.load(std::memory_order_relaxed);
  int n = forced ? forced : std::max(1, plan.threads);
  Backoff& backoff = g_backoff[std::clamp(plan.size_class, 0, kTeamSizeClasses - 1)];
  if (n > 1) g_stats.calls.fetch_add(1, std::memory_order_relaxed);
  if (n > 1 && !forced && alone_now(backoff)) n = 1;
  if (n > 1 && !forced && plan.wake && host_openmp()) {
    const long t0 = now_ns();
    if (run_on_host(n, body, ctx, call)) {
      record_call(backoff, call, now_ns() - t0);
      g_stats.host.fetch_add(1, std::memory_order_relaxed);
      n = 0;
    }
  }
  if (n > 1) {
    team_costs();  // calibrate before the first team call
    const long t0 = now_ns();
    if (run_on_pool(pool(), n, plan.wake || forced, body, ctx, call)) {
      record_call(backoff, call, now_ns() - t0);
      n = 0;
    } else {
      n = 1;
    }
  }
  if (n == 1) {
    if (plan.threads > 1 || forced > 1) g_stats.alone.fetch_add(1, std::memory_order_relaxed);
    body(ctx, call, 0);
  }
  if (call.stop.load()) throw Cancelled{};
}

namespace {

// Hand-offs between the caller and one spinning worker, and a sleeping worker's wake-up time.
TeamCosts calibrate() {
  TeamCosts c;
  Pool* P = pool();
  // Never wait for the pool here: this may run with the GIL held (cpu_info, Stream), while the
  // call in the pool may be waiting for the GIL to poll for Ctrl-C. Busy: no sample this time.
  std::unique_lock<std::mutex> lock(P->submit, std::try_to_lock);
  if (!lock.owns_lock()) return c;
  ensure_workers(P, 1);
  lock.unlock();
  struct PingPong {
    std::atomic<long> turn{0};
    std::atomic<bool> abort{false};  // one side was descheduled: this sample says nothing
    long rounds = 200;
  } pp;
  auto ping = [](void* p, TeamCall&, int slot) {
    auto* s = static_cast<PingPong*>(p);
    const long give_up = now_ns() + 1000000L;
    for (long r = slot; r < 2 * s->rounds; r += 2) {
      for (int i = 0; s->turn.load(std::memory_order_acquire) != r; ++i) {
        if (s->abort.load(std::memory_order_relaxed)) return;
        if ((i & 255) == 255 && slot == 0 && now_ns() > give_up) {
          s->abort.store(true);
          return;
        }
        cpu_relax();
      }
      s->turn.store(r + 1, std::memory_order_release);
    }
  };
  // Not a tiled body: the caller waits (boundedly) for the worker it woke, then they alternate.
  double best_sync = 1e9;
  std::vector<double> wakes;
  const long deadline = now_ns() + 30000000L;  // a loaded machine gets fewer samples, not a slow start
  for (int rep = 0; rep < 5; ++rep) {
    // Wake-up: wait until the worker sleeps, then time a post until it stamps its wake.
    while (P->idle_sleepers.load() < 1 && now_ns() < deadline) std::this_thread::sleep_for(std::chrono::microseconds(100));
    if (P->idle_sleepers.load() < 1) break;
    pp.turn.store(0);
    pp.abort.store(false);
    TeamCall call;
    struct Ctx {
      PingPong* pp;
      void (*ping)(void*, TeamCall&, int);
      long t_post, t_start, t_end;
      std::atomic<int> joined{0};
    } cx{&pp, ping, 0, 0, 0};
    auto body = [](void* p, TeamCall& call, int slot) {
      auto* x = static_cast<Ctx*>(p);
      if (slot == 0) {
        const long give_up = now_ns() + 20000000L;
        while (!x->joined.load(std::memory_order_acquire)) {
          cpu_relax();
          if (now_ns() > give_up) {  // never woke in time: no sample (a late worker skips the ping)
            x->pp->abort.store(true);
            return;
          }
        }
        x->t_start = now_ns();
        x->ping(x->pp, call, 0);
        x->t_end = now_ns();
      } else {
        x->joined.store(1, std::memory_order_release);
        x->ping(x->pp, call, 1);
      }
    };
    P->woke_at.store(0);
    cx.t_post = now_ns();
    if (!run_on_pool(P, 2, true, body, &cx, call)) break;
    const long woke = P->woke_at.load();
    if (!cx.joined.load()) break;
    if (woke > cx.t_post) wakes.push_back(static_cast<double>(woke - cx.t_post));
    if (!pp.abort.load())
      best_sync = std::min(best_sync, static_cast<double>(cx.t_end - cx.t_start) / (2.0 * pp.rounds));
  }
  if (wakes.empty() || best_sync == 1e9) return c;
  // The fastest samples: what the machine can do; load only adds to them.
  c.sync_ns = best_sync;
  c.wake_ns = *std::min_element(wakes.begin(), wakes.end());
  c.spin_ns = std::clamp(c.wake_ns, 5000.0, 100000.0);
  c.samples = static_cast<int>(wakes.size());
  c.measured = true;
  return c;
}

}  // namespace

namespace {
TeamCosts g_costs;  // guarded by *g_costs_lock
std::atomic<int> g_fail_calibrations{0};  // test hook: that many attempts find no worker to time
std::atomic<bool> g_costs_final{false};
int g_attempts = 0;
long g_next_attempt = 0;
}  // namespace

TeamCosts team_costs() {
  if (g_costs_final.load(std::memory_order_acquire)) return g_costs;
  pool();  // registers the fork handler before the lock can be held
  std::lock_guard<std::mutex> lock(*g_costs_lock);
  if (g_costs_final.load(std::memory_order_relaxed)) return g_costs;
  const long t = now_ns();
  if (g_attempts == 0 || (t >= g_next_attempt && g_attempts < 5)) {
    // A machine busy at that moment gives too few samples: keep what is known, retry a few
    // times, at least a second apart, before settling.
    ++g_attempts;
    const TeamCosts c = g_fail_calibrations.load() > 0 ? (g_fail_calibrations.fetch_sub(1), TeamCosts{}) : calibrate();
    // Unmeasured (no worker could be timed yet): try again soon, not after a second of calls
    // planned on guesses.
    g_next_attempt = now_ns() + (c.measured || g_costs.measured ? 1000000000L : 100000000L);
    if (c.measured && (!g_costs.measured || c.samples > g_costs.samples)) g_costs = c;
    if (!g_costs.measured) {  // no worker could be timed (e.g. one CPU): assume costly hand-offs
      g_costs.sync_ns = 250;
      g_costs.wake_ns = 50000;
      g_costs.spin_ns = 20000;
    }
    g_spin_ns.store(static_cast<long>(g_costs.spin_ns));
    if (g_costs.samples >= 3 || g_attempts >= 5) g_costs_final.store(true, std::memory_order_release);
  }
  return g_costs;
}

TeamPlan plan_team(double step_ns, long steps, long max_tiles) {
  TeamPlan plan;
  const int limit = num_threads();
  if (limit <= 1 || max_tiles <= 1) return plan;
  const TeamCosts c = team_costs();
  // Each extra thread must save at least 4 hand-offs' worth of each step.
  const double per_thread = 4.0 * c.sync_ns;
  const long useful = static_cast<long>(step_ns / per_thread);
  plan.threads = static_cast<int>(std::max(1L, std::min({static_cast<long>(limit), max_tiles, useful})));
  // Waking a sleeper pays only if the call lasts well past its arrival.
  const double call_ns = step_ns * static_cast<double>(steps);
  plan.wake = call_ns > 2.0 * c.wake_ns;
  plan.size_class = std::clamp(static_cast<int>(std::log2(std::max(call_ns / 1000.0, 1.0))), 0, kTeamSizeClasses - 1);
  return plan;
}

std::atomic<int> g_team_tile_delay_us{0};
std::atomic<bool> g_alternate_tile_order{true};

bool set_alternate_tile_order(bool on) { return g_alternate_tile_order.exchange(on); }

void team_test_delay(int us) { std::this_thread::sleep_for(std::chrono::microseconds(us)); }

std::vector<int> simulate_backoff(const std::vector<int>& stalled) {
  Backoff b;
  std::vector<int> alone;
  for (int s : stalled) {
    alone.push_back(alone_now(b));
    if (alone.back()) continue;  // a call on one thread records nothing
    TeamCall call;
    call.wait_ns = s ? 900000 : 0;
    record_call(b, call, 1000000);
  }
  return alone;
}

bool set_prewake(bool on) { return g_prewake.exchange(on); }
bool prewake() { return g_prewake.load(); }

void set_idle_spin_ns(long ns) { g_idle_spin_ns.store(std::max(0L, ns), std::memory_order_relaxed); }
long idle_spin_ns() { return idle_spin_budget(); }

void fail_next_calibrations(int n) { g_fail_calibrations.store(std::max(0, n)); }

long set_team_testing(int force_threads, int join_delay_us, int tile_delay_us) {
  g_force_threads.store(std::clamp(force_threads, 0, kMaxKernelThreads));
  g_join_delay_us.store(std::max(0, join_delay_us));
  g_team_tile_delay_us.store(std::max(0, tile_delay_us));
  return g_joins.load();
}

}  // namespace rnnfast
