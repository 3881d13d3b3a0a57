/*
 * queue.c - one named queue in gpuqd: its shared memory, its client table,
 * reclaiming dead producers' tickets, and draining.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "broker/broker.h"
#include "broker/handler_table.h"
#include "ipc/clock.h"
#include "libclient/gpuq.h"

static int pick_backend(int want, const struct backend_ops **out,
			uint32_t *kind)
{
#ifdef HAVE_CUDA
	if (want == CONF_BACKEND_CUDA ||
	    (want == CONF_BACKEND_AUTO && backend_cuda_available())) {
		if (!backend_cuda_available())
			return GPUQ_EBACKEND;
		*out = &backend_cuda_ops;
		*kind = IPC_BACKEND_CUDA;
		return 0;
	}
#else
	if (want == CONF_BACKEND_CUDA)
		return GPUQ_EBACKEND; /* built --without-cuda */
#endif
	*out = &backend_cpu_ops;
	*kind = IPC_BACKEND_CPU;
	return 0;
}

/* memfd: no name in /dev/shm, so two brokers never collide and a killed
 * broker leaves nothing stale behind.  Mode 0600 and sealed size; clients
 * only ever receive it over the authenticated socket. */
static int make_memfd(const char *name, size_t size)
{
	char label[96];
	int fd;
	snprintf(label, sizeof(label), "gpuq:%s", name);
	fd = memfd_create(label, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return -errno;
	if (fchmod(fd, 0600) < 0 || ftruncate(fd, (off_t)size) < 0 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) <
		    0) {
		int rc = -errno;
		close(fd);
		return rc;
	}
	return fd;
}

static void fill_geometry(const struct queue_config *c, uint32_t rbytes,
			  struct ipc_geometry *g)
{
	g->capacity = c->capacity;
	g->slot_bytes = c->slot_bytes;
	g->result_bytes = rbytes;
	g->cq_capacity = c->cq_capacity ? c->cq_capacity : c->capacity;
	g->max_clients = c->max_clients;
	g->nworkers = c->workers;
}

static int map_ring(struct bqueue *q, const struct ipc_geometry *g,
		    uint32_t backend, uint64_t epoch)
{
	struct ipc_hdr *h;
	int64_t size = ipc_layout_size(g);
	void *p;
	int rc;
	if (size < 0)
		return (int)size;
	q->fd = make_memfd(q->conf.name, (size_t)size);
	if (q->fd < 0)
		return q->fd;
	p = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, q->fd,
		 0);
	if (p == MAP_FAILED)
		return -errno;
	/* Header fields the layout does not own first, then init, which
	 * publishes layout_version last. */
	h = p;
	snprintf(h->name, IPC_NAME_MAX, "%s", q->conf.name);
	snprintf(h->handler, IPC_HANDLER_MAX, "%s", q->conf.handler);
	h->handler_id = q->handler_id;
	h->backend = backend;
	h->broker_pid = getpid();
	h->epoch = epoch;
	h->heartbeat_ns = ipc_now_ns();
	rc = ipc_ring_init(&q->r, p, (size_t)size, g);
	if (rc) {
		munmap(p, (size_t)size);
		q->r.base = NULL;
	}
	return rc;
}

int bqueue_create(struct bqueue *q, const struct queue_config *c,
		  int default_backend, uint64_t epoch)
{
	const struct handler_info *h = handler_lookup(c->handler);
	struct ipc_geometry g;
	uint32_t rbytes, kind;
	int rc;
	memset(q, 0, sizeof(*q));
	q->fd = -1;
	q->conf = *c;
	if (!h)
		return GPUQ_ECONFIG;
	q->handler_id = h->id;
	rbytes = c->result_bytes ? c->result_bytes : h->result_bytes(c->slot_bytes);
	if (rbytes < h->result_bytes(c->slot_bytes))
		return GPUQ_ECONFIG;
	rc = pick_backend(c->backend < 0 ? default_backend : c->backend, &q->be,
			  &kind);
	if (rc)
		return rc;
	fill_geometry(c, rbytes, &g);
	q->slots = calloc(c->max_clients, sizeof(*q->slots));
	if (!q->slots)
		return -ENOMEM;
	rc = map_ring(q, &g, kind, epoch);
	if (rc)
		return rc;
	rc = q->be->start(q);
	if (rc)
		return rc;
	ipc_store_release(&q->r.hdr->state, IPC_BROKER_RUNNING);
	return 0;
}

void bqueue_destroy(struct bqueue *q)
{
	if (q->be && q->be_state)
		q->be->stop(q);
	if (q->r.base) {
		ipc_store_release(&q->r.hdr->state, IPC_BROKER_STOPPED);
		ipc_ring_unmap(&q->r);
	}
	if (q->fd >= 0)
		close(q->fd);
	if (q->slots)
		for (uint32_t i = 0; i < q->conf.max_clients; i++)
			free(q->slots[i].gen_snap);
	free(q->slots);
	q->slots = NULL;
	q->fd = -1;
}

int bqueue_attach(struct bqueue *q, struct bconn *c, uint32_t *client)
{
	struct ipc_hdr *h = q->r.hdr;
	if (q->closed)
		return GPUQ_ESHUTDOWN;
	for (uint32_t i = 0; i < h->max_clients; i++) {
		struct ipc_client *cl = &q->r.clients[i];
		if (ipc_load_acquire(&cl->state) != IPC_CLIENT_FREE)
			continue;
		/* The entry is the broker's while FREE: reset the client's
		 * line, then hand it over by publishing ACTIVE. */
		cl->resv_gen = 0;
		cl->published = 0;
		cl->full_events = 0;
		cl->cq_released = 0;
		cl->pid = c->pid;
		cl->uid = c->uid;
		cl->gen++;
		q->slots[i].owner = c;
		ipc_store_release(&cl->state, IPC_CLIENT_ACTIVE);
		ipc_store_relaxed(&h->clients_attached, h->clients_attached + 1);
		*client = i;
		return 0;
	}
	return GPUQ_ETOOMANY;
}

/*
 * The client is gone (closed, or its process died).  Anything it reserved
 * but never published must become SKIP, or the consumer would wait for it
 * forever.  We may only do that once no *live* producer could own those
 * tickets: snapshot the others' resv_gen now, and reclaim once every one
 * that was mid-reservation has moved on (bqueue_tick).  docs/protocol.md
 * has the argument.
 */
void bqueue_detach(struct bqueue *q, uint32_t client)
{
	struct ipc_client *cl = &q->r.clients[client];
	struct bclient_slot *s = &q->slots[client];
	struct ipc_hdr *h = q->r.hdr;
	ipc_store_release(&cl->state, IPC_CLIENT_DEAD);
	ipc_store_relaxed(&h->retired_published,
			  h->retired_published + ipc_load_relaxed(&cl->published));
	ipc_store_relaxed(&h->retired_full,
			  h->retired_full + ipc_load_relaxed(&cl->full_events));
	ipc_store_relaxed(&h->clients_attached, h->clients_attached - 1);
	s->owner = NULL;
	if (!s->gen_snap)
		s->gen_snap = calloc(h->max_clients, sizeof(uint64_t));
	/* seq_cst load pairs with the producers' seq_cst resv_gen store. */
	s->detach_head = ipc_load_seqcst(&q->r.ctl->head) & ~IPC_HEAD_CLOSED;
	for (uint32_t i = 0; s->gen_snap && i < h->max_clients; i++)
		s->gen_snap[i] = ipc_load_seqcst(&q->r.clients[i].resv_gen);
	s->reclaim_pending = 1;
}

/* 1 once no live client that was mid-reservation at detach still is.
 * Without a snapshot (allocation failed) fall back to the stricter "every
 * live client is idle right now". */
static int reservations_settled(struct bqueue *q, struct bclient_slot *s)
{
	for (uint32_t i = 0; i < q->r.hdr->max_clients; i++) {
		struct ipc_client *cl = &q->r.clients[i];
		uint64_t g;
		if (ipc_load_acquire(&cl->state) != IPC_CLIENT_ACTIVE)
			continue;
		g = ipc_load_acquire(&cl->resv_gen);
		if (s->gen_snap ? ((s->gen_snap[i] & 1) && g == s->gen_snap[i])
				: (g & 1))
			return 0;
	}
	return 1;
}

static void reclaim_step(struct bqueue *q, uint32_t i)
{
	struct bclient_slot *s = &q->slots[i];
	struct ipc_client *cl = &q->r.clients[i];
	uint64_t lo;
	if (s->reclaim_pending && reservations_settled(q, s)) {
		uint64_t n;
		lo = ipc_consumed_frontier(&q->r);
		n = lo < s->detach_head
			    ? ipc_skip_unpublished(&q->r, lo, s->detach_head)
			    : 0;
		if (n) {
			q->r.hdr->reclaimed += n;
			blog(1, "queue %s: reclaimed %llu tickets of client %u",
			     q->conf.name, (unsigned long long)n, i);
		}
		s->reclaim_pending = 0;
	}
	/* Reuse the entry only after the consumers have passed every ticket
	 * the old client could own: until then a late result could land in
	 * the new client's completion area. */
	if (!s->reclaim_pending &&
	    ipc_consumed_frontier(&q->r) >= s->detach_head) {
		for (uint64_t id = 0; id < q->r.hdr->cq_capacity; id++)
			ipc_cq_entry(&q->r, i, id)->done = 0;
		ipc_store_release(&cl->state, IPC_CLIENT_FREE);
	}
}

void bqueue_tick(struct bqueue *q, uint64_t now_ns)
{
	ipc_store_release(&q->r.hdr->heartbeat_ns, now_ns);
	for (uint32_t i = 0; i < q->r.hdr->max_clients; i++)
		if (ipc_load_relaxed(&q->r.clients[i].state) == IPC_CLIENT_DEAD)
			reclaim_step(q, i);
}

void bqueue_close_intake(struct bqueue *q)
{
	if (q->closed)
		return;
	q->final_head = ipc_close_intake(&q->r);
	q->closed = 1;
	ipc_store_release(&q->r.hdr->state, IPC_BROKER_DRAINING);
}

int bqueue_drained(const struct bqueue *q)
{
	return q->closed && ipc_consumed_frontier(&q->r) >= q->final_head;
}

void bqueue_qstat(const struct bqueue *q, struct proto_qstat *o)
{
	struct ipc_counts c;
	ipc_counts_read(&q->r, &c);
	memset(o, 0, sizeof(*o));
	snprintf(o->name, sizeof(o->name), "%s", q->conf.name);
	snprintf(o->handler, sizeof(o->handler), "%s", q->conf.handler);
	o->capacity = q->r.hdr->capacity;
	o->slot_bytes = q->r.hdr->slot_bytes;
	o->result_bytes = q->r.hdr->result_bytes;
	o->backend = q->r.hdr->backend;
	o->clients = (uint32_t)q->r.hdr->clients_attached;
	o->state = q->r.hdr->state;
	o->enqueued = c.published;
	o->completed = c.completed;
	o->failed = c.failed;
	o->reclaimed = c.skipped;
	o->full_events = c.full_events;
	o->depth = c.head > c.completed + c.skipped
			   ? c.head - c.completed - c.skipped : 0;
}
