// The thread team's side for another library's OpenMP runtime (team.h set_host_openmp):
// team.cpp runs long calls here while that runtime's threads are awake.
#pragma once

#include "team.h"

namespace rnnfast {

// Runs a call on the registered runtime's threads. False (the caller then uses our own team) when
// none is registered, another call is on them, one of them sleeps, or the runtime uses fewer
// threads than nslots.
bool run_on_host(int nslots, TeamBody body, void* ctx, TeamCall& call);

// In a forked child: the runtime's pool did not survive the fork (libgomp would wait for it).
void forget_host_openmp();

// team.cpp's counters of workers joining calls (team_stats); delay_ns since the post, or -1.
void count_join(long delay_ns = -1);

}  // namespace rnnfast
