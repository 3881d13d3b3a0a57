/*
 * recycle.c - clearing a detached client's completion area, off the loop.
 *
 * Before a client entry is free again, every completion entry of its area
 * must be scrubbed (ipc_cq_scrub): the next client's ids start at 0 again.
 * That is cq_capacity entries, 65536 by default, about 0.5 ms per client on
 * the H200's host (benchmarking.md §8.3).  Done by the event loop, 14
 * clients detached together held it, and every attach waiting on it, for
 * 6.5 ms.  So each queue has one recycler thread: the loop asks it for an
 * entry once the entry's quarantine is over (bqueue_tick), and the thread
 * scrubs the area and only then publishes the entry FREE.
 *
 * Ownership: while an entry is DEAD and asked for, its completion area is
 * the recycler's; nothing else writes it (the consumers are past every
 * ticket the old client owned, which is what ended the quarantine).  Once
 * FREE, the entry is the loop's again.  The mutex guards only the asks.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "broker/broker.h"
#include "ipc/atomics.h"
#include "ipc/cq.h"

struct recycler {
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int stop;
};

/* The lowest entry asked for, or UINT32_MAX; called with mu held. */
static uint32_t next_asked(const struct bqueue *q)
{
	for (uint32_t i = 0; i < q->conf.max_clients; i++)
		if (q->slots[i].scrub_asked)
			return i;
	return UINT32_MAX;
}

static void *recycler_main(void *arg)
{
	struct bqueue *q = arg;
	struct recycler *rc = q->recycler;
	pthread_mutex_lock(&rc->mu);
	for (;;) {
		uint32_t i;
		while (!rc->stop && (i = next_asked(q)) == UINT32_MAX)
			pthread_cond_wait(&rc->cv, &rc->mu);
		if (rc->stop)
			break;
		pthread_mutex_unlock(&rc->mu);
		for (uint64_t id = 0; id < q->r.hdr->cq_capacity; id++)
			ipc_cq_scrub(&q->r, ipc_cq_entry(&q->r, i, id));
		pthread_mutex_lock(&rc->mu);
		q->slots[i].scrub_asked = 0;
		/* After the scrub: an attach takes only a FREE entry. */
		ipc_store_release(&q->r.clients[i].state, IPC_CLIENT_FREE);
		blog(1, "queue %s: client entry %u is free again", q->conf.name,
		     i);
	}
	pthread_mutex_unlock(&rc->mu);
	return NULL;
}

int recycle_start(struct bqueue *q)
{
	struct recycler *rc = calloc(1, sizeof(*rc));
	int err;
	if (!rc)
		return -ENOMEM;
	pthread_mutex_init(&rc->mu, NULL);
	pthread_cond_init(&rc->cv, NULL);
	q->recycler = rc;
	err = pthread_create(&rc->thread, NULL, recycler_main, q);
	if (err) {
		pthread_cond_destroy(&rc->cv);
		pthread_mutex_destroy(&rc->mu);
		free(rc);
		q->recycler = NULL;
		return -err;
	}
	return 0;
}

void recycle_ask(struct bqueue *q, uint32_t i)
{
	struct recycler *rc = q->recycler;
	pthread_mutex_lock(&rc->mu);
	/* Under the mutex, which the recycler holds when it frees an entry:
	 * the loop's look at the state was outside it, and an entry already
	 * freed must not be scrubbed again (it may be attached next). */
	if (!q->slots[i].scrub_asked &&
	    ipc_load_acquire(&q->r.clients[i].state) == IPC_CLIENT_DEAD) {
		q->slots[i].scrub_asked = 1;
		pthread_cond_signal(&rc->cv);
	}
	pthread_mutex_unlock(&rc->mu);
}

void recycle_stop(struct bqueue *q)
{
	struct recycler *rc = q->recycler;
	if (!rc)
		return;
	pthread_mutex_lock(&rc->mu);
	rc->stop = 1;
	pthread_cond_signal(&rc->cv);
	pthread_mutex_unlock(&rc->mu);
	pthread_join(rc->thread, NULL);
	pthread_cond_destroy(&rc->cv);
	pthread_mutex_destroy(&rc->mu);
	free(rc);
	q->recycler = NULL;
}
