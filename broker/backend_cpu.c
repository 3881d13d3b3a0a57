/*
 * backend_cpu.c - the CPU backend: worker threads consume the ring with the
 * same protocol and the same handler source as the CUDA kernel.
 *
 * Workers claim tickets in chunks from a private counter, so each ticket has
 * exactly one consumer without any shared-memory atomics, and walk their
 * chunk in order.  Each worker publishes the lowest ticket it has not
 * finished (ipc_worker.cur); the minimum over workers is the consumed
 * frontier the broker uses for reclaim and drain.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "broker/broker.h"
#include "broker/handlers.h"
#include "ipc/clock.h"
#include "libclient/gpuq.h"

/* Big enough to amortise the claim, small enough that one slow ticket
 * holds back little else. */
#define CHUNK 64u
/* Idle workers sleep at most this long between looks at the ring: it bounds
 * the added latency at low load while costing ~no CPU when idle. */
#define IDLE_MAX_SLEEP_NS 50000u

struct cpu_state {
	struct bqueue *q;
	uint64_t claim; /* next unclaimed ticket (private to gpuqd) */
	int stop;       /* set by stop(): exit now, drained or not */
	uint32_t n;
	pthread_t *threads;
	struct cpu_worker { struct cpu_state *s; uint32_t idx; } *args;
};

/* Run the handler for ticket t and publish its result. */
static void consume(struct ipc_ring *r, uint32_t handler, uint64_t t,
		    struct ipc_worker *me)
{
	const struct ipc_msg_hdr *m = ipc_slot(r, t);
	uint32_t len = m->len, client = m->client;
	uint64_t id = m->id;
	struct ipc_cq_entry *e;
	struct gpuq_hmsg in;
	struct gpuq_hres out;
	int rc;
	/* The slot was written by a producer: range-check the header so a bad
	 * one can never steer a write outside the completion areas.  (Which
	 * client's area it names is up to the producer: every client of a
	 * queue is in the same trust domain, docs/design.md.) */
	if (client >= r->hdr->max_clients || len == 0 ||
	    len > r->hdr->slot_bytes) {
		ipc_store_relaxed(&me->failed, me->failed + 1);
		ipc_store_relaxed(&me->completed, me->completed + 1);
		return;
	}
	e = ipc_cq_entry(r, client, id);
	in.data = (const uint8_t *)(m + 1);
	in.len = len;
	in.id = id;
	out.data = (uint8_t *)(e + 1);
	out.cap = r->hdr->result_bytes;
	out.len = 0;
	rc = gpuq_handler_run(handler, &in, &out);
	ipc_cq_publish(e, id, rc ? GPUQ_EHANDLER : 0, rc ? 0 : out.len);
	if (rc)
		ipc_store_relaxed(&me->failed, me->failed + 1);
	ipc_store_relaxed(&me->completed, me->completed + 1);
}

/* 1 when ticket t will never arrive: intake closed below it, or stop. */
static int past_end(struct cpu_state *s, uint64_t t)
{
	uint64_t h = ipc_load_acquire(&s->q->r.ctl->head);
	return __atomic_load_n(&s->stop, __ATOMIC_ACQUIRE) ||
	       ((h & IPC_HEAD_CLOSED) && t >= (h & ~IPC_HEAD_CLOSED));
}

static void *worker_main(void *arg)
{
	struct cpu_worker *w = arg;
	struct cpu_state *s = w->s;
	struct ipc_ring *r = &s->q->r;
	struct ipc_worker *me = &r->workers[w->idx];
	uint32_t handler = s->q->handler_id;
	struct ipc_backoff b = IPC_BACKOFF_INIT(IDLE_MAX_SLEEP_NS);
	for (;;) {
		uint64_t c = __atomic_fetch_add(&s->claim, CHUNK,
						__ATOMIC_RELAXED);
		for (uint64_t t = c; t < c + CHUNK; t++) {
			enum ipc_take k;
			ipc_store_release(&me->cur, t);
			while ((k = ipc_take(r, t)) == IPC_TAKE_WAIT) {
				if (past_end(s, t))
					goto out;
				ipc_backoff_wait(&b);
			}
			ipc_backoff_reset(&b);
			if (k == IPC_TAKE_READY)
				consume(r, handler, t, me);
			else
				ipc_store_relaxed(&me->skipped, me->skipped + 1);
			ipc_release_slot(r, t);
		}
	}
out:
	/* Finished: this worker no longer holds the frontier back. */
	ipc_store_release(&me->cur, UINT64_MAX);
	return NULL;
}

static void cpu_free(struct cpu_state *s)
{
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
