/*
 * procs.h - run one function in N producer processes that start together.
 *
 * Orchestration only: fork, a start barrier, collecting each child's figures
 * over a pipe, and reaping.  The timed loops live in the callers, so nothing
 * here runs while a measurement is taken.
 */
#ifndef GPUQ_BENCH_PROCS_H
#define GPUQ_BENCH_PROCS_H

#include <stdint.h>

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
};

typedef int (*proc_fn)(int idx, void *arg, struct proc_result *out);

/* Fork n children, release them at once, run fn in each, collect results
 * (results[n]).  Returns 0 if every child exited 0 with rc 0, else -1. */
int procs_run(int n, proc_fn fn, void *arg, struct proc_result *results);

#endif
