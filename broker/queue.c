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
#include <time.h>
#include <unistd.h>

#include "broker/broker.h"
#include "broker/handler_table.h"
#include "broker/handlers.h"
#include "ipc/clock.h"
#include "ipc/cq.h"
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
	g->ordered = c->ordered ? 1 : 0;
	g->dlq_per_worker = c->dlq_capacity;
	g->stamped = c->stamped ? 1 : 0;
	g->cq_stamped = c->stamped_results ? 1 : 0;
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
	h->max_attempts = q->conf.max_attempts ? q->conf.max_attempts : 1;
	h->fail_ppm = q->conf.fail_ppm;
	h->fail_attempts = q->conf.fail_attempts;
	rc = ipc_ring_init(&q->r, p, (size_t)size, g);
	if (rc) {
		munmap(p, (size_t)size);
		q->r.base = NULL;
		return rc;
	}
	/* The broker's own client entry, for replays: always attached. */
	q->r.clients[IPC_BROKER_CLIENT(&q->r)].pid = getpid();
	q->r.clients[IPC_BROKER_CLIENT(&q->r)].uid = geteuid();
	ipc_store_release(&q->r.clients[IPC_BROKER_CLIENT(&q->r)].state,
			  IPC_CLIENT_ACTIVE);
	return 0;
}

/* The handler id and result room: a built-in by name, or a module's
 * handler (GPUQ_H_USER), shown as "module:<file name>". */
static int pick_handler(struct bqueue *q, uint32_t *rbytes)
{
	const struct queue_config *c = &q->conf;
	const struct handler_info *h;
	if (c->handler_module[0]) {
		const char *base = strrchr(c->handler_module, '/');
		/* "module:" and as much of the name as fits */
		snprintf(q->conf.handler, sizeof(q->conf.handler), "module:%.*s",
			 (int)(sizeof(q->conf.handler) - 8),
			 base ? base + 1 : c->handler_module);
		q->handler_id = GPUQ_H_USER;
		*rbytes = c->result_bytes;
		return c->result_bytes ? 0 : GPUQ_ECONFIG;
	}
	h = handler_lookup(c->handler);
	if (!h)
		return GPUQ_ECONFIG;
	q->handler_id = h->id;
	*rbytes = c->result_bytes ? c->result_bytes : h->result_bytes(c->slot_bytes);
	return *rbytes < h->result_bytes(c->slot_bytes) ? GPUQ_ECONFIG : 0;
}

int bqueue_create(struct bqueue *q, const struct queue_config *c,
		  int default_backend, uint64_t epoch)
{
	struct ipc_geometry g;
	uint32_t rbytes, kind;
	uint64_t t0 = ipc_now_ns();
	int rc;
	memset(q, 0, sizeof(*q));
	q->fd = -1;
	q->internal_client = -1;
	q->conf = *c;
	rc = pick_handler(q, &rbytes);
	if (rc)
		return rc;
	rc = pick_backend(c->backend < 0 ? default_backend : c->backend, &q->be,
			  &kind);
	if (rc)
		return rc;
	if (c->handler_module[0] && kind != IPC_BACKEND_CUDA) {
		blog(0, "queue %s: handler_module %s needs the cuda backend",
		     c->name, c->handler_module);
		return GPUQ_EBACKEND;
	}
	fill_geometry(c, rbytes, &g);
	q->slots = calloc(c->max_clients, sizeof(*q->slots));
	q->final_heads = calloc(c->ordered ? c->workers : 1, sizeof(uint64_t));
	if (!q->slots || !q->final_heads)
		return -ENOMEM;
	rc = map_ring(q, &g, kind, epoch);
	if (rc)
		return rc;
	rc = recycle_start(q);
	if (rc)
		return rc;
	rc = bqueue_tables_create(q, rbytes, kind);
	if (rc)
		return rc;
	rc = q->be->start(q);
	if (rc)
		return rc;
	/* Time to ready, per queue: a CUDA start pins the mapping, allocates
	 * VRAM and launches the kernel, which is most of gpuqd's start. */
	q->start_ns = ipc_now_ns() - t0;
	blog(1, "queue %s: started in %.1f ms on %s", c->name,
	     (double)q->start_ns / 1e6, q->be->name);
	ipc_store_release(&q->r.hdr->state, IPC_BROKER_RUNNING);
	return 0;
}

void bqueue_halt(struct bqueue *q)
{
	if (q->be && q->be_state && q->be->halt)
		q->be->halt(q);
}

void bqueue_destroy(struct bqueue *q)
{
	if (q->be && q->be_state) {
		/* Logged: a peer system's ring kernels took 5.9 s to stop. */
		uint64_t t0 = ipc_now_ns();
		q->be->stop(q);
		blog(0, "queue %s: %s backend stopped in %.1f ms", q->conf.name,
		     q->be->name, (double)(ipc_now_ns() - t0) / 1e6);
	}
	recycle_stop(q);
	if (q->r.base) {
		ipc_store_release(&q->r.hdr->state, IPC_BROKER_STOPPED);
		ipc_ring_unmap(&q->r);
	}
	if (q->fd >= 0)
		close(q->fd);
	if (q->slots)
		for (uint32_t i = 0; i < q->conf.max_clients; i++) {
			free(q->slots[i].gen_snap);
			free(q->slots[i].detach_heads);
		}
	free(q->slots);
	free(q->final_heads);
	bqueue_tables_destroy(q);
	q->slots = NULL;
	q->final_heads = NULL;
	q->fd = -1;
}

/* Take a FREE client entry for owner (NULL: the broker itself). */
static int attach_entry(struct bqueue *q, struct bconn *c, pid_t pid,
			uid_t uid, uint32_t *client)
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
		cl->heartbeat_ns = ipc_now_ns();
		cl->reserved = 0;
		cl->lat_sum_ns = 0;
		cl->lat_count = 0;
		memset(cl->lat, 0, sizeof(cl->lat));
		cl->pid = pid;
		cl->uid = uid;
		cl->gen++;
		q->slots[i].owner = c;
		ipc_store_release(&cl->state, IPC_CLIENT_ACTIVE);
		ipc_store_relaxed(&h->clients_attached, h->clients_attached + 1);
		*client = i;
		return 0;
	}
	return GPUQ_ETOOMANY;
}

int bqueue_attach(struct bqueue *q, struct bconn *c, uint32_t *client)
{
	return attach_entry(q, c, c->pid, c->uid, client);
}

/* An ordinary client entry (with a completion area, unlike the replay
 * entry) that no connection owns: a producer inside gpuqd, such as a
 * Track A binding.  Detached with bqueue_detach like any other. */
int bqueue_attach_internal(struct bqueue *q, uint32_t *client)
{
	int rc = attach_entry(q, NULL, getpid(), geteuid(), client);
	if (!rc)
		q->internal_client = (int32_t)*client;
	return rc;
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
	for (uint32_t b = 0; b < IPC_LAT_BUCKETS; b++)
		ipc_store_relaxed(&h->retired_lat[b],
				  h->retired_lat[b] + ipc_load_relaxed(&cl->lat[b]));
	ipc_store_relaxed(&h->retired_lat_sum_ns,
			  h->retired_lat_sum_ns + ipc_load_relaxed(&cl->lat_sum_ns));
	ipc_store_relaxed(&h->retired_lat_count,
			  h->retired_lat_count + ipc_load_relaxed(&cl->lat_count));
	ipc_store_relaxed(&h->clients_attached, h->clients_attached - 1);
	s->owner = NULL;
	if (!s->gen_snap)
		s->gen_snap = calloc(h->max_clients + 1, sizeof(uint64_t));
	if (!s->detach_heads)
		s->detach_heads = calloc(h->nrings, sizeof(uint64_t));
	/* seq_cst loads pair with the producers' seq_cst resv_gen store.
	 * Without the heads array (allocation failed) nothing can be
	 * reclaimed safely; the entry then stays DEAD. */
	for (uint32_t r = 0; s->detach_heads && r < h->nrings; r++)
		s->detach_heads[r] = ipc_load_seqcst(&ipc_ctl(&q->r, r)->head) &
				     ~IPC_HEAD_CLOSED;
	for (uint32_t i = 0; s->gen_snap && i <= h->max_clients; i++)
		s->gen_snap[i] = ipc_load_seqcst(&q->r.clients[i].resv_gen);
	s->reclaim_pending = 1;
}

/* 1 once no live client that was mid-reservation at detach still is.
 * Without a snapshot (allocation failed) fall back to the stricter "every
 * live client is idle right now". */
static int reservations_settled(struct bqueue *q, struct bclient_slot *s)
{
	for (uint32_t i = 0; i <= q->r.hdr->max_clients; i++) {
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

/* 1 when every ring's consumers are past the heads recorded at detach. */
static int consumed_past(const struct bqueue *q, const uint64_t *heads)
{
	for (uint32_t r = 0; r < q->r.hdr->nrings; r++)
		if (ipc_consumed_frontier(&q->r, r) < heads[r])
			return 0;
	return 1;
}

static void reclaim_step(struct bqueue *q, uint32_t i)
{
	struct bclient_slot *s = &q->slots[i];
	if (!s->detach_heads)
		return;
	if (s->reclaim_pending && reservations_settled(q, s)) {
		uint64_t n = 0;
		for (uint32_t r = 0; r < q->r.hdr->nrings; r++) {
			uint64_t lo = ipc_consumed_frontier(&q->r, r);
			if (lo < s->detach_heads[r])
				n += ipc_skip_unpublished(&q->r, r, lo,
							  s->detach_heads[r]);
		}
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
	if (!s->reclaim_pending && consumed_past(q, s->detach_heads))
		recycle_ask(q, i);
}

/* Track whether the backend progresses while it has work (metrics). */
static void track_progress(struct bqueue *q, uint64_t now_ns)
{
	struct ipc_counts c;
	ipc_counts_read(&q->r, &c);
	if (c.completed != q->last_completed ||
	    c.head <= c.completed + c.skipped) {
		q->last_completed = c.completed;
		__atomic_store_n(&q->stalled_since_ns, 0, __ATOMIC_RELAXED);
	} else if (!q->stalled_since_ns) {
		__atomic_store_n(&q->stalled_since_ns, now_ns, __ATOMIC_RELAXED);
	}
}

static void dlq_drop_internal(struct bqueue *q);

/* The heartbeat has one writer, this tick.  Finding another value than
 * the last tick wrote means something else wrote the header's line (a
 * stray store, or a device write-back): say so, since producers would
 * read the broker as dead. */
static void beat(struct bqueue *q, uint64_t now_ns)
{
	uint64_t seen = ipc_load_relaxed(&q->r.hdr->heartbeat_ns);
	if (q->last_heartbeat_ns && seen != q->last_heartbeat_ns)
		blog(0, "queue %s: heartbeat overwritten: found %llu, wrote "
			"%llu (%.1f ms earlier)",
		     q->conf.name, (unsigned long long)seen,
		     (unsigned long long)q->last_heartbeat_ns,
		     (double)(now_ns - q->last_heartbeat_ns) / 1e6);
	ipc_store_release(&q->r.hdr->heartbeat_ns, now_ns);
	q->last_heartbeat_ns = now_ns;
	blog(3, "queue %s: heartbeat %llu", q->conf.name,
	     (unsigned long long)now_ns);
}

void bqueue_tick(struct bqueue *q, uint64_t now_ns)
{
	beat(q, now_ns);
	track_progress(q, now_ns);
	dlq_drop_internal(q);
	bqueue_tables_sweep(q, now_ns);
	if (q->be->tick)
		q->be->tick(q, now_ns);
	for (uint32_t i = 0; i < q->r.hdr->max_clients; i++)
		if (ipc_load_relaxed(&q->r.clients[i].state) == IPC_CLIENT_DEAD)
			reclaim_step(q, i);
}

void bqueue_pause(struct bqueue *q, int on)
{
	/* A closed queue is draining: it cannot be paused again.  A new
	 * generation first, so a consumer that sees the flag acks this
	 * pause and not an earlier one. */
	on = on && !q->closed;
	if (on && !q->r.hdr->paused)
		ipc_store_release(&q->r.hdr->pause_gen, q->r.hdr->pause_gen + 1);
	ipc_store_release(&q->r.hdr->paused, on ? 1u : 0u);
}

int bqueue_pause_wait(const struct bqueue *q, uint64_t deadline_ns)
{
	struct timespec nap = { 0, 20000 };
	while (ipc_load_acquire(&q->r.hdr->paused) &&
	       !ipc_pause_confirmed(&q->r)) {
		if (ipc_now_ns() >= deadline_ns)
			return GPUQ_ETIMEDOUT;
		nanosleep(&nap, NULL);
	}
	return 0;
}

void bqueue_close_intake(struct bqueue *q)
{
	if (q->closed)
		return;
	/* A drain must finish: consumers run again. */
	ipc_store_release(&q->r.hdr->paused, 0u);
	for (uint32_t r = 0; r < q->r.hdr->nrings; r++)
		q->final_heads[r] = ipc_close_intake(&q->r, r);
	q->closed = 1;
	q->closed_at_ns = ipc_now_ns();
	ipc_store_release(&q->r.hdr->state, IPC_BROKER_DRAINING);
}

int bqueue_drained(const struct bqueue *q)
{
	return q->closed && consumed_past(q, q->final_heads);
}

/* One published ticket whose consumer died: its producer's completion
 * entry says GPUQ_EDEVICE, unless the consumer finished it first. */
static int fail_ticket(struct bqueue *q, uint32_t ring, uint64_t t)
{
	const struct ipc_msg_hdr *m = ipc_slot(&q->r, ring, t);
	struct ipc_cq_entry *e;
	uint64_t id = m->id;
	uint64_t s = ipc_load_acquire(ipc_state(&q->r, ring, t));
	if ((s != IPC_STATE(t, IPC_READY) && s != IPC_STATE(t, IPC_READY_VRAM)) ||
	    m->client >= q->r.hdr->max_clients || (m->flags & IPC_MSG_NORESULT))
		return 0;
	struct ipc_outcome o = { GPUQ_EDEVICE, 0, 0, UINT32_MAX, 0 };
	e = ipc_cq_entry(&q->r, m->client, id);
	/* A stamped entry the consumer left half-written (its context died
	 * with writes in flight) is not complete, and is failed like one it
	 * never began. */
	if (ipc_cq_done(&q->r, e, id))
		return 0;
	ipc_cq_publish(&q->r, e, id, &o, NULL);
	return 1;
}

uint64_t bqueue_fail_inflight(struct bqueue *q)
{
	uint64_t n = 0;
	/* The consumers are gone (a lost CUDA context runs nothing), so the
	 * broker is the completion entries' only writer now. */
	for (uint32_t r = 0; r < q->r.hdr->nrings; r++) {
		uint64_t h = ipc_load_acquire(&ipc_ctl(&q->r, r)->head) &
			     ~IPC_HEAD_CLOSED;
		for (uint64_t t = ipc_consumed_frontier(&q->r, r); t < h; t++)
			n += (uint64_t)fail_ticket(q, r, t);
	}
	return n;
}

void bqueue_note_drained(struct bqueue *q, uint64_t now_ns)
{
	if (q->drain_ns || !bqueue_drained(q))
		return;
	q->drain_ns = now_ns > q->closed_at_ns ? now_ns - q->closed_at_ns : 1;
	blog(0, "queue %s: drained in %.1f ms", q->conf.name,
	     (double)q->drain_ns / 1e6);
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
	o->nrings = q->r.hdr->nrings;
	o->ordered = q->r.hdr->ordered;
	o->enqueued = c.published;
	o->completed = c.completed;
	o->retried = c.retried;
	o->dead_lettered = c.dead_lettered;
	o->reclaimed = c.skipped;
	o->full_events = c.full_events;
	o->depth = c.head > c.completed + c.skipped
			   ? c.head - c.completed - c.skipped : 0;
	o->dlq_pending = c.dlq_pending;
	o->dlq_replayed = c.dlq_replayed;
	o->dlq_purged = c.dlq_purged;
	o->dlq_waits = c.dlq_waits;
	o->garbled = c.garbled;
	o->paused = q->r.hdr->paused;
	o->start_ns = q->start_ns;
	o->drain_ns = q->drain_ns;
}

/* ---- dead letters ---- */

/*
 * Dead letters are listed worker by worker, oldest first within each.
 * An entry is there once its own seq mark says so (seq == pos + 1); the
 * worker's dlq_head is not consulted, because the CUDA kernel publishes it
 * only with its counters, at the end of a window.  A window with more
 * failures than the dead-letter ring holds waits for room that only the
 * broker can make, so the broker must see each entry as soon as it is
 * written.  A lap-old entry at the same index has seq == pos + 1 - size,
 * and a never-written one 0, so neither is mistaken for a new one.
 */
const struct ipc_dlq_entry *bqueue_dlq_get(const struct bqueue *q,
					   uint32_t worker, uint64_t pos)
{
	const struct ipc_dlq_entry *d;
	uint64_t tail;
	if (worker >= q->r.hdr->nworkers)
		return NULL;
	tail = q->r.workers[worker].dlq_tail;
	if (pos < tail || pos - tail >= q->r.hdr->dlq_per_worker)
		return NULL;
	d = ipc_dlq_entry(&q->r, worker, pos);
	return ipc_load_acquire(&d->seq) == pos + 1 ? d : NULL;
}

void bqueue_dlq_item(const struct ipc_dlq_entry *d, uint32_t w, uint64_t pos,
		     struct proto_dlq_item *it)
{
	memset(it, 0, sizeof(*it));
	it->worker = w;
	it->ring = d->ring;
	it->pos = pos;
	it->id = d->id;
	it->key = d->key;
	it->status = d->status;
	it->attempts = d->attempts;
	it->len = d->len;
	it->client = d->client;
	it->pid = d->pid;
}

uint32_t bqueue_dlq_list(const struct bqueue *q, uint64_t index,
			 struct proto_dlq_item *out, uint32_t max,
			 uint64_t *total)
{
	uint32_t n = 0;
	*total = 0;
	for (uint32_t w = 0; w < q->r.hdr->nworkers; w++) {
		uint64_t tail = q->r.workers[w].dlq_tail;
		const struct ipc_dlq_entry *d;
		/* up to the first entry not written yet: position order */
		for (uint64_t i = 0; (d = bqueue_dlq_get(q, w, tail + i));
		     i++, (*total)++)
			if (*total >= index && n < max)
				bqueue_dlq_item(d, w, tail + i, &out[n++]);
	}
	return n;
}

/* Publish one dead letter again as the broker's own message (no result
 * wanted).  Returns 0, or GPUQ_EFULL / GPUQ_ESHUTDOWN. */
static int replay_one(struct bqueue *q, const struct ipc_dlq_entry *d)
{
	struct ipc_ring *r = &q->r;
	struct ipc_client *me = &r->clients[IPC_BROKER_CLIENT(r)];
	struct ipc_msg_meta mm;
	uint32_t ring = r->hdr->ordered ? d->ring : 0;
	uint64_t t;
	int rc;
	/* Reserve like any producer (resv_gen odd around it), so reclaim's
	 * reasoning holds for the broker's tickets too. */
	ipc_resv_begin(me);
	rc = ipc_reserve(r, ring, 1, &t);
	if (!rc) {
		ipc_slot_fill(r, ring, t, d + 1, d->len);
		mm.id = me->published;
		mm.key = d->key;
		mm.len = d->len;
		mm.client = (uint16_t)IPC_BROKER_CLIENT(r);
		mm.flags = IPC_MSG_NORESULT;
		ipc_publish(r, ring, t, &mm);
		ipc_store_relaxed(&me->published, me->published + 1);
	}
	ipc_resv_end(me);
	return rc;
}

/* Free the oldest dead letter of worker w. */
static void dlq_pop(struct bqueue *q, uint32_t w)
{
	struct ipc_worker *wk = &q->r.workers[w];
	ipc_store_release(&wk->dlq_tail, wk->dlq_tail + 1);
}

static uint64_t dlq_take(struct bqueue *q, uint64_t n, int replay)
{
	uint64_t done = 0;
	for (uint32_t w = 0; w < q->r.hdr->nworkers && done < n; w++) {
		while (done < n) {
			const struct ipc_dlq_entry *d =
				bqueue_dlq_get(q, w, q->r.workers[w].dlq_tail);
			if (!d)
				break; /* none left, or not written yet */
			if (replay && replay_one(q, d))
				goto out; /* ring full */
			dlq_pop(q, w);
			done++;
		}
	}
out:
	if (replay)
		ipc_store_relaxed(&q->r.hdr->dlq_replayed,
				  q->r.hdr->dlq_replayed + done);
	else
		ipc_store_relaxed(&q->r.hdr->dlq_purged,
				  q->r.hdr->dlq_purged + done);
	return done;
}

/*
 * Dead letters of the broker's internal producer (Track A) have their home
 * elsewhere: the binding writes each one to its Redis dead-letter stream,
 * and until then the entry stays pending in Redis.  Their copies here are
 * freed as soon as they reach the tail, or they would fill the per-worker
 * ring and stall the workers (a dead letter is never dropped otherwise).
 * Runs in the loop thread, like every other writer of dlq_tail.
 */
static void dlq_drop_internal(struct bqueue *q)
{
	uint64_t n = 0;
	if (q->internal_client < 0)
		return;
	for (uint32_t w = 0; w < q->r.hdr->nworkers; w++) {
		for (;;) {
			const struct ipc_dlq_entry *d =
				bqueue_dlq_get(q, w, q->r.workers[w].dlq_tail);
			if (!d || d->client != (uint16_t)q->internal_client)
				break;
			dlq_pop(q, w);
			n++;
		}
	}
	if (n)
		ipc_store_relaxed(&q->r.hdr->dlq_purged,
				  q->r.hdr->dlq_purged + n);
}

uint64_t bqueue_dlq_replay(struct bqueue *q, uint64_t n)
{
	return dlq_take(q, n, 1);
}

uint64_t bqueue_dlq_purge(struct bqueue *q, uint64_t n)
{
	return dlq_take(q, n, 0);
}
