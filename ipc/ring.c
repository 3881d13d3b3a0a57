/* ring.c - layout arithmetic, mapping and the non-inline ring steps. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "ipc/clock.h"
#include "ipc/ring.h"
#include "libclient/gpuq.h"

#define PAGE 4096u
#define MAX_SLOT_BYTES (1u << 24)
#define MAX_CAPACITY (1u << 24)

static int is_pow2(uint32_t v) { return v && !(v & (v - 1)); }
static uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

struct offsets {
	uint64_t ctl, workers, clients, states, slots, cq, dlq, total;
	uint32_t slot_stride, cq_stride, dlq_stride, nrings;
};

static int check_geometry(const struct ipc_geometry *g)
{
	if (!is_pow2(g->capacity) || g->capacity > MAX_CAPACITY ||
	    !is_pow2(g->cq_capacity) || g->cq_capacity > MAX_CAPACITY ||
	    g->slot_bytes == 0 || g->slot_bytes > MAX_SLOT_BYTES ||
	    g->result_bytes > MAX_SLOT_BYTES || g->max_clients == 0 ||
	    g->max_clients >= UINT16_MAX || g->nworkers == 0 ||
	    g->nworkers > IPC_MAX_WORKERS || g->ordered > 1 ||
	    !is_pow2(g->dlq_per_worker) || g->dlq_per_worker > MAX_CAPACITY ||
	    g->stamped > IPC_HAVE_STAMPS || g->cq_stamped > IPC_HAVE_STAMPS)
		return GPUQ_ECONFIG;
	return 0;
}

static int layout(const struct ipc_geometry *g, struct offsets *o)
{
	uint64_t nclients = (uint64_t)g->max_clients + 1; /* + the broker's */
	if (check_geometry(g))
		return GPUQ_ECONFIG;
	o->nrings = g->ordered ? g->nworkers : 1;
	/* Slots are 128-byte aligned (whole cache-line pairs for the CPU, whole
	 * 16-byte vectors for GPU copies); completion entries 16-byte aligned. */
	o->slot_stride = (uint32_t)align_up(
		IPC_MSG_HDR_BYTES + (g->stamped ? ipc_stamp_bytes(g->slot_bytes)
						: g->slot_bytes),
		IPC_LINE);
	o->cq_stride = (uint32_t)align_up(
		IPC_CQ_HDR_BYTES + (g->cq_stamped ? ipc_stamp_bytes(g->result_bytes)
						  : g->result_bytes),
		16);
	o->dlq_stride = (uint32_t)align_up(IPC_DLQ_HDR_BYTES + g->slot_bytes,
					   IPC_LINE);
	o->ctl = align_up(sizeof(struct ipc_hdr), PAGE);
	o->workers = o->ctl + (uint64_t)o->nrings * sizeof(struct ipc_ctl);
	o->clients = o->workers + (uint64_t)g->nworkers *
					  sizeof(struct ipc_worker);
	o->states = align_up(o->clients + nclients * sizeof(struct ipc_client),
			     PAGE);
	o->slots = align_up(o->states + (uint64_t)o->nrings * g->capacity * 8,
			    PAGE);
	o->cq = align_up(o->slots + (uint64_t)o->nrings * g->capacity *
					    o->slot_stride,
			 PAGE);
	o->dlq = align_up(o->cq + (uint64_t)g->max_clients * g->cq_capacity *
					  o->cq_stride,
			  PAGE);
	o->total = align_up(o->dlq + (uint64_t)g->nworkers * g->dlq_per_worker *
					     o->dlq_stride,
			    PAGE);
	return 0;
}

int64_t ipc_layout_size(const struct ipc_geometry *g)
{
	struct offsets o;
	int rc = layout(g, &o);
	return rc ? rc : (int64_t)o.total;
}

static void ring_pointers(struct ipc_ring *r, void *base, size_t size)
{
	struct ipc_hdr *h = base;
	r->base = base;
	r->size = size;
	r->hdr = h;
	r->ctl = (struct ipc_ctl *)((uint8_t *)base + h->ctl_off);
	r->workers = (struct ipc_worker *)((uint8_t *)base + h->workers_off);
	r->clients = (struct ipc_client *)((uint8_t *)base + h->clients_off);
	r->states = (uint64_t *)((uint8_t *)base + h->states_off);
	r->slots = (uint8_t *)base + h->slots_off;
	r->cq = (uint8_t *)base + h->cq_off;
	r->dlq = (uint8_t *)base + h->dlq_off;
	r->mask = h->capacity - 1;
	r->cq_mask = h->cq_capacity - 1;
	r->dlq_mask = h->dlq_per_worker - 1;
}

int ipc_ring_init(struct ipc_ring *r, void *base, size_t size,
		  const struct ipc_geometry *g)
{
	struct offsets o;
	struct ipc_hdr *h = base;
	int rc = layout(g, &o);
	if (rc)
		return rc;
	if (size < o.total)
		return -EINVAL;
	h->magic = IPC_MAGIC;
	h->hdr_bytes = sizeof(*h);
	h->total_bytes = o.total;
	h->capacity = g->capacity;
	h->slot_bytes = g->slot_bytes;
	h->slot_stride = o.slot_stride;
	h->result_bytes = g->result_bytes;
	h->cq_stride = o.cq_stride;
	h->cq_capacity = g->cq_capacity;
	h->max_clients = g->max_clients;
	h->nworkers = g->nworkers;
	h->nrings = o.nrings;
	h->ordered = g->ordered;
	h->dlq_per_worker = g->dlq_per_worker;
	h->dlq_stride = o.dlq_stride;
	h->stamped = g->stamped;
	h->cq_stamped = g->cq_stamped;
	h->dlq_off = o.dlq;
	h->ctl_off = o.ctl;
	h->workers_off = o.workers;
	h->clients_off = o.clients;
	h->states_off = o.states;
	h->slots_off = o.slots;
	h->cq_off = o.cq;
	ring_pointers(r, base, size);
	for (uint32_t ring = 0; ring < o.nrings; ring++)
		for (uint64_t t = 0; t < g->capacity; t++)
			*ipc_state(r, ring, t) = IPC_STATE(t, IPC_FREE);
	/* Worker w starts at ticket 0 until it claims work; a frontier of 0
	 * is always safe. */
	ipc_store_release(&h->layout_version, IPC_LAYOUT_VERSION);
	return 0;
}

/* Validate a header received from a broker before trusting any offset. */
static int check_hdr(const struct ipc_hdr *h, size_t size)
{
	struct ipc_geometry g;
	struct offsets o;
	if (size < sizeof(*h) || h->magic != IPC_MAGIC)
		return GPUQ_EPROTO;
	if (ipc_load_acquire(&h->layout_version) != IPC_LAYOUT_VERSION)
		return GPUQ_EVERSION;
	g.capacity = h->capacity;
	g.slot_bytes = h->slot_bytes;
	g.result_bytes = h->result_bytes;
	g.cq_capacity = h->cq_capacity;
	g.max_clients = h->max_clients;
	g.nworkers = h->nworkers;
	g.ordered = h->ordered;
	g.dlq_per_worker = h->dlq_per_worker;
	g.stamped = h->stamped;
	g.cq_stamped = h->cq_stamped;
	if (layout(&g, &o) || o.total != h->total_bytes || o.total > size ||
	    o.nrings != h->nrings || o.dlq != h->dlq_off ||
	    o.dlq_stride != h->dlq_stride ||
	    o.ctl != h->ctl_off || o.workers != h->workers_off ||
	    o.clients != h->clients_off || o.states != h->states_off ||
	    o.slots != h->slots_off || o.cq != h->cq_off ||
	    o.slot_stride != h->slot_stride || o.cq_stride != h->cq_stride)
		return GPUQ_EPROTO;
	return 0;
}

static int map_prot(struct ipc_ring *r, int fd, size_t size, int prot)
{
	void *p;
	int rc;
	if (size < PAGE)
		return GPUQ_EPROTO;
	p = mmap(NULL, size, prot, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return -errno;
	rc = check_hdr(p, size);
	if (rc) {
		munmap(p, size);
		return rc;
	}
	ring_pointers(r, p, size);
	return 0;
}

int ipc_ring_map(struct ipc_ring *r, int fd, size_t size)
{
	return map_prot(r, fd, size, PROT_READ | PROT_WRITE);
}

int ipc_ring_map_ro(struct ipc_ring *r, int fd, size_t size)
{
	return map_prot(r, fd, size, PROT_READ);
}

void ipc_ring_unmap(struct ipc_ring *r)
{
	if (r->base)
		munmap(r->base, r->size);
	memset(r, 0, sizeof(*r));
}

int ipc_reserve(struct ipc_ring *r, uint32_t ring, uint32_t n, uint64_t *ticket)
{
	uint64_t *head = &ipc_ctl(r, ring)->head;
	uint64_t h = ipc_load_relaxed(head);
	for (;;) {
		if (h & IPC_HEAD_CLOSED)
			return GPUQ_ESHUTDOWN;
		/* Every slot must be free for its own ticket before we claim:
		 * consumers free slots out of order, so checking the last one
		 * alone is not enough. */
		for (uint32_t i = 0; i < n; i++) {
			uint64_t t = h + i;
			if (ipc_load_acquire(ipc_state(r, ring, t)) !=
			    IPC_STATE(t, IPC_FREE))
				return GPUQ_EFULL;
		}
		if (ipc_cas(head, &h, h + n)) {
			*ticket = h;
			return 0;
		}
		/* h now holds the value another producer moved it to. */
	}
}

uint64_t ipc_close_intake(struct ipc_ring *r, uint32_t ring)
{
	uint64_t *head = &ipc_ctl(r, ring)->head;
	uint64_t h = ipc_load_relaxed(head);
	while (!(h & IPC_HEAD_CLOSED) && !ipc_cas(head, &h, h | IPC_HEAD_CLOSED))
		;
	return h & ~IPC_HEAD_CLOSED;
}

uint64_t ipc_consumed_frontier(const struct ipc_ring *r, uint32_t ring)
{
	uint64_t lo = UINT64_MAX;
	if (r->hdr->ordered)
		return ipc_load_acquire(&r->workers[ring].cur);
	for (uint32_t w = 0; w < r->hdr->nworkers; w++) {
		uint64_t c = ipc_load_acquire(&r->workers[w].cur);
		if (c < lo)
			lo = c;
	}
	return lo;
}

uint64_t ipc_skip_unpublished(struct ipc_ring *r, uint32_t ring, uint64_t lo,
			      uint64_t hi)
{
	uint64_t n = 0;
	if (hi > r->hdr->capacity && lo < hi - r->hdr->capacity)
		lo = hi - r->hdr->capacity; /* older tickets are all consumed */
	for (uint64_t t = lo; t < hi; t++) {
		uint64_t *s = ipc_state(r, ring, t);
		if (ipc_load_acquire(s) == IPC_STATE(t, IPC_FREE)) {
			ipc_store_release(s, IPC_STATE(t, IPC_SKIP));
			n++;
		}
	}
	return n;
}

void ipc_counts_read(const struct ipc_ring *r, struct ipc_counts *c)
{
	const struct ipc_hdr *h = r->hdr;
	memset(c, 0, sizeof(*c));
	for (uint32_t w = 0; w < h->nworkers; w++) {
		const struct ipc_worker *wk = &r->workers[w];
		c->completed += ipc_load_relaxed(&wk->completed);
		c->dead_lettered += ipc_load_relaxed(&wk->dead_lettered);
		c->skipped += ipc_load_relaxed(&wk->skipped);
		c->retried += ipc_load_relaxed(&wk->retried);
		c->dlq_waits += ipc_load_relaxed(&wk->dlq_waits);
		c->garbled += ipc_load_relaxed(&wk->garbled);
		/* The CUDA kernel publishes dlq_head with its counters, so
		 * the broker may already have freed entries past it. */
		uint64_t tail = ipc_load_acquire(&wk->dlq_tail);
		uint64_t head = ipc_load_acquire(&wk->dlq_head);
		c->dlq_pending += head > tail ? head - tail : 0;
	}
	c->published = ipc_load_relaxed(&h->retired_published);
	c->full_events = ipc_load_relaxed(&h->retired_full);
	c->dlq_replayed = ipc_load_relaxed(&h->dlq_replayed);
	for (uint32_t b = 0; b < IPC_LAT_BUCKETS; b++)
		c->lat[b] = ipc_load_relaxed(&h->retired_lat[b]);
	c->lat_sum_ns = ipc_load_relaxed(&h->retired_lat_sum_ns);
	c->lat_count = ipc_load_relaxed(&h->retired_lat_count);
	c->dlq_purged = ipc_load_relaxed(&h->dlq_purged);
	for (uint32_t i = 0; i <= h->max_clients; i++) {
		const struct ipc_client *cl = &r->clients[i];
		if (ipc_load_acquire(&cl->state) != IPC_CLIENT_ACTIVE)
			continue;
		c->published += ipc_load_relaxed(&cl->published);
		c->full_events += ipc_load_relaxed(&cl->full_events);
		for (uint32_t b = 0; b < IPC_LAT_BUCKETS; b++)
			c->lat[b] += ipc_load_relaxed(&cl->lat[b]);
		c->lat_sum_ns += ipc_load_relaxed(&cl->lat_sum_ns);
		c->lat_count += ipc_load_relaxed(&cl->lat_count);
	}
	for (uint32_t ring = 0; ring < h->nrings; ring++)
		c->head += ipc_load_relaxed(&ipc_ctl(r, ring)->head) &
			   ~IPC_HEAD_CLOSED;
}

/* The spin budget, from GPUQ_SPIN_US once per process. */
static uint64_t spin_budget_ns(void)
{
	static uint64_t cached = UINT64_MAX;
	uint64_t v = __atomic_load_n(&cached, __ATOMIC_RELAXED);
	if (v == UINT64_MAX) {
		const char *e = getenv("GPUQ_SPIN_US");
		v = e && *e ? strtoull(e, NULL, 10) * 1000ull : 50000ull;
		__atomic_store_n(&cached, v, __ATOMIC_RELAXED);
	}
	return v;
}

void ipc_backoff_wait(struct ipc_backoff *b)
{
	struct timespec ts;
	b->spins++;
	if (b->sleep_ns == 0 && !b->timed_spin) {
		if (b->spins <= 64) {
			ipc_cpu_relax();
			return;
		}
	} else if (b->sleep_ns == 0) {
		/* Read the clock every 32 spins: cheap (vDSO) but not free. */
		if (b->spins % 32 != 1 || b->spin_start_ns == 0 ||
		    ipc_now_ns() - b->spin_start_ns < spin_budget_ns()) {
			if (b->spin_start_ns == 0)
				b->spin_start_ns = ipc_now_ns();
			ipc_cpu_relax();
			return;
		}
	}
	b->sleep_ns = b->sleep_ns ? b->sleep_ns * 2 : 1000;
	if (b->sleep_ns > b->max_sleep_ns)
		b->sleep_ns = b->max_sleep_ns;
	ts.tv_sec = 0;
	ts.tv_nsec = b->sleep_ns;
	nanosleep(&ts, NULL);
}
