/* loop.c - the timed producer loop (see loop.h for the method). */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/loop.h"
#include "ipc/atomics.h"
#include "libclient/gpuq.h"

/* An open-loop producer with nothing in flight sleeps until shortly before
 * its next send if that is further off than SLEEP_MIN_NS, instead of
 * spinning a core that the system under test may need. */
#define SLEEP_MIN_NS 100000ull
#define SLEEP_EARLY_NS 50000ull
/* Pauses (x86 PAUSE: ~40-140 cycles each) a producer waits after a full
 * ring refused its send, about a microsecond (see idle). */
#define BLOCKED_RELAX 64

struct lstate {
	const struct loop_port *p;
	const struct loop_spec *s;
	struct proc_result *o;
	uint64_t limit;       /* send at most this many (UINT64_MAX: no limit) */
	uint64_t sent, done;
	uint64_t low;         /* every seq below has completed */
	uint64_t mask;        /* ring of in-flight seqs: size mask + 1 */
	uint64_t *stamp;      /* reference time of seq, at seq & mask */
	uint8_t *fin;         /* seq & mask completed (ports may reorder) */
	uint64_t *batch_stamp;
	uint32_t window, batch;
	double ns_per_msg;    /* open loop: the schedule's spacing */
	uint64_t t0, last_done, last_progress;
	int blocked;          /* waiting on the system, not on the schedule */
	struct loop_done buf[LOOP_POLL_MAX];
};

void loop_note(struct proc_result *o, const char *what, uint64_t seq)
{
	if (!o->what[0])
		snprintf(o->what, sizeof(o->what), "%s (message %llu)", what,
			 (unsigned long long)seq);
}

static uint64_t intended(const struct lstate *st, uint64_t seq)
{
	return st->t0 + (uint64_t)((double)seq * st->ns_per_msg);
}

/* Open loop: how many messages are due by now. */
static uint64_t due(const struct lstate *st, uint64_t now)
{
	uint64_t d;
	if (now < st->t0)
		return 0;
	d = (uint64_t)((double)(now - st->t0) / st->ns_per_msg) + 1;
	return d < st->limit ? d : st->limit;
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

/* How many to send now (0: not now). */
static uint32_t to_send(struct lstate *st, uint64_t now)
{
	uint64_t k = st->batch, d;
	if (st->sent >= st->limit)
		return 0;
	if (!st->s->rate && st->s->stop_ns && now >= st->s->stop_ns) {
		st->limit = st->sent; /* closed loop: time is up */
		return 0;
	}
	k = min_u64(k, st->window - (st->sent - st->done));
	k = min_u64(k, st->mask + 1 - (st->sent - st->low));
	k = min_u64(k, st->limit - st->sent);
	if (!k) {
		st->blocked = 1;
		return 0;
	}
	if (!st->s->rate)
		return (uint32_t)k;
	/* A batching producer sends when a whole batch is due (or the last,
	 * short one); its messages still count from their own times. */
	d = due(st, now);
	if (d <= st->sent || (d - st->sent < k && d < st->limit))
		return 0;
	return (uint32_t)min_u64(k, d - st->sent);
}

static int send_some(struct lstate *st, uint32_t k, uint64_t now)
{
	int n;
	for (uint32_t i = 0; i < k; i++)
		st->batch_stamp[i] = st->s->rate ? intended(st, st->sent + i) : now;
	n = st->p->send(st->p->ctx, st->sent, k, st->batch_stamp, st->o);
	if (n < 0)
		return n;
	if (n == 0) {
		st->blocked = 1;
		return 0;
	}
	for (int i = 0; i < n; i++)
		st->stamp[(st->sent + (uint64_t)i) & st->mask] = st->batch_stamp[i];
	st->sent += (uint64_t)n;
	return n;
}

static int take_one(struct lstate *st, const struct loop_done *d, uint64_t now)
{
	const struct loop_spec *s = st->s;
	if (d->status)
		st->o->failed++;
	if (d->seq == LOOP_SEQ_ANON) {
		st->low++;
		st->o->verified++;
		return 0;
	}
	if (d->seq < st->low || d->seq >= st->sent || st->fin[d->seq & st->mask]) {
		loop_note(st->o, "completion for a message not in flight", d->seq);
		return -EPROTO;
	}
	st->fin[d->seq & st->mask] = 1;
	if (s->lat) {
		uint64_t t = st->stamp[d->seq & st->mask];
		hist_record(s->lat, now > t ? now - t : 0);
	}
	if (!s->check || s->check(s->check_ctx, d->seq, d->status, d->res, d->len)) {
		st->o->verified++;
	} else {
		st->o->bad++;
		loop_note(st->o, "wrong result", d->seq);
	}
	return 0;
}

static int reap(struct lstate *st)
{
	uint64_t now;
	int n = st->p->poll(st->p->ctx, st->buf, LOOP_POLL_MAX, st->o);
	if (n <= 0)
		return n;
	now = procs_now_ns();
	st->last_done = now;
	for (int i = 0; i < n; i++) {
		int rc = take_one(st, &st->buf[i], now);
		if (rc)
			return rc;
	}
	st->done += (uint64_t)n;
	while (st->low < st->sent && st->fin[st->low & st->mask]) {
		st->fin[st->low & st->mask] = 0;
		st->low++;
	}
	if (st->s->progress)
		__atomic_store_n(st->s->progress, st->done, __ATOMIC_RELAXED);
	return n;
}

static void sleep_until(uint64_t t)
{
	struct timespec ts = { (time_t)(t / 1000000000ull),
			       (long)(t % 1000000000ull) };
	clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
}

/* Nothing happened this round: give the CPU away, and decide about
 * stalls. */
static int idle(struct lstate *st, uint64_t now)
{
	uint32_t stall = st->s->stall_ms ? st->s->stall_ms : 10000;
	if (st->blocked || st->sent > st->done) {
		if (now - st->last_progress > (uint64_t)stall * 1000000ull) {
			loop_note(st->o, "no progress", st->done);
			return GPUQ_ETIMEDOUT;
		}
	} else {
		st->last_progress = now;
	}
	if (st->s->rate && st->sent == st->done && st->sent < st->limit) {
		uint64_t need = min_u64(st->batch, st->limit - st->sent);
		uint64_t next = intended(st, st->sent + need - 1);
		if (next > now + SLEEP_MIN_NS) {
			sleep_until(next - SLEEP_EARLY_NS);
			return 0;
		}
	}
	/* Refused by a full ring: a retry at once would only re-read the
	 * slots' state words, lines that the consumer (on a GPU, over PCIe)
	 * is about to write.  Letting it have them for a microsecond first
	 * took 14 zero-copy producers (all-or-nothing reservations, so
	 * refused more often) from 54-60M to 63-66M msg/s on the H200, and
	 * verifying ones from 71-75M to 83M (benchmarking.md §8.2). */
	if (st->blocked)
		for (int i = 0; i < BLOCKED_RELAX; i++)
			ipc_cpu_relax();
	/* --spin: a producer that owns its core, as a latency-bound one
	 * would, looks again at once; the yield is a syscall (0.2-1 us) that
	 * a result landing meanwhile waits out. */
	if (st->s->spin)
		ipc_cpu_relax();
	else
		sched_yield();
	return 0;
}

static int step(struct lstate *st)
{
	uint64_t now = procs_now_ns();
	uint32_t k;
	int progressed = 0, n;
	st->blocked = 0;
	k = to_send(st, now);
	if (k) {
		n = send_some(st, k, now);
		if (n < 0)
			return n;
		progressed = n > 0;
	}
	n = reap(st);
	if (n < 0)
		return n;
	if (n > 0 || progressed) {
		st->last_progress = n > 0 ? st->last_done : now;
		return 0;
	}
	return idle(st, now);
}

static int setup(struct lstate *st)
{
	const struct loop_spec *s = st->s;
	uint64_t ring = 1;
	st->window = s->window ? s->window : 1;
	st->batch = s->batch ? s->batch : 1;
	if (st->batch > st->window)
		st->batch = st->window;
	while (ring < st->window)
		ring <<= 1;
	st->mask = ring - 1;
	st->stamp = calloc(ring, sizeof(*st->stamp));
	st->fin = calloc(ring, 1);
	st->batch_stamp = calloc(st->batch, sizeof(*st->batch_stamp));
	if (!st->stamp || !st->fin || !st->batch_stamp)
		return -ENOMEM;
	st->t0 = s->start_ns ? s->start_ns : procs_now_ns();
	st->last_done = st->last_progress = st->t0;
	st->limit = s->count ? s->count : UINT64_MAX;
	if (s->rate > 0) {
		st->ns_per_msg = 1e9 / s->rate;
		if (s->stop_ns > st->t0) {
			double m = ceil((double)(s->stop_ns - st->t0) / st->ns_per_msg);
			st->limit = min_u64(st->limit, (uint64_t)m);
		}
	}
	return 0;
}

int loop_run(const struct loop_port *p, const struct loop_spec *s,
	     struct proc_result *o, uint64_t *end_ns)
{
	struct lstate *st = calloc(1, sizeof(*st));
	int rc;
	if (!st)
		return -ENOMEM;
	st->p = p;
	st->s = s;
	st->o = o;
	rc = setup(st);
	if (rc)
		goto out;
	while (st->sent < st->limit || st->done < st->sent) {
		rc = step(st);
		if (rc)
			break;
	}
	o->seconds = (double)(st->last_done - st->t0) / 1e9;
	if (end_ns)
		*end_ns = st->last_done;
	o->sent += st->sent;
out:
	free(st->stamp);
	free(st->fin);
	free(st->batch_stamp);
	free(st);
	return rc;
}
