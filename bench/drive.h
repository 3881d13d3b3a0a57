/*
 * drive.h - the pipelined producer loop shared by gpuq-bench, gpuq-demo and
 * the multi-process tests: keep up to `window` messages in flight, enqueue
 * in batches, poll completions, check every result.
 */
#ifndef GPUQ_BENCH_DRIVE_H
#define GPUQ_BENCH_DRIVE_H

#include <stddef.h>
#include <stdint.h>

#include "bench/procs.h"
#include "libclient/gpuq.h"

struct drive_spec {
	uint64_t count;  /* messages to send */
	uint32_t batch;  /* messages per enqueue call */
	uint32_t window; /* most in flight (<= the queue's cq_capacity) */
	int zero_copy;   /* reserve/commit instead of copying enqueue */
	/* Write message seq into buf (cap bytes); return its length. */
	size_t (*fill)(void *ctx, uint64_t seq, void *buf, size_t cap);
	/* 1 if (status, result) is right for message seq.  NULL: count
	 * completions without checking. */
	int (*check)(void *ctx, uint64_t seq, int status, const void *res,
		     size_t len);
	void *ctx;
	uint32_t stall_ms; /* no progress for this long is an error (10000) */
};

/* Run the loop on q; adds to out->sent/verified/bad/failed and sets
 * out->seconds.  Returns 0 or the gpuq error that stopped it. */
int drive(gpuq_queue *q, const struct drive_spec *s, struct proc_result *out);

#endif
