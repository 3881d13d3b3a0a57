/* clock.h - monotonic time and the backoff used by every wait in gpuq. */
#ifndef GPUQ_IPC_CLOCK_H
#define GPUQ_IPC_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t ipc_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/*
 * Spin first, then sleep with exponential backoff up to max_sleep_ns so a
 * long waiter never burns a core.
 *
 * Two kinds of waiter.  The broker's CPU workers spin 64 pauses, then
 * sleep: a worker that sleeps wakes to a batch of work, and one that spun
 * on the state words producers are writing slowed them down (15 -> 8M
 * msg/s on 2 vCPUs with a 50 us spin).  A producer waiting for a result
 * (IPC_BACKOFF_CLIENT_INIT) spins for a time instead: a GPU round trip
 * takes microseconds, and the first nanosleep costs ~50 us of timer slack,
 * so a waiter that slept after a few hundred nanoseconds turned a 10 us
 * answer into a 60 us one.  GPUQ_SPIN_US sets that spin (default 50).
 */
struct ipc_backoff {
	uint32_t spins;
	uint32_t sleep_ns;
	uint32_t max_sleep_ns;
	int timed_spin;         /* spin for GPUQ_SPIN_US, not 64 pauses */
	uint64_t spin_start_ns; /* 0 until the first wait */
};

#define IPC_BACKOFF_INIT(max_ns) { 0, 0, (max_ns), 0, 0 }
#define IPC_BACKOFF_CLIENT_INIT(max_ns) { 0, 0, (max_ns), 1, 0 }

void ipc_backoff_wait(struct ipc_backoff *b);
static inline void ipc_backoff_reset(struct ipc_backoff *b)
{
	b->spins = 0;
	b->sleep_ns = 0;
	b->spin_start_ns = 0;
}

#endif
