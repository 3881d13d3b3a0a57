/*
 * procs.h - run one function in N processes that start together.
 *
 * Orchestration only: fork, a start barrier, collecting each child's figures
 * over a pipe, and reaping.  The timed loops live in the callers, so nothing
 * here runs while a measurement is taken.
 */
#ifndef GPUQ_BENCH_PROCS_H
#define GPUQ_BENCH_PROCS_H

#include <stddef.h>
#include <stdint.h>

#define PROCS_MAX 512

struct proc_result {
	int rc;             /* 0, or the gpuq error the child stopped on */
	int exit_status;    /* filled by procs_run: wait status of the child */
	uint64_t sent;      /* messages enqueued */
	uint64_t verified;  /* results checked and correct */
	uint64_t bad;       /* results that were wrong */
	uint64_t failed;    /* results with a non-zero status */
	double seconds;     /* from the first enqueue to the last result */
	double attach_us;   /* gpuq_connect + gpuq_open, if the caller timed it */
	char what[96];      /* first problem seen, for the report */
	int idx;            /* filled by procs_run: which child this is */
};

typedef int (*proc_fn)(int idx, void *arg, struct proc_result *out);

/* Fork n children, release them at once, run fn in each, collect results:
 * results[i] is child i's.  Returns 0 if every child exited 0 with rc 0,
 * else -1. */
int procs_run(int n, proc_fn fn, void *arg, struct proc_result *results);

/* procs_run, and while the children run call tick(tick_arg) in the parent
 * about every tick_ms (tick NULL: never). */
int procs_run_tick(int n, proc_fn fn, void *arg, struct proc_result *results,
		   void (*tick)(void *), void *tick_arg, int tick_ms);

/*
 * A one-shot barrier in memory shared by the children (see procs_shared):
 * each of n participants calls procs_gate_wait once, and all of them return
 * together when the last arrives.  Children that finish their setup at
 * different times (a CUDA context takes half a second, a gpuq attach well
 * under a millisecond) so start their timed loops at the same moment, and
 * a timed loop never includes anybody's setup.  A child whose setup failed
 * still calls it, so the others are not held up.
 */
struct procs_gate {
	uint32_t n;       /* participants */
	uint32_t arrived;
	uint32_t open;    /* futex word: 0 closed, 1 open */
	uint32_t pad;
	uint64_t t0_ns;   /* CLOCK_MONOTONIC when it opened */
};

void procs_gate_init(struct procs_gate *g, uint32_t n);
/* Wait for the others; returns when the gate opened (ns, CLOCK_MONOTONIC;
 * the same for every participant), or 0 if it did not open in timeout_ms. */
uint64_t procs_gate_wait(struct procs_gate *g, int timeout_ms);
/* t0_ns once the gate has opened, else 0.  Does not wait. */
uint64_t procs_gate_opened(const struct procs_gate *g);

/* Zeroed memory that the children of a later procs_run share with the
 * parent and each other; NULL on failure.  Free with procs_shared_free. */
void *procs_shared(size_t bytes);
void procs_shared_free(void *p, size_t bytes);

/* CLOCK_MONOTONIC in nanoseconds: one clock for every process. */
uint64_t procs_now_ns(void);

#endif
