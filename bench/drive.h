/*
 * drive.h - the pipelined producer loop on a gpuq queue, shared by
 * gpuq-bench, gpuq-demo and the multi-process tests: keep up to `window`
 * messages in flight, enqueue in batches, poll completions, check every
 * result.  It is bench/loop.c with gpuq as the port.
 */
#ifndef GPUQ_BENCH_DRIVE_H
#define GPUQ_BENCH_DRIVE_H

#include <stddef.h>
#include <stdint.h>

#include "bench/hist.h"
#include "bench/loop.h"
#include "bench/procs.h"
#include "libclient/gpuq.h"

struct drive_spec {
	uint64_t count;  /* messages to send (0: until stop_ns) */
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
	int spin;          /* busy-poll (loop.h) */
	/* Optional; zero leaves each off (see loop.h). */
	struct hist *lat;   /* record every message's latency, ns */
	double rate;        /* open loop at this many messages/s */
	uint64_t start_ns;  /* time origin (procs_now_ns); 0 = now */
	uint64_t stop_ns;   /* send nothing intended at or after this */
	uint64_t *progress; /* completions so far, for a display */
};

/* Run the loop on q; adds to out->sent/verified/bad/failed and sets
 * out->seconds (and *end_ns, the time of the last result, if not NULL).
 * Returns 0 or the gpuq error that stopped it. */
int drive_until(gpuq_queue *q, const struct drive_spec *s,
		struct proc_result *out, uint64_t *end_ns);
int drive(gpuq_queue *q, const struct drive_spec *s, struct proc_result *out);

#endif
