#include "team_host.h"

#include <algorithm>
#include <cstring>
#include <exception>
#include <mutex>
#include <string>
#include <vector>

#ifdef __linux__
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "cpu.h"

namespace rnnfast {
namespace {

using GompParallel = void (*)(void (*)(void*), void*, unsigned, unsigned);
using OmpInt = int (*)();
struct HostRuntime {
  GompParallel parallel = nullptr;
  OmpInt thread_num = nullptr, num_threads = nullptr, max_threads = nullptr;
};
std::atomic<HostRuntime*> g_host{nullptr};  // replaced, never freed: a call may still read the old one
// One call at a time on the host's threads, as on our own pool; a pointer, so that a forked child
// gets an unlocked one.
std::mutex* g_host_busy = new std::mutex;

// The host threads this thread's last region on runtime `of` ran on (the runtime keeps a pool
// per calling thread), as open /proc/self/task/<tid>/stat files. Another runtime registered since,
// or a fork (which forgets the runtime), makes them stale: they are learned again.
struct HostThreads {
  const HostRuntime* of = nullptr;
  std::vector<int> stat_fds;
  ~HostThreads() { forget(); }
  void forget() {
#ifdef __linux__
    for (int fd : stat_fds) close(fd);
#endif
    stat_fds.clear();
  }
  void learn(const HostRuntime* rt, const long* tids, int n) {
    forget();
    of = rt;
#ifdef __linux__
    for (int i = 0; i < n; ++i) {
      const std::string path = "/proc/self/task/" + std::to_string(tids[i]) + "/stat";
      const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) return forget();
      stat_fds.push_back(fd);
    }
#else
    (void)tids, (void)n;
#endif
  }
  // All known and running or runnable: spinning since the host's last region, so they start our
  // call at once. A sleeping one would take a wake-up, and on these VMs one often took an OS tick
  // (4 ms) while our own workers wake in ~30 us: such calls go to our own team.
  bool awake(const HostRuntime* rt) {
#ifdef __linux__
    if (of != rt) forget();
    if (stat_fds.empty()) return true;  // not known yet: learn them
    for (int fd : stat_fds) {
      char buf[512];
      const ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
      if (n <= 0) return forget(), true;  // the thread ended: learn the pool again
      buf[n] = '\0';
      const char* paren = std::strrchr(buf, ')');  // "tid (name) S ...": the name may hold anything
      if (!paren || paren[1] != ' ' || paren[2] != 'R') return false;
    }
    return true;
#else
    return false;
#endif
  }
};
thread_local HostThreads t_host_threads;

}  // namespace

bool run_on_host(int nslots, TeamBody body, void* ctx, TeamCall& call) {
  std::unique_lock<std::mutex> lock(*g_host_busy, std::try_to_lock);
  const HostRuntime* rt = g_host.load(std::memory_order_acquire);
  // A host using fewer threads than the call (torch.set_num_threads(1)) has no spinning pool to
  // use: our own team then.
  if (!lock.owns_lock() || !rt || rt->max_threads() < nslots || !t_host_threads.awake(rt)) return false;
  struct Host {
    TeamBody body;
    void* ctx;
    TeamCall* call;
    const HostRuntime* rt;
    WaitCounter arrived;  // threads of the region other than the caller that have started
    std::exception_ptr error;
    long tids[kMaxKernelThreads] = {};
  } host{body, ctx, &call, rt, {}, nullptr};
  call.nslots = nslots;
  rt->parallel([](void* p) {
    Host& h = *static_cast<Host*>(p);
    const int slot = h.rt->thread_num();
    if (slot > 0) {
#ifdef __linux__
      if (slot < kMaxKernelThreads) h.tids[slot] = static_cast<long>(syscall(SYS_gettid));
#endif
      h.arrived.add(1);
      if (slot >= h.call->nslots) return;
      count_join();
      h.body(h.ctx, *h.call, slot);  // a worker's tiles do not throw (as on our own pool)
      return;
    }
    try {  // never through the runtime's C frames: rethrown below
      h.body(h.ctx, *h.call, 0);
    } catch (...) {
      h.error = std::current_exception();
      h.call->stop.store(true, std::memory_order_seq_cst);  // workers waiting for tiles leave
    }
    // The region ends at a barrier for every thread it started, where the caller would spin
    // (libgomp: milliseconds) on the core a woken thread may be queued on: measured 4-8 ms for a
    // 0.5 ms call after an idle gap. Sleeping here instead leaves that core to the late thread.
    static const std::atomic<bool> never{false};
    h.arrived.wait_at_least(h.rt->num_threads() - 1, never);
  }, &host, static_cast<unsigned>(nslots), 0);
  if (t_host_threads.stat_fds.empty()) t_host_threads.learn(rt, host.tids + 1, std::min(nslots, kMaxKernelThreads) - 1);
  if (host.error) std::rethrow_exception(host.error);
  return true;
}

void forget_host_openmp() {
  g_host.store(nullptr, std::memory_order_release);
  g_host_busy = new std::mutex;  // the old one may have been held by a parent thread at the fork
}

void set_host_openmp(void* gomp_parallel, void* omp_get_thread_num, void* omp_get_num_threads,
                     void* omp_get_max_threads) {
  std::lock_guard<std::mutex> lock(*g_host_busy);  // not while a call runs on the old one
  HostRuntime* rt = nullptr;
  if (gomp_parallel && omp_get_thread_num && omp_get_num_threads && omp_get_max_threads)
    rt = new HostRuntime{reinterpret_cast<GompParallel>(gomp_parallel), reinterpret_cast<OmpInt>(omp_get_thread_num),
                         reinterpret_cast<OmpInt>(omp_get_num_threads), reinterpret_cast<OmpInt>(omp_get_max_threads)};
  g_host.store(rt, std::memory_order_release);
}

bool host_openmp() { return g_host.load(std::memory_order_acquire) != nullptr; }

}  // namespace rnnfast
