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
 * Spin briefly (a wait that ends within a microsecond or two should not pay
 * for a sleep), then sleep with exponential backoff up to max_sleep_ns so a
 * waiter never burns a core.
 */
struct ipc_backoff {
	uint32_t spins;
	uint32_t sleep_ns;
	uint32_t max_sleep_ns;
};

#define IPC_BACKOFF_INIT(max_ns) { 0, 0, (max_ns) }

void ipc_backoff_wait(struct ipc_backoff *b);
static inline void ipc_backoff_reset(struct ipc_backoff *b)
{
	b->spins = 0;
	b->sleep_ns = 0;
}

#endif
