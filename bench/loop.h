/*
 * loop.h - the timed producer loop, the same for gpuq and for every
 * baseline, so that they are measured by one method.
 *
 * A system plugs in as a port: send() hands it messages seq..seq+k-1 and
 * poll() reports completions.  The loop keeps at most `window` messages in
 * flight and sends in batches of up to `batch`, either as fast as
 * completions allow (closed loop) or on a fixed schedule (open loop), and
 * records each message's latency in a histogram.
 *
 * Latency is measured from a message's *intended* send time: in the open
 * loop that is its slot in the schedule (start + seq / rate), not the moment
 * the loop got round to sending it, so a stall that delays sending is
 * charged to every message it delayed (the correction for coordinated
 * omission).  In the closed loop there is no schedule, and the reference is
 * the moment the message's batch was handed to the port.  Clocks are read
 * once per send call and once per poll that returned completions, so the
 * per-message cost is a histogram update.
 */
#ifndef GPUQ_BENCH_LOOP_H
#define GPUQ_BENCH_LOOP_H

#include <stddef.h>
#include <stdint.h>

#include "bench/hist.h"
#include "bench/procs.h"

/* A completion whose message the port cannot name (the Redis baseline
 * counts acknowledgements): counted, but has no latency and no check. */
#define LOOP_SEQ_ANON UINT64_MAX
#define LOOP_POLL_MAX 256

struct loop_done {
	uint64_t seq;
	int32_t status;     /* 0, or the system's failure code */
	uint32_t len;
	const void *res;    /* valid until the port's next call */
};

struct loop_port {
	/* Send messages seq .. seq+k-1.  stamp_ns[i] is message seq+i's
	 * reference time (a port that must carry it, like the Redis one, puts
	 * it in the payload).  Returns how many it took (0: no room now, try
	 * later), or a negative error with the reason in out->what. */
	int (*send)(void *ctx, uint64_t seq, uint32_t k,
		    const uint64_t *stamp_ns, struct proc_result *out);
	/* Report up to max completions not reported before, in any order.
	 * Returns the count or a negative error. */
	int (*poll)(void *ctx, struct loop_done *done, uint32_t max,
		    struct proc_result *out);
	void *ctx;
};

struct loop_spec {
	uint64_t count;      /* messages to send; 0 = no limit (use stop_ns) */
	uint64_t start_ns;   /* time origin (procs_now_ns); 0 = when called */
	uint64_t stop_ns;    /* send nothing intended at/after this; 0 = none */
	double rate;         /* open loop: messages/s; 0 = closed loop */
	uint32_t batch;      /* most messages per send */
	uint32_t window;     /* most messages in flight */
	uint32_t stall_ms;   /* no progress this long is an error (10000) */
	int spin;            /* 1: poll again at once when nothing happened;
				0: sched_yield() first */
	/* 1 if (status, result) is right for message seq; NULL: no check. */
	int (*check)(void *ctx, uint64_t seq, int status, const void *res,
		     size_t len);
	void *check_ctx;
	struct hist *lat;    /* NULL: do not record latency */
	uint64_t *progress;  /* completions so far, for a display; or NULL */
};

/*
 * Run until every message sent has completed.  Adds to out->sent,
 * ->verified (checked and right, or all completions without a check),
 * ->bad and ->failed; sets out->seconds (start_ns to the last completion)
 * and *end_ns when not NULL.  Returns 0 or the error that stopped it.
 */
int loop_run(const struct loop_port *p, const struct loop_spec *s,
	     struct proc_result *out, uint64_t *end_ns);

/* out->what = what, if nothing was noted yet. */
void loop_note(struct proc_result *out, const char *what, uint64_t seq);

#endif
