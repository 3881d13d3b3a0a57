/*
 * backend_cpu.c - the CPU backend: worker threads consume the ring with the
 * same protocol and the same handler source as the CUDA kernel.
 *
 * Unordered queue: one shared ring; workers claim tickets in chunks from a
 * private counter, so each ticket has exactly one consumer without any
 * shared-memory atomics, and walk their chunk in order.
 * Ordered queue: worker w owns ring w and walks it strictly in ticket order,
 * so messages with one key (one ring) complete in enqueue order.
 * Each worker publishes the lowest ticket it has not finished
 * (ipc_worker.cur), from which the broker derives the consumed frontier for
 * reclaim and drain.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "broker/broker.h"
#include "broker/handlers.h"
#include "ipc/clock.h"
#include "ipc/cq.h"
#include "libclient/gpuq.h"

/* Big enough to amortise the claim, small enough that one slow ticket
 * holds back little else. */
#define CHUNK 64u
/* Idle workers sleep at most this long between looks at the ring: it bounds
 * the added latency after an idle spell (a busy ring never lets the backoff
 * grow this far).  At 50 us an idle worker took 18% of a core in wakeups;
 * at 200 us (plus the kernel's timer slack) a few percent. */
#define IDLE_MAX_SLEEP_NS 200000u

struct cpu_state {
	struct bqueue *q;
	uint64_t claim; /* next unclaimed ticket of the shared ring */
	int stop;       /* set by stop(): exit now, drained or not */
	uint32_t n;
	pthread_t *threads;
	struct cpu_worker {
		struct cpu_state *s;
		uint32_t idx;
		uint64_t dlq_next; /* next dead-letter position (= dlq_head) */
		uint8_t *scratch;  /* where results are built when not in
				      place: replays' (unwanted) and every
				      result of a stamped-result queue */
		uint8_t *payload;  /* a stamped slot's payload, gathered;
				      NULL on a plain queue */
	} *args;
};

static int stopping(struct cpu_state *s)
{
	return __atomic_load_n(&s->stop, __ATOMIC_ACQUIRE);
}

/*
 * Copy a message that failed every attempt into this worker's dead-letter
 * ring.  Waits while the ring is full (the operator must replay or purge):
 * a dead letter is never dropped.  Returns 0, or -1 if stopped while
 * waiting.
 */
static int dead_letter(struct cpu_worker *w, uint32_t ring, uint64_t t,
		       const struct ipc_msg_hdr *m, const uint8_t *payload,
		       int status, uint32_t attempts)
{
	struct ipc_ring *r = &w->s->q->r;
	struct ipc_worker *me = &r->workers[w->idx];
	struct ipc_backoff b = IPC_BACKOFF_INIT(IDLE_MAX_SLEEP_NS);
	struct ipc_dlq_entry *d;
	uint64_t p = w->dlq_next;
	int waited = 0;
	while (p - ipc_load_acquire(&me->dlq_tail) >= r->hdr->dlq_per_worker) {
		if (stopping(w->s))
			return -1;
		if (!waited++)
			ipc_store_relaxed(&me->dlq_waits, me->dlq_waits + 1);
		ipc_backoff_wait(&b);
	}
	d = ipc_dlq_entry(r, w->idx, p);
	ipc_dlq_fill(d, m, t, status, attempts, r->clients[m->client].pid, ring);
	memcpy(d + 1, payload, m->len);
	ipc_store_release(&d->seq, p + 1);
	w->dlq_next = p + 1;
	ipc_store_release(&me->dlq_head, p + 1);
	return 0;
}

/* Complete a message that was not run, with status (a gpuq code). */
static void finish(struct cpu_worker *w, struct ipc_cq_entry *e, uint64_t id,
		   int status)
{
	struct ipc_worker *me = &w->s->q->r.workers[w->idx];
	if (e) {
		struct ipc_outcome o = { status, 0, 0, w->idx, me->completed };
		ipc_cq_publish(&w->s->q->r, e, id, &o, NULL);
	}
	ipc_store_relaxed(&me->completed, me->completed + 1);
}

/* Run the handler (with retries) for ticket t and publish the outcome. */
static void consume(struct cpu_worker *w, uint32_t ring, uint64_t t)
{
	struct bqueue *q = w->s->q;
	struct ipc_ring *r = &q->r;
	struct ipc_worker *me = &r->workers[w->idx];
	const struct ipc_msg_hdr *m = ipc_slot(r, ring, t);
	struct gpuq_fault f = { r->hdr->fail_ppm, r->hdr->fail_attempts };
	uint32_t len = m->len, client = m->client, attempts;
	int noresult = m->flags & IPC_MSG_NORESULT;
	struct ipc_cq_entry *e = NULL;
	struct gpuq_hmsg in;
	struct gpuq_hres out;
	int rc;
	/* The slot was written by a producer: range-check the header so a bad
	 * one can never steer a write outside the completion areas.  (Which
	 * client's area it names is up to the producer: every client of a
	 * queue is in the same trust domain, docs/design.md.)  Index
	 * max_clients is the broker's own, and it never wants results. */
	if (client > r->hdr->max_clients || len == 0 ||
	    len > r->hdr->slot_bytes ||
	    (client == r->hdr->max_clients && !noresult)) {
		ipc_store_relaxed(&me->garbled, me->garbled + 1);
		ipc_store_relaxed(&me->completed, me->completed + 1);
		return;
	}
	in.data = ipc_slot_payload(r, m, len, w->payload);
	in.len = len;
	in.id = m->id;
	in.key = m->key;
	in.table = q->table.slots ? &q->table : NULL;
	/* A plain entry's result is written in place.  A stamped entry's is
	 * built aside and stamped as it is copied in; a replay's goes nowhere,
	 * but the handler still needs somewhere to write it. */
	if (!noresult)
		e = ipc_cq_entry(r, client, m->id);
	out.data = e && !r->hdr->cq_stamped ? (uint8_t *)(e + 1) : w->scratch;
	out.cap = r->hdr->result_bytes;
	if (q->once.slots) {
		int refused, replayed;
		rc = gpuq_handle_once(q->handler_id, &in, &out, &f,
				      r->hdr->max_attempts, &attempts, &q->once,
				      ipc_now_ns(), q->once_window_ns, &refused,
				      &replayed);
		if (refused) {
			/* Not run and not a handler failure: no dead
			 * letter; the producer gets the reason. */
			finish(w, e, m->id, refused);
			return;
		}
	} else {
		rc = gpuq_handle(q->handler_id, &in, &out, &f,
				 r->hdr->max_attempts, &attempts);
	}
	if (attempts > 1)
		ipc_store_relaxed(&me->retried, me->retried + attempts - 1);
	if (rc && dead_letter(w, ring, t, m, in.data, rc, attempts))
		return; /* stopped while the dead-letter ring was full */
	if (e) {
		struct ipc_outcome o = { rc ? GPUQ_EHANDLER : 0, rc ? 0 : out.len,
					 attempts, w->idx, me->completed };
		ipc_cq_publish(r, e, m->id, &o, out.data);
	}
	if (rc)
		ipc_store_relaxed(&me->dead_lettered, me->dead_lettered + 1);
	ipc_store_relaxed(&me->completed, me->completed + 1);
}

/* 1 when ticket t of ring will never arrive: intake closed below it, or
 * stop. */
static int past_end(struct cpu_state *s, uint32_t ring, uint64_t t)
{
	uint64_t h = ipc_load_acquire(&ipc_ctl(&s->q->r, ring)->head);
	return stopping(s) ||
	       ((h & IPC_HEAD_CLOSED) && t >= (h & ~IPC_HEAD_CLOSED));
}

/* Wait for ticket t of ring, consume or skip it, free the slot.
 * Returns 0, or -1 when the ticket will never come. */
static int step(struct cpu_worker *w, uint32_t ring, uint64_t t,
		struct ipc_backoff *b)
{
	struct ipc_ring *r = &w->s->q->r;
	struct ipc_worker *me = &r->workers[w->idx];
	enum ipc_take k;
	ipc_store_release(&me->cur, t);
	for (;;) {
		/* Paused: take nothing new (producers fill the ring, then
		 * feel backpressure; a drain clears the pause).  Checked
		 * again after the slot is seen published, so a message
		 * enqueued after the pause took effect is never run. */
		if (!ipc_load_acquire(&r->hdr->paused)) {
			k = ipc_take(r, ring, t);
			if (k != IPC_TAKE_WAIT &&
			    !ipc_load_acquire(&r->hdr->paused))
				break;
			if (k == IPC_TAKE_WAIT && past_end(w->s, ring, t))
				return -1;
		} else {
			ipc_pause_ack(r, me);
			if (stopping(w->s))
				return -1;
		}
		ipc_backoff_wait(b);
	}
	ipc_backoff_reset(b);
	if (k == IPC_TAKE_READY)
		consume(w, ring, t);
	else
		ipc_store_relaxed(&me->skipped, me->skipped + 1);
	if (stopping(w->s))
		return -1;
	ipc_release_slot(r, ring, t);
	return 0;
}

static void *worker_main(void *arg)
{
	struct cpu_worker *w = arg;
	struct cpu_state *s = w->s;
	struct ipc_ring *r = &s->q->r;
	struct ipc_backoff b = IPC_BACKOFF_INIT(IDLE_MAX_SLEEP_NS);
	if (r->hdr->ordered) {
		/* Ring w, every ticket, in order. */
		for (uint64_t t = 0; step(w, w->idx, t, &b) == 0; t++)
			;
	} else {
		for (;;) {
			uint64_t c = __atomic_fetch_add(&s->claim, CHUNK,
							__ATOMIC_RELAXED);
			for (uint64_t t = c; t < c + CHUNK; t++)
				if (step(w, 0, t, &b))
					goto out;
		}
	}
out:
	/* Finished: this worker no longer holds the frontier back. */
	ipc_store_release(&r->workers[w->idx].cur, UINT64_MAX);
	return NULL;
}

static void cpu_free(struct cpu_state *s)
{
	for (uint32_t i = 0; s->args && i < s->q->r.hdr->nworkers; i++) {
		free(s->args[i].scratch);
		free(s->args[i].payload);
	}
	free(s->threads);
	free(s->args);
	free(s);
}

static void cpu_stop(struct bqueue *q)
{
	struct cpu_state *s = q->be_state;
	if (!s)
		return;
	__atomic_store_n(&s->stop, 1, __ATOMIC_RELEASE);
	for (uint32_t i = 0; i < s->n; i++)
		pthread_join(s->threads[i], NULL);
	cpu_free(s);
	q->be_state = NULL;
}

static int cpu_start(struct bqueue *q)
{
	struct cpu_state *s = calloc(1, sizeof(*s));
	int rc = 0;
	if (!s)
		return -ENOMEM;
	s->q = q;
	s->threads = calloc(q->r.hdr->nworkers, sizeof(*s->threads));
	s->args = calloc(q->r.hdr->nworkers, sizeof(*s->args));
	if (!s->threads || !s->args) {
		cpu_free(s);
		return -ENOMEM;
	}
	q->be_state = s;
	for (uint32_t i = 0; i < q->r.hdr->nworkers; i++) {
		s->args[i].s = s;
		s->args[i].idx = i;
		s->args[i].scratch = malloc(q->r.hdr->result_bytes + 16);
		/* Only a stamped queue's payloads are gathered (a plain one's
		 * are read in place), into a buffer as aligned as a slot's. */
		if (q->r.hdr->stamped)
			s->args[i].payload = aligned_alloc(
				64, (q->r.hdr->slot_bytes + 63) / 64 * 64);
		if (!s->args[i].scratch ||
		    (q->r.hdr->stamped && !s->args[i].payload)) {
			rc = -ENOMEM;
			break;
		}
		rc = -pthread_create(&s->threads[i], NULL, worker_main,
				     &s->args[i]);
		if (rc)
			break;
		s->n++;
	}
	if (rc)
		cpu_stop(q);
	return rc;
}

const struct backend_ops backend_cpu_ops = {
	.name = "cpu",
	.start = cpu_start,
	.stop = cpu_stop,
	.ipc_handle = NULL,
};
