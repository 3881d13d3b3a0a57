/* check_ring.c - the slot-ring protocol (ipc/ring.h) in one process: the
 * test plays producer, consumer and broker by hand on memory laid out by
 * ipc_ring_init(), plus ipc_ring_map() header validation on a memfd and a
 * two-thread producer/consumer run. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bench/reference.h"
#include "ipc/cq.h"
#include "ipc/layout.h"
#include "ipc/ring.h"
#include "libclient/gpuq.h"
#include "tests/runner.h"

Suite *suite_ring(void);

#define PAGE 4096u

static const struct ipc_geometry small_geom = {
	.capacity = 8,
	.slot_bytes = 64,
	.result_bytes = 16,
	.cq_capacity = 16,
	.max_clients = 2,
	.nworkers = 1,
	.ordered = 0,
	.dlq_per_worker = 16,
};

/* One ring per worker: 4 rings of 8 slots. */
static const struct ipc_geometry ordered_geom = {
	.capacity = 8,
	.slot_bytes = 64,
	.result_bytes = 16,
	.cq_capacity = 16,
	.max_clients = 2,
	.nworkers = 4,
	.ordered = 1,
	.dlq_per_worker = 16,
};

/* Zero-filled, page-aligned memory initialised as a queue of geometry g. */
static void *ring_new(struct ipc_ring *r, const struct ipc_geometry *g)
{
	int64_t sz = ipc_layout_size(g);
	void *base;

	ck_assert_int_gt(sz, 0);
	ck_assert_int_eq(sz % PAGE, 0);
	base = aligned_alloc(PAGE, (size_t)sz);
	ck_assert_ptr_nonnull(base);
	memset(base, 0, (size_t)sz);
	memset(r, 0, sizeof(*r));
	ck_assert_int_eq(ipc_ring_init(r, base, (size_t)sz, g), 0);
	return base;
}

static uint8_t *payload_in(const struct ipc_ring *r, uint32_t ring,
			   uint64_t t)
{
	return (uint8_t *)(ipc_slot(r, ring, t) + 1);
}

/* The single-ring cases all use ring 0. */
static uint8_t *payload(const struct ipc_ring *r, uint64_t t)
{
	return payload_in(r, 0, t);
}

/* ipc_publish() with the message header fields given one by one (key 0,
 * no flags), in the order the single-ring tests were written with. */
static void publish_msg(struct ipc_ring *r, uint32_t ring, uint64_t ticket,
			uint16_t client, uint64_t id, uint32_t len)
{
	struct ipc_msg_meta mm;

	memset(&mm, 0, sizeof(mm));
	mm.id = id;
	mm.len = len;
	mm.client = client;
	ipc_publish(r, ring, ticket, &mm);
}

/* Producer: reserve one ticket, write the message for id, publish it. */
static int produce(struct ipc_ring *r, uint64_t id, uint32_t len,
		   uint64_t *ticket)
{
	int rc = ipc_reserve(r, 0, 1, ticket);

	if (rc)
		return rc;
	ref_fill(payload(r, *ticket), len, id);
	publish_msg(r, 0, *ticket, 0, id, len);
	return 0;
}

/* Consumer: ticket t must be READY and hold message id of len bytes; check
 * it, post its length as a 4-byte result, free the slot. */
static void consume(struct ipc_ring *r, uint64_t t, uint64_t id, uint32_t len)
{
	uint8_t want[256];
	struct ipc_msg_hdr *m = ipc_slot(r, 0, t);
	struct ipc_cq_entry *e;

	ck_assert_uint_le(len, sizeof(want));
	ck_assert_int_eq(ipc_take(r, 0, t), IPC_TAKE_READY);
	ck_assert_uint_eq(m->id, id);
	ck_assert_uint_eq(m->len, len);
	ck_assert_uint_eq(m->client, 0);
	ref_fill(want, len, id);
	ck_assert_mem_eq(payload(r, t), want, len);

	e = ipc_cq_entry(r, m->client, m->id);
	memcpy(e + 1, &len, 4);
	{
		struct ipc_outcome o = { .status = 0, .len = 4, .attempts = 1,
					 .worker = 0,
					 .seq = r->workers[0].completed };
		ipc_cq_publish(r, e, m->id, &o, e + 1);
	}
	ipc_release_slot(r, 0, t);
	ipc_store_release(&r->workers[0].cur, t + 1);
	r->workers[0].completed++;
	ck_assert_uint_eq(r->states[t & r->mask],
			  IPC_STATE(t + r->hdr->capacity, IPC_FREE));
}

static uint64_t head_of(const struct ipc_ring *r, uint32_t ring)
{
	return ipc_load_relaxed(&ipc_ctl(r, ring)->head);
}

static uint64_t head(const struct ipc_ring *r)
{
	return head_of(r, 0);
}

/* ---- layout ---- */

START_TEST(test_layout_bad_geometry)
{
	static const struct {
		const char *what;
		struct ipc_geometry g;
	} bad[] = {
		{ "capacity 0", { 0, 64, 16, 16, 2, 1, 0, 16, 0, 0 } },
		{ "capacity 3", { 3, 64, 16, 16, 2, 1, 0, 16, 0, 0 } },
		{ "capacity 12", { 12, 64, 16, 16, 2, 1, 0, 16, 0, 0 } },
		{ "capacity 2^k+1", { 1025, 64, 16, 16, 2, 1, 0, 16, 0, 0 } },
		{ "cq_capacity 0", { 8, 64, 16, 0, 2, 1, 0, 16, 0, 0 } },
		{ "cq_capacity 3", { 8, 64, 16, 3, 2, 1, 0, 16, 0, 0 } },
		{ "cq_capacity 100", { 8, 64, 16, 100, 2, 1, 0, 16, 0, 0 } },
		{ "slot_bytes 0", { 8, 0, 16, 16, 2, 1, 0, 16, 0, 0 } },
		{ "max_clients 0", { 8, 64, 16, 16, 0, 1, 0, 16, 0, 0 } },
		{ "nworkers 0", { 8, 64, 16, 16, 2, 0, 0, 16, 0, 0 } },
		{ "nworkers > max",
		  { 8, 64, 16, 16, 2, IPC_MAX_WORKERS + 1, 0, 16, 0, 0 } },
		{ "dlq_per_worker 0", { 8, 64, 16, 16, 2, 1, 0, 0, 0, 0 } },
		{ "dlq_per_worker 3", { 8, 64, 16, 16, 2, 1, 0, 3, 0, 0 } },
		{ "dlq_per_worker 12", { 8, 64, 16, 16, 2, 1, 0, 12, 0, 0 } },
		{ "dlq_per_worker 2^k+1", { 8, 64, 16, 16, 2, 1, 0, 17, 0, 0 } },
		{ "ordered 2", { 8, 64, 16, 16, 2, 1, 2, 16, 0, 0 } },
		{ "ordered 2, 4 workers", { 8, 64, 16, 16, 2, 4, 2, 16, 0, 0 } },
		{ "ordered -1", { 8, 64, 16, 16, 2, 4, 0xffffffffu, 16, 0, 0 } },
		{ "ordered, nworkers 0", { 8, 64, 16, 16, 2, 0, 1, 16, 0, 0 } },
		{ "stamped 2", { 8, 64, 16, 16, 2, 1, 0, 16, 2, 0 } },
		{ "cq_stamped 2", { 8, 64, 16, 16, 2, 1, 0, 16, 0, 2 } },
	};
	struct ipc_geometry g = small_geom;
	struct ipc_ring r;
	uint8_t mem[64];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_msg(ipc_layout_size(&bad[i].g) == GPUQ_ECONFIG,
			      "%s: got %lld", bad[i].what,
			      (long long)ipc_layout_size(&bad[i].g));
		/* init refuses the same geometry before touching memory */
		memset(mem, 0, sizeof(mem));
		ck_assert_int_eq(ipc_ring_init(&r, mem, sizeof(mem), &bad[i].g),
				 GPUQ_ECONFIG);
	}
	/* The edges that are allowed. */
	g.nworkers = IPC_MAX_WORKERS;
	ck_assert_int_gt(ipc_layout_size(&g), 0);
	g = small_geom;
	g.capacity = 1;
	g.cq_capacity = 1;
	g.max_clients = 1;
	g.result_bytes = 0;
	ck_assert_int_gt(ipc_layout_size(&g), 0);
	g = small_geom;
	g.dlq_per_worker = 1;
	ck_assert_int_gt(ipc_layout_size(&g), 0);
	g = ordered_geom;
	ck_assert_int_gt(ipc_layout_size(&g), 0);
	g.nworkers = 1;
	ck_assert_int_gt(ipc_layout_size(&g), 0);
	g.nworkers = IPC_MAX_WORKERS;
	ck_assert_int_gt(ipc_layout_size(&g), 0);
	/* an ordered queue needs a ring per worker: more room than unordered */
	g = ordered_geom;
	g.capacity = 64;
	{
		struct ipc_geometry u = g;
		u.ordered = 0;
		/* at least 3 more rings of 64 slots of 128 bytes */
		ck_assert_int_ge(ipc_layout_size(&g),
				 ipc_layout_size(&u) + 3 * 64 * 128);
	}
}
END_TEST

START_TEST(test_layout_offsets)
{
	struct ipc_geometry g = { 64, 100, 40, 32, 5, 3, 0, 16, 0, 0 };
	struct ipc_ring r;
	void *base = ring_new(&r, &g);
	const struct ipc_hdr *h = r.hdr;
	uint8_t *end = (uint8_t *)base + h->total_bytes;
	struct ipc_cq_entry *last;

	ck_assert_uint_eq(h->total_bytes, (uint64_t)ipc_layout_size(&g));
	ck_assert_uint_eq(h->slot_stride % IPC_LINE, 0);
	ck_assert_uint_ge(h->slot_stride, IPC_MSG_HDR_BYTES + g.slot_bytes);
	ck_assert_uint_eq(h->cq_stride % 16, 0);
	ck_assert_uint_ge(h->cq_stride, IPC_CQ_HDR_BYTES + g.result_bytes);
	ck_assert_uint_ge(h->ctl_off, sizeof(struct ipc_hdr));
	ck_assert_uint_ge(h->workers_off, h->ctl_off + sizeof(struct ipc_ctl));
	ck_assert_uint_ge(h->clients_off, h->workers_off +
				g.nworkers * sizeof(struct ipc_worker));
	ck_assert_uint_ge(h->states_off, h->clients_off +
				g.max_clients * sizeof(struct ipc_client));
	/* ... and the broker's own entry after the clients' */
	ck_assert_uint_ge(h->states_off,
			  h->clients_off + (g.max_clients + 1) *
						   sizeof(struct ipc_client));
	ck_assert_uint_eq(IPC_BROKER_CLIENT(&r), g.max_clients);
	ck_assert_uint_eq(h->nrings, 1);
	ck_assert_uint_eq(h->ordered, 0);
	ck_assert_uint_ge(h->slots_off, h->states_off + 8ull * g.capacity);
	ck_assert_uint_ge(h->cq_off, h->slots_off +
				(uint64_t)g.capacity * h->slot_stride);
	ck_assert_uint_ge(h->total_bytes,
			  h->cq_off + (uint64_t)g.max_clients * g.cq_capacity *
					      h->cq_stride);
	ck_assert_uint_eq(h->ctl_off % IPC_LINE, 0);
	ck_assert_uint_eq(h->workers_off % IPC_LINE, 0);
	ck_assert_uint_eq(h->clients_off % IPC_LINE, 0);
	ck_assert_uint_eq(h->slots_off % IPC_LINE, 0);
	ck_assert_uint_eq(h->cq_off % 16, 0);

	/* The last slot and the last completion entry lie inside. */
	ck_assert(payload(&r, g.capacity - 1) + g.slot_bytes <= end);
	last = ipc_cq_entry(&r, g.max_clients - 1, g.cq_capacity - 1);
	ck_assert((uint8_t *)(last + 1) + g.result_bytes <= end);
	/* Completion areas of different clients do not overlap. */
	ck_assert_ptr_eq((uint8_t *)ipc_cq_entry(&r, 1, 0),
			 (uint8_t *)ipc_cq_entry(&r, 0, 0) +
				 (size_t)g.cq_capacity * h->cq_stride);
	/* ids wrap within a client's area */
	ck_assert_ptr_eq(ipc_cq_entry(&r, 2, 5),
			 ipc_cq_entry(&r, 2, 5 + g.cq_capacity));
	/* the broker's client entry is inside and writable (ASan checks) */
	memset(&r.clients[IPC_BROKER_CLIENT(&r)], 0x5a,
	       sizeof(struct ipc_client));
	ck_assert((uint8_t *)&r.clients[IPC_BROKER_CLIENT(&r) + 1] <=
		  (uint8_t *)base + h->states_off);

	/* init refuses memory smaller than the layout */
	{
		struct ipc_ring r2;
		void *b2 = calloc(1, h->total_bytes);
		ck_assert_ptr_nonnull(b2);
		ck_assert_int_ne(ipc_ring_init(&r2, b2, h->total_bytes - 1, &g),
				 0);
		free(b2);
	}
	free(base);
}
END_TEST

/* Every region of a queue of geometry g fits before the next one. */
static void check_regions(const struct ipc_geometry *g)
{
	struct ipc_ring r;
	void *base = ring_new(&r, g);
	const struct ipc_hdr *h = r.hdr;
	uint64_t nr = g->ordered ? g->nworkers : 1;
	uint64_t nc = g->max_clients + 1ull; /* + the broker's entry */

	ck_assert_uint_eq(h->nrings, nr);
	ck_assert_uint_ge(h->ctl_off, sizeof(*h));
	ck_assert_uint_ge(h->workers_off, h->ctl_off + nr * IPC_LINE);
	ck_assert_uint_ge(h->clients_off,
			  h->workers_off +
				  g->nworkers * sizeof(struct ipc_worker));
	ck_assert_msg(h->states_off >=
			      h->clients_off + nc * sizeof(struct ipc_client),
		      "ordered %u, %u workers, %u clients: no room for the "
		      "broker's entry",
		      g->ordered, g->nworkers, g->max_clients);
	ck_assert_uint_ge(h->slots_off, h->states_off + nr * g->capacity * 8);
	ck_assert_uint_ge(h->cq_off,
			  h->slots_off + nr * g->capacity * h->slot_stride);
	ck_assert_uint_ge(h->dlq_off,
			  h->cq_off + (uint64_t)g->max_clients *
					      g->cq_capacity * h->cq_stride);
	ck_assert_uint_ge(h->total_bytes,
			  h->dlq_off + (uint64_t)g->nworkers *
					       g->dlq_per_worker *
					       h->dlq_stride);
	/* the broker's entry is writable (ASan) */
	memset(&r.clients[IPC_BROKER_CLIENT(&r)], 0,
	       sizeof(struct ipc_client));
	free(base);
}

/* Over many small geometries: some put a region's end exactly on a page
 * boundary, where an off-by-one in a count would hide in the padding. */
START_TEST(test_layout_sweep)
{
	struct ipc_geometry g = small_geom;

	g.dlq_per_worker = 4;
	for (g.ordered = 0; g.ordered <= 1; g.ordered++)
		for (g.nworkers = 1; g.nworkers <= 8; g.nworkers++)
			for (g.max_clients = 1; g.max_clients <= 40;
			     g.max_clients++)
				check_regions(&g);
}
END_TEST

START_TEST(test_init_states)
{
	struct ipc_geometry g = small_geom;
	struct ipc_ring r;
	void *base;

	g.nworkers = 4;
	base = ring_new(&r, &g);
	ck_assert_ptr_eq(r.base, base);
	ck_assert_uint_eq(r.hdr->magic, IPC_MAGIC);
	ck_assert_uint_eq(r.hdr->layout_version, IPC_LAYOUT_VERSION);
	ck_assert_uint_eq(r.hdr->capacity, 8);
	ck_assert_uint_eq(r.hdr->slot_bytes, 64);
	ck_assert_uint_eq(r.hdr->result_bytes, 16);
	ck_assert_uint_eq(r.hdr->cq_capacity, 16);
	ck_assert_uint_eq(r.hdr->max_clients, 2);
	ck_assert_uint_eq(r.hdr->nworkers, 4);
	ck_assert_uint_eq(r.mask, 7);
	ck_assert_uint_eq(r.cq_mask, 15);
	ck_assert_uint_eq(head(&r), 0);
	for (uint64_t t = 0; t < 8; t++) {
		ck_assert_uint_eq(r.states[t], IPC_STATE(t, IPC_FREE));
		ck_assert_int_eq(ipc_take(&r, 0, t), IPC_TAKE_WAIT);
	}
	for (uint32_t w = 0; w < 4; w++)
		ck_assert_uint_eq(r.workers[w].cur, 0);
	ck_assert_uint_eq(ipc_consumed_frontier(&r, 0), 0);
	free(base);
}
END_TEST

/* ---- producer / consumer steps ---- */

START_TEST(test_single_message)
{
	struct ipc_ring r;
	void *base = ring_new(&r, &small_geom);
	struct ipc_cq_entry *e;
	uint64_t t = 99;
	uint32_t res;
	struct ipc_counts c;

	r.clients[0].state = IPC_CLIENT_ACTIVE;
	ck_assert_int_eq(ipc_reserve(&r, 0, 1, &t), 0);
	ck_assert_uint_eq(t, 0);
	ck_assert_uint_eq(head(&r), 1);
	/* reserved, not published: still WAIT for the consumer */
	ck_assert_int_eq(ipc_take(&r, 0, 0), IPC_TAKE_WAIT);
	memcpy(payload(&r, t), "hello", 5);
	publish_msg(&r, 0, t, 1, 42, 5);
	r.clients[0].published++;
	ck_assert_uint_eq(r.states[0], IPC_STATE(0, IPC_READY));
	ck_assert_int_eq(ipc_take(&r, 0, 0), IPC_TAKE_READY);
	ck_assert_uint_eq(ipc_slot(&r, 0, 0)->id, 42);
	ck_assert_uint_eq(ipc_slot(&r, 0, 0)->len, 5);
	ck_assert_uint_eq(ipc_slot(&r, 0, 0)->client, 1);
	ck_assert_uint_eq(ipc_slot(&r, 0, 0)->flags, 0);
	ck_assert_mem_eq(payload(&r, 0), "hello", 5);

	e = ipc_cq_entry(&r, 1, 42);
	ck_assert_uint_eq(e->done, 0);
	res = 0xdeadbeef;
	memcpy(e + 1, &res, 4);
	{
		struct ipc_outcome o = { .status = GPUQ_EHANDLER, .len = 4,
					 .attempts = 3, .worker = 0, .seq = 0 };
		ipc_cq_publish(&r, e, 42, &o, e + 1);
	}
	ck_assert_uint_eq(e->done, 43);
	ck_assert_int_eq(e->status, GPUQ_EHANDLER);
	ck_assert_uint_eq(e->len, 4);
	ck_assert_uint_eq(e->attempts, 3);
	ck_assert_uint_eq(e->worker, 0);
	ck_assert_uint_eq(e->seq, 0);
	ipc_release_slot(&r, 0, 0);
	r.workers[0].cur = 1;
	r.workers[0].completed = 1;
	r.workers[0].dead_lettered = 1;
	ck_assert_uint_eq(r.states[0], IPC_STATE(8, IPC_FREE));
	ck_assert_int_eq(ipc_take(&r, 0, 0), IPC_TAKE_WAIT);
	ck_assert_uint_eq(ipc_consumed_frontier(&r, 0), 1);

	ipc_counts_read(&r, &c);
	ck_assert_uint_eq(c.published, 1);
	ck_assert_uint_eq(c.completed, 1);
	ck_assert_uint_eq(c.dead_lettered, 1);
	ck_assert_uint_eq(c.head, 1);

	/* next ticket follows */
	ck_assert_int_eq(ipc_reserve(&r, 0, 1, &t), 0);
	ck_assert_uint_eq(t, 1);
	free(base);
}
END_TEST

/* Capacity 8, 100 messages, in lock step (fill, find full, drain) and then
 * with a sliding window, so every slot is reused many laps over. */
START_TEST(test_wrap_laps)
{
	struct ipc_ring r;
	void *base = ring_new(&r, &small_geom);
	uint64_t t, id = 0, tail = 0, h0;
	uint32_t len;

	/* lock step: 12 full laps + a half */
	while (id < 100) {
		uint64_t first = id;
		for (int i = 0; i < 8 && id < 100; i++, id++) {
			len = 1 + (uint32_t)(id % 64);
			ck_assert_int_eq(produce(&r, id, len, &t), 0);
			ck_assert_uint_eq(t, id);
		}
		if (id - first == 8) {
			h0 = head(&r);
			ck_assert_int_eq(ipc_reserve(&r, 0, 1, &t), GPUQ_EFULL);
			ck_assert_uint_eq(head(&r), h0);
		}
		for (uint64_t k = first; k < id; k++)
			consume(&r, k, k, 1 + (uint32_t)(k % 64));
	}
	ck_assert_uint_eq(head(&r), 100);
	ck_assert_uint_eq(ipc_consumed_frontier(&r, 0), 100);
	/* completion entry of the last id */
	ck_assert_uint_eq(ipc_cq_entry(&r, 0, 99)->done, 100);

	/* sliding window of 5 in flight for another 100 */
	tail = id;
	for (; id < 200; id++) {
		len = 64 - (uint32_t)(id % 64);
		ck_assert_int_eq(produce(&r, id, len, &t), 0);
		ck_assert_uint_eq(t, id);
		if (id - tail + 1 == 5) {
			consume(&r, tail, tail, 64 - (uint32_t)(tail % 64));
			tail++;
		}
	}
	for (; tail < id; tail++)
		consume(&r, tail, tail, 64 - (uint32_t)(tail % 64));
	for (uint64_t s = 0; s < 8; s++)
		ck_assert_uint_eq(r.states[s], IPC_STATE(200 + s, IPC_FREE));
	free(base);
}
END_TEST

START_TEST(test_full)
{
	struct ipc_ring r;
	void *base = ring_new(&r, &small_geom);
	uint64_t t = 1234;

	for (uint64_t i = 0; i < 8; i++) {
		ck_assert_int_eq(ipc_reserve(&r, 0, 1, &t), 0);
		ck_assert_uint_eq(t, i);
	}
	t = 1234;
	ck_assert_int_eq(ipc_reserve(&r, 0, 1, &t), GPUQ_EFULL);
	ck_assert_uint_eq(t, 1234);
	ck_assert_uint_eq(head(&r), 8);
	ck_assert_int_eq(ipc_reserve(&r, 0, 3, &t), GPUQ_EFULL);
	ck_assert_uint_eq(head(&r), 8);
	/* publishing does not make room; only the consumer does */
	for (uint64_t i = 0; i < 8; i++) {
		ref_fill(payload(&r, i), 8, i);
		publish_msg(&r, 0, i, 0, i, 8);
	}
	ck_assert_int_eq(ipc_reserve(&r, 0, 1, &t), GPUQ_EFULL);
	ck_assert_uint_eq(head(&r), 8);
	for (uint64_t i = 0; i < 8; i++)
		ck_assert_uint_eq(r.states[i], IPC_STATE(i, IPC_READY));
	consume(&r, 0, 0, 8);
	ck_assert_int_eq(ipc_reserve(&r, 0, 1, &t), 0);
	ck_assert_uint_eq(t, 8);
	ck_assert_int_eq(ipc_reserve(&r, 0, 1, &t), GPUQ_EFULL);
	ck_assert_uint_eq(head(&r), 9);
	free(base);
}
END_TEST

/* A batch larger than the ring can never be granted. */
START_TEST(test_batch_larger_than_ring)
{
	struct ipc_ring r;
	void *base = ring_new(&r, &small_geom);
	uint64_t t;

	ck_assert_int_eq(ipc_reserve(&r, 0, 9, &t), GPUQ_EFULL);
	ck_assert_uint_eq(head(&r), 0);
	ck_assert_int_eq(ipc_reserve(&r, 0, 8, &t), 0);
	ck_assert_uint_eq(t, 0);
	ck_assert_uint_eq(head(&r), 8);
	free(base);
}
END_TEST

START_TEST(test_batch)
{
	struct ipc_ring r;
	void *base = ring_new(&r, &small_geom);
	uint64_t t;

	ck_assert_int_eq(ipc_reserve(&r, 0, 3, &t), 0);
	ck_assert_uint_eq(t, 0);
	ck_assert_uint_eq(head(&r), 3);
	ck_assert_int_eq(ipc_reserve(&r, 0, 6, &t), GPUQ_EFULL);
	ck_assert_uint_eq(head(&r), 3);
	ck_assert_int_eq(ipc_reserve(&r, 0, 5, &t), 0);
	ck_assert_uint_eq(t, 3);
	ck_assert_uint_eq(head(&r), 8);
	for (uint64_t i = 0; i < 8; i++) {
		ref_fill(payload(&r, i), 16, i);
		publish_msg(&r, 0, i, 0, i, 16);
	}

	/* Consumers free out of order: slot 1 (ticket 9's) before slot 0
	 * (ticket 8's).  A batch of 2 at ticket 8 must not be granted on
	 * the strength of its last slot alone. */
	ck_assert_int_eq(ipc_take(&r, 0, 1), IPC_TAKE_READY);
	ipc_release_slot(&r, 0, 1);
	ck_assert_int_eq(ipc_reserve(&r, 0, 2, &t), GPUQ_EFULL);
	ck_assert_uint_eq(head(&r), 8);
	ck_assert_int_eq(ipc_reserve(&r, 0, 1, &t), GPUQ_EFULL);
	ck_assert_uint_eq(head(&r), 8);
	ipc_release_slot(&r, 0, 0);
	ck_assert_int_eq(ipc_reserve(&r, 0, 2, &t), 0);
	ck_assert_uint_eq(t, 8);
	ck_assert_uint_eq(head(&r), 10);

	/* First slot free, second not. */
	ipc_release_slot(&r, 0, 2);
	ck_assert_int_eq(ipc_reserve(&r, 0, 2, &t), GPUQ_EFULL);
	ck_assert_uint_eq(head(&r), 10);
	/* Free slot in the middle of a batch of 3 missing at the end. */
	ipc_release_slot(&r, 0, 3);
	ipc_release_slot(&r, 0, 5);
	ck_assert_int_eq(ipc_reserve(&r, 0, 4, &t), GPUQ_EFULL);
	ck_assert_uint_eq(head(&r), 10);
	ck_assert_int_eq(ipc_reserve(&r, 0, 2, &t), 0);
	ck_assert_uint_eq(t, 10);
	ck_assert_uint_eq(head(&r), 12);
	/* The tickets handed out: their slots are FREE for exactly them. */
	for (uint64_t k = 8; k < 12; k++)
		ck_assert_uint_eq(r.states[k & 7], IPC_STATE(k, IPC_FREE));
	free(base);
}
END_TEST

START_TEST(test_take_transitions)
{
	struct ipc_ring r;
	void *base = ring_new(&r, &small_geom);
	uint64_t t;

	ck_assert_int_eq(ipc_take(&r, 0, 0), IPC_TAKE_WAIT);
	ck_assert_int_eq(ipc_reserve(&r, 0, 2, &t), 0);
	ck_assert_int_eq(ipc_take(&r, 0, 0), IPC_TAKE_WAIT);
	publish_msg(&r, 0, 0, 0, 0, 1);
	ck_assert_int_eq(ipc_take(&r, 0, 0), IPC_TAKE_READY);
	/* the same slot on later laps: not ready for those tickets */
	ck_assert_int_eq(ipc_take(&r, 0, 8), IPC_TAKE_WAIT);
	ck_assert_int_eq(ipc_take(&r, 0, 16), IPC_TAKE_WAIT);
	/* and another slot's ticket is not affected */
	ck_assert_int_eq(ipc_take(&r, 0, 1), IPC_TAKE_WAIT);

	/* ticket 1 reserved and abandoned: broker skips it */
	ck_assert_uint_eq(ipc_skip_unpublished(&r, 0, 1, 2), 1);
	ck_assert_int_eq(ipc_take(&r, 0, 1), IPC_TAKE_SKIP);
	ck_assert_int_eq(ipc_take(&r, 0, 9), IPC_TAKE_WAIT);

	ipc_release_slot(&r, 0, 0);
	ipc_release_slot(&r, 0, 1);
	ck_assert_int_eq(ipc_take(&r, 0, 0), IPC_TAKE_WAIT);
	ck_assert_int_eq(ipc_take(&r, 0, 8), IPC_TAKE_WAIT);
	ck_assert_int_eq(ipc_take(&r, 0, 1), IPC_TAKE_WAIT);

	/* lap 2: ticket 8 in slot 0 */
	ck_assert_int_eq(ipc_reserve(&r, 0, 6, &t), 0);
	ck_assert_uint_eq(t, 2);
	ck_assert_int_eq(ipc_reserve(&r, 0, 1, &t), 0);
	ck_assert_uint_eq(t, 8);
	publish_msg(&r, 0, 8, 0, 8, 1);
	ck_assert_int_eq(ipc_take(&r, 0, 8), IPC_TAKE_READY);
	ck_assert_int_eq(ipc_take(&r, 0, 0), IPC_TAKE_WAIT);
	ck_assert_int_eq(ipc_take(&r, 0, 16), IPC_TAKE_WAIT);

	/* A stale READY left from a previous lap (written by hand) reads as
	 * WAIT for the current ticket, and so does a stale SKIP. */
	r.states[3] = IPC_STATE(3, IPC_READY);
	ck_assert_int_eq(ipc_take(&r, 0, 11), IPC_TAKE_WAIT);
	ck_assert_int_eq(ipc_take(&r, 0, 3), IPC_TAKE_READY);
	r.states[3] = IPC_STATE(3, IPC_SKIP);
	ck_assert_int_eq(ipc_take(&r, 0, 11), IPC_TAKE_WAIT);
	ck_assert_int_eq(ipc_take(&r, 0, 3), IPC_TAKE_SKIP);
	free(base);
}
END_TEST

/* ---- broker steps ---- */

START_TEST(test_close_intake)
{
	struct ipc_ring r;
	void *base = ring_new(&r, &small_geom);
	uint64_t t = 77;
	struct ipc_counts c;

	ck_assert_int_eq(ipc_reserve(&r, 0, 3, &t), 0);
	ck_assert_uint_eq(ipc_close_intake(&r, 0), 3);
	ck_assert_uint_eq(head(&r), 3 | IPC_HEAD_CLOSED);
	t = 77;
	ck_assert_int_eq(ipc_reserve(&r, 0, 1, &t), GPUQ_ESHUTDOWN);
	ck_assert_int_eq(ipc_reserve(&r, 0, 2, &t), GPUQ_ESHUTDOWN);
	ck_assert_uint_eq(t, 77);
	ck_assert_uint_eq(head(&r), 3 | IPC_HEAD_CLOSED);
	/* closing again changes nothing and gives the same count */
	ck_assert_uint_eq(ipc_close_intake(&r, 0), 3);
	ck_assert_uint_eq(head(&r), 3 | IPC_HEAD_CLOSED);
	ipc_counts_read(&r, &c);
	ck_assert_uint_eq(c.head, 3);
	/* tickets reserved before the close can still be published and
	 * consumed */
	for (uint64_t i = 0; i < 3; i++) {
		ref_fill(payload(&r, i), 4, i);
		publish_msg(&r, 0, i, 0, i, 4);
		consume(&r, i, i, 4);
	}
	ck_assert_int_eq(ipc_reserve(&r, 0, 1, &t), GPUQ_ESHUTDOWN);
	free(base);
}
END_TEST

START_TEST(test_close_full_ring)
{
	struct ipc_ring r;
	void *base = ring_new(&r, &small_geom);
	uint64_t t;

	ck_assert_uint_eq(ipc_close_intake(&r, 0), 0);
	ck_assert_int_eq(ipc_reserve(&r, 0, 1, &t), GPUQ_ESHUTDOWN);
	ck_assert_uint_eq(head(&r), IPC_HEAD_CLOSED);
	free(base);

	base = ring_new(&r, &small_geom);
	ck_assert_int_eq(ipc_reserve(&r, 0, 8, &t), 0);
	ck_assert_uint_eq(ipc_close_intake(&r, 0), 8);
	/* closed wins over full: producers must learn to stop */
	ck_assert_int_eq(ipc_reserve(&r, 0, 1, &t), GPUQ_ESHUTDOWN);
	free(base);
}
END_TEST

START_TEST(test_skip_unpublished)
{
	struct ipc_ring r;
	void *base = ring_new(&r, &small_geom);
	uint64_t t;

	ck_assert_int_eq(ipc_reserve(&r, 0, 4, &t), 0);
	publish_msg(&r, 0, 0, 0, 0, 1);
	publish_msg(&r, 0, 2, 0, 2, 1);
	/* sub-range first: only ticket 1 of [1, 3) is unpublished */
	ck_assert_uint_eq(ipc_skip_unpublished(&r, 0, 1, 3), 1);
	ck_assert_uint_eq(r.states[1], IPC_STATE(1, IPC_SKIP));
	ck_assert_uint_eq(r.states[3], IPC_STATE(3, IPC_FREE));
	ck_assert_uint_eq(ipc_skip_unpublished(&r, 0, 0, 4), 1);
	ck_assert_uint_eq(r.states[0], IPC_STATE(0, IPC_READY));
	ck_assert_uint_eq(r.states[1], IPC_STATE(1, IPC_SKIP));
	ck_assert_uint_eq(r.states[2], IPC_STATE(2, IPC_READY));
	ck_assert_uint_eq(r.states[3], IPC_STATE(3, IPC_SKIP));
	for (uint64_t s = 4; s < 8; s++)
		ck_assert_uint_eq(r.states[s], IPC_STATE(s, IPC_FREE));
	/* nothing left to mark */
	ck_assert_uint_eq(ipc_skip_unpublished(&r, 0, 0, 4), 0);
	ck_assert_uint_eq(ipc_skip_unpublished(&r, 0, 2, 2), 0);
	ck_assert_int_eq(ipc_take(&r, 0, 1), IPC_TAKE_SKIP);
	ck_assert_int_eq(ipc_take(&r, 0, 3), IPC_TAKE_SKIP);
	free(base);
}
END_TEST

/* After laps, a range reaching back more than a ring's worth only touches
 * the last capacity tickets, and slots already freed for a later lap are
 * not marked. */
START_TEST(test_skip_after_laps)
{
	struct ipc_ring r;
	void *base = ring_new(&r, &small_geom);
	uint64_t t;

	for (uint64_t i = 0; i < 8; i++) {
		ck_assert_int_eq(produce(&r, i, 8, &t), 0);
		consume(&r, i, i, 8);
	}
	ck_assert_int_eq(ipc_reserve(&r, 0, 4, &t), 0);
	ck_assert_uint_eq(t, 8);
	ref_fill(payload(&r, 8), 8, 8);
	publish_msg(&r, 0, 8, 0, 8, 8);
	/* tickets 9, 10, 11 are unpublished; slots 4..7 hold FREE(12..15) */
	ck_assert_uint_eq(ipc_skip_unpublished(&r, 0, 0, 12), 3);
	ck_assert_uint_eq(r.states[0], IPC_STATE(8, IPC_READY));
	for (uint64_t k = 9; k < 12; k++)
		ck_assert_uint_eq(r.states[k & 7], IPC_STATE(k, IPC_SKIP));
	for (uint64_t k = 12; k < 16; k++)
		ck_assert_uint_eq(r.states[k & 7], IPC_STATE(k, IPC_FREE));
	free(base);
}
END_TEST

START_TEST(test_frontier)
{
	struct ipc_geometry g = small_geom;
	struct ipc_ring r;
	void *base;

	g.nworkers = 3;
	base = ring_new(&r, &g);
	r.workers[0].cur = 5;
	r.workers[1].cur = 2;
	r.workers[2].cur = 9;
	ck_assert_uint_eq(ipc_consumed_frontier(&r, 0), 2);
	r.workers[1].cur = 7;
	ck_assert_uint_eq(ipc_consumed_frontier(&r, 0), 5);
	r.workers[0].cur = 100;
	ck_assert_uint_eq(ipc_consumed_frontier(&r, 0), 7);
	/* entries past nworkers are not workers */
	r.workers[1].cur = 100;
	r.workers[2].cur = 100;
	ck_assert_uint_eq(ipc_consumed_frontier(&r, 0), 100);
	free(base);

	g.nworkers = 1;
	base = ring_new(&r, &g);
	r.workers[0].cur = 12345;
	ck_assert_uint_eq(ipc_consumed_frontier(&r, 0), 12345);
	free(base);
}
END_TEST

START_TEST(test_counts)
{
	struct ipc_geometry g = small_geom;
	struct ipc_ring r;
	struct ipc_counts c;
	uint64_t t;
	void *base;

	g.nworkers = 2;
	g.max_clients = 3;
	base = ring_new(&r, &g);

	ipc_counts_read(&r, &c);
	ck_assert_uint_eq(c.published, 0);
	ck_assert_uint_eq(c.completed, 0);
	ck_assert_uint_eq(c.dead_lettered, 0);
	ck_assert_uint_eq(c.skipped, 0);
	ck_assert_uint_eq(c.full_events, 0);
	ck_assert_uint_eq(c.head, 0);

	r.workers[0].completed = 10;
	r.workers[0].dead_lettered = 1;
	r.workers[0].skipped = 2;
	r.workers[1].completed = 20;
	r.workers[1].dead_lettered = 3;
	r.workers[1].skipped = 4;
	r.clients[0].state = IPC_CLIENT_ACTIVE;
	r.clients[0].published = 11;
	r.clients[0].full_events = 5;
	r.clients[1].state = IPC_CLIENT_DEAD; /* counted in retired_* */
	r.clients[1].published = 1000;
	r.clients[1].full_events = 1000;
	r.clients[2].state = IPC_CLIENT_ACTIVE;
	r.clients[2].published = 13;
	r.clients[2].full_events = 6;
	r.hdr->retired_published = 7;
	r.hdr->retired_full = 100;
	ck_assert_int_eq(ipc_reserve(&r, 0, 5, &t), 0);

	ipc_counts_read(&r, &c);
	ck_assert_uint_eq(c.completed, 30);
	ck_assert_uint_eq(c.dead_lettered, 4);
	ck_assert_uint_eq(c.skipped, 6);
	ck_assert_uint_eq(c.published, 7 + 11 + 13);
	ck_assert_uint_eq(c.full_events, 100 + 5 + 6);
	ck_assert_uint_eq(c.head, 5);

	/* a client that detaches stops counting itself */
	r.clients[2].state = IPC_CLIENT_FREE;
	ipc_counts_read(&r, &c);
	ck_assert_uint_eq(c.published, 7 + 11);
	ck_assert_uint_eq(c.full_events, 100 + 5);

	ipc_close_intake(&r, 0);
	ipc_counts_read(&r, &c);
	ck_assert_uint_eq(c.head, 5);
	free(base);
}
END_TEST

/* ---- ordered queues: one ring per worker ---- */

START_TEST(test_ordered_layout)
{
	const uint32_t nr = 4, cap = 8;
	struct ipc_ring r;
	void *base = ring_new(&r, &ordered_geom);
	const struct ipc_hdr *h = r.hdr;
	uint8_t *b = base;
	uint32_t room = h->slot_stride - IPC_MSG_HDR_BYTES;

	ck_assert_uint_eq(h->nrings, nr);
	ck_assert_uint_eq(h->ordered, 1);
	ck_assert_uint_eq(h->nworkers, 4);
	ck_assert_uint_eq(h->capacity, cap);
	ck_assert_uint_eq(h->total_bytes,
			  (uint64_t)ipc_layout_size(&ordered_geom));
	/* a head per ring, each on its own line, before the workers */
	ck_assert_uint_ge(h->workers_off,
			  h->ctl_off + nr * sizeof(struct ipc_ctl));
	for (uint32_t k = 0; k < nr; k++) {
		ck_assert_ptr_eq(ipc_ctl(&r, k), r.ctl + k);
		ck_assert_uint_eq(((uint8_t *)ipc_ctl(&r, k) - b) % IPC_LINE,
				  0);
		ck_assert_uint_eq(head_of(&r, k), 0);
	}
	/* state and slot regions: R rings of capacity each, in order */
	ck_assert_uint_ge(h->slots_off, h->states_off + 8ull * nr * cap);
	ck_assert_uint_ge(h->cq_off, h->slots_off + (uint64_t)nr * cap *
							     h->slot_stride);
	ck_assert((uint8_t *)(ipc_state(&r, nr - 1, cap - 1) + 1) <=
		  b + h->slots_off);
	ck_assert(payload_in(&r, nr - 1, cap - 1) + h->slot_bytes <=
		  b + h->cq_off);
	for (uint32_t k = 0; k < nr; k++) {
		for (uint64_t t = 0; t < cap; t++) {
			ck_assert_uint_eq(ipc_slot_index(&r, k, t),
					  k * cap + t);
			ck_assert_ptr_eq(ipc_state(&r, k, t),
					 r.states + k * cap + t);
			ck_assert_ptr_eq((uint8_t *)ipc_slot(&r, k, t),
					 r.slots + (k * cap + t) *
							   h->slot_stride);
			/* tickets wrap inside their own ring */
			ck_assert_ptr_eq(ipc_state(&r, k, t),
					 ipc_state(&r, k, t + cap));
			ck_assert_ptr_eq(ipc_slot(&r, k, t),
					 ipc_slot(&r, k, t + 5 * cap));
			/* every ring starts with FREE(t) in slot t */
			ck_assert_uint_eq(*ipc_state(&r, k, t),
					  IPC_STATE(t, IPC_FREE));
			ck_assert_int_eq(ipc_take(&r, k, t), IPC_TAKE_WAIT);
		}
		if (k + 1 < nr) {
			/* ring k ends before ring k + 1 begins */
			ck_assert((uint8_t *)(ipc_state(&r, k, cap - 1) + 1) <=
				  (uint8_t *)ipc_state(&r, k + 1, 0));
			ck_assert(payload_in(&r, k, cap - 1) + room <=
				  (uint8_t *)ipc_slot(&r, k + 1, 0));
		}
	}
	/* Fill every slot of every ring with its own pattern, then read them
	 * all back: nothing overlaps (and ASan sees every byte in bounds). */
	for (uint32_t k = 0; k < nr; k++)
		for (uint64_t t = 0; t < cap; t++)
			memset(ipc_slot(&r, k, t), (int)(k * cap + t + 1),
			       h->slot_stride);
	for (uint32_t k = 0; k < nr; k++)
		for (uint64_t t = 0; t < cap; t++) {
			const uint8_t *p = (const uint8_t *)ipc_slot(&r, k, t);
			for (uint32_t j = 0; j < h->slot_stride; j++)
				ck_assert_uint_eq(p[j], k * cap + t + 1);
			/* the states are untouched by slot writes */
			ck_assert_uint_eq(*ipc_state(&r, k, t),
					  IPC_STATE(t, IPC_FREE));
		}
	free(base);
}
END_TEST

START_TEST(test_ordered_reserve)
{
	struct ipc_ring r;
	void *base = ring_new(&r, &ordered_geom);
	struct ipc_msg_meta mm;
	struct ipc_counts c;
	struct ipc_msg_hdr *m;
	uint64_t t = 99;

	/* reserving on ring 2 moves only ring 2's head */
	ck_assert_int_eq(ipc_reserve(&r, 2, 3, &t), 0);
	ck_assert_uint_eq(t, 0);
	ck_assert_uint_eq(head_of(&r, 2), 3);
	ck_assert_uint_eq(head_of(&r, 0), 0);
	ck_assert_uint_eq(head_of(&r, 1), 0);
	ck_assert_uint_eq(head_of(&r, 3), 0);
	/* ring 0 hands out its own ticket 0 */
	ck_assert_int_eq(ipc_reserve(&r, 0, 1, &t), 0);
	ck_assert_uint_eq(t, 0);
	ck_assert_uint_eq(head_of(&r, 0), 1);
	ck_assert_uint_eq(head_of(&r, 2), 3);

	/* ring 2 full; ring 1 still has all its room */
	ck_assert_int_eq(ipc_reserve(&r, 2, 5, &t), 0);
	ck_assert_uint_eq(t, 3);
	ck_assert_uint_eq(head_of(&r, 2), 8);
	ck_assert_int_eq(ipc_reserve(&r, 2, 1, &t), GPUQ_EFULL);
	ck_assert_uint_eq(head_of(&r, 2), 8);
	ck_assert_int_eq(ipc_reserve(&r, 1, 8, &t), 0);
	ck_assert_uint_eq(t, 0);
	ck_assert_uint_eq(head_of(&r, 1), 8);
	ck_assert_uint_eq(head_of(&r, 0), 1);

	/* publish ring 2's ticket 0: the other rings' ticket 0 stay WAIT */
	memset(&mm, 0, sizeof(mm));
	mm.id = 500;
	mm.key = 0xabcdef0123ull;
	mm.len = 5;
	mm.client = 1;
	mm.flags = IPC_MSG_NORESULT;
	memcpy(payload_in(&r, 2, 0), "ring2", 5);
	ipc_publish(&r, 2, 0, &mm);
	ck_assert_uint_eq(*ipc_state(&r, 2, 0), IPC_STATE(0, IPC_READY));
	ck_assert_int_eq(ipc_take(&r, 2, 0), IPC_TAKE_READY);
	for (uint32_t k = 0; k < 4; k++) {
		if (k == 2)
			continue;
		ck_assert_int_eq(ipc_take(&r, k, 0), IPC_TAKE_WAIT);
		ck_assert_uint_eq(*ipc_state(&r, k, 0),
				  IPC_STATE(0, IPC_FREE));
		ck_assert_uint_eq(ipc_slot(&r, k, 0)->id, 0);
	}
	m = ipc_slot(&r, 2, 0);
	ck_assert_uint_eq(m->id, 500);
	ck_assert_uint_eq(m->key, 0xabcdef0123ull);
	ck_assert_uint_eq(m->len, 5);
	ck_assert_uint_eq(m->client, 1);
	ck_assert_uint_eq(m->flags, IPC_MSG_NORESULT);
	ck_assert_mem_eq(payload_in(&r, 2, 0), "ring2", 5);

	/* releasing it frees ring 2's slot 0 only */
	ipc_release_slot(&r, 2, 0);
	ck_assert_uint_eq(*ipc_state(&r, 2, 0), IPC_STATE(8, IPC_FREE));
	ck_assert_uint_eq(*ipc_state(&r, 0, 0), IPC_STATE(0, IPC_FREE));
	ck_assert_uint_eq(*ipc_state(&r, 1, 0), IPC_STATE(0, IPC_FREE));
	ck_assert_int_eq(ipc_reserve(&r, 1, 1, &t), GPUQ_EFULL);
	ck_assert_int_eq(ipc_reserve(&r, 2, 1, &t), 0);
	ck_assert_uint_eq(t, 8);
	ck_assert_uint_eq(head_of(&r, 2), 9);
	ck_assert_int_eq(ipc_reserve(&r, 2, 1, &t), GPUQ_EFULL);

	/* ring 3 never touched */
	ck_assert_uint_eq(head_of(&r, 3), 0);
	for (uint64_t s = 0; s < 8; s++)
		ck_assert_uint_eq(*ipc_state(&r, 3, s), IPC_STATE(s, IPC_FREE));

	/* counts: head is the sum over rings */
	ipc_counts_read(&r, &c);
	ck_assert_uint_eq(c.head, 1 + 8 + 9 + 0);
	free(base);
}
END_TEST

START_TEST(test_ordered_close)
{
	struct ipc_ring r;
	void *base = ring_new(&r, &ordered_geom);
	struct ipc_counts c;
	uint64_t t;

	ck_assert_int_eq(ipc_reserve(&r, 0, 2, &t), 0);
	ck_assert_int_eq(ipc_reserve(&r, 1, 3, &t), 0);
	ck_assert_int_eq(ipc_reserve(&r, 3, 1, &t), 0);

	/* closing ring 1 closes ring 1 only */
	ck_assert_uint_eq(ipc_close_intake(&r, 1), 3);
	ck_assert_uint_eq(head_of(&r, 1), 3 | IPC_HEAD_CLOSED);
	ck_assert_uint_eq(head_of(&r, 0), 2);
	ck_assert_uint_eq(head_of(&r, 2), 0);
	ck_assert_uint_eq(head_of(&r, 3), 1);
	t = 77;
	ck_assert_int_eq(ipc_reserve(&r, 1, 1, &t), GPUQ_ESHUTDOWN);
	ck_assert_uint_eq(t, 77);
	ck_assert_int_eq(ipc_reserve(&r, 0, 1, &t), 0);
	ck_assert_uint_eq(t, 2);
	ck_assert_int_eq(ipc_reserve(&r, 2, 1, &t), 0);
	ck_assert_uint_eq(t, 0);
	ck_assert_int_eq(ipc_reserve(&r, 3, 1, &t), 0);
	ck_assert_uint_eq(t, 1);
	ipc_counts_read(&r, &c);
	ck_assert_uint_eq(c.head, 3 + 3 + 1 + 2);

	/* close the rest; each gives its own final count */
	ck_assert_uint_eq(ipc_close_intake(&r, 0), 3);
	ck_assert_uint_eq(ipc_close_intake(&r, 2), 1);
	ck_assert_uint_eq(ipc_close_intake(&r, 3), 2);
	ck_assert_uint_eq(ipc_close_intake(&r, 1), 3);
	for (uint32_t k = 0; k < 4; k++) {
		ck_assert_uint_ne(head_of(&r, k) & IPC_HEAD_CLOSED, 0);
		ck_assert_int_eq(ipc_reserve(&r, k, 1, &t), GPUQ_ESHUTDOWN);
	}
	ipc_counts_read(&r, &c);
	ck_assert_uint_eq(c.head, 9);
	free(base);
}
END_TEST

START_TEST(test_ordered_frontier)
{
	static const uint64_t cur[4] = { 5, 2, 9, 7 };
	struct ipc_geometry g = ordered_geom;
	struct ipc_ring r;
	void *base = ring_new(&r, &g);

	for (uint32_t w = 0; w < 4; w++)
		r.workers[w].cur = cur[w];
	/* ordered: ring k's frontier is its one worker's cur */
	for (uint32_t k = 0; k < 4; k++)
		ck_assert_uint_eq(ipc_consumed_frontier(&r, k), cur[k]);
	r.workers[1].cur = 100;
	ck_assert_uint_eq(ipc_consumed_frontier(&r, 1), 100);
	ck_assert_uint_eq(ipc_consumed_frontier(&r, 0), 5);
	ck_assert_uint_eq(ipc_consumed_frontier(&r, 2), 9);
	ck_assert_uint_eq(ipc_consumed_frontier(&r, 3), 7);
	free(base);

	/* unordered, the same workers: one ring, the minimum over workers */
	g.ordered = 0;
	base = ring_new(&r, &g);
	ck_assert_uint_eq(r.hdr->nrings, 1);
	for (uint32_t w = 0; w < 4; w++)
		r.workers[w].cur = cur[w];
	ck_assert_uint_eq(ipc_consumed_frontier(&r, 0), 2);
	r.workers[1].cur = 100;
	ck_assert_uint_eq(ipc_consumed_frontier(&r, 0), 5);
	free(base);
}
END_TEST

START_TEST(test_ordered_skip)
{
	struct ipc_ring r;
	void *base = ring_new(&r, &ordered_geom);
	uint64_t t;

	ck_assert_int_eq(ipc_reserve(&r, 1, 4, &t), 0);
	publish_msg(&r, 1, 0, 0, 0, 1);
	publish_msg(&r, 1, 2, 0, 2, 1);
	ck_assert_int_eq(ipc_reserve(&r, 3, 2, &t), 0);
	ck_assert_int_eq(ipc_reserve(&r, 0, 1, &t), 0);
	publish_msg(&r, 0, 0, 0, 0, 1);

	/* ring 1's unpublished tickets only */
	ck_assert_uint_eq(ipc_skip_unpublished(&r, 1, 0, 4), 2);
	ck_assert_uint_eq(*ipc_state(&r, 1, 0), IPC_STATE(0, IPC_READY));
	ck_assert_uint_eq(*ipc_state(&r, 1, 1), IPC_STATE(1, IPC_SKIP));
	ck_assert_uint_eq(*ipc_state(&r, 1, 2), IPC_STATE(2, IPC_READY));
	ck_assert_uint_eq(*ipc_state(&r, 1, 3), IPC_STATE(3, IPC_SKIP));
	for (uint64_t s = 4; s < 8; s++)
		ck_assert_uint_eq(*ipc_state(&r, 1, s), IPC_STATE(s, IPC_FREE));
	ck_assert_int_eq(ipc_take(&r, 1, 1), IPC_TAKE_SKIP);
	/* the same tickets of the other rings are not touched */
	ck_assert_uint_eq(*ipc_state(&r, 0, 0), IPC_STATE(0, IPC_READY));
	for (uint64_t s = 1; s < 8; s++)
		ck_assert_uint_eq(*ipc_state(&r, 0, s), IPC_STATE(s, IPC_FREE));
	for (uint64_t s = 0; s < 8; s++) {
		ck_assert_uint_eq(*ipc_state(&r, 2, s), IPC_STATE(s, IPC_FREE));
		ck_assert_uint_eq(*ipc_state(&r, 3, s), IPC_STATE(s, IPC_FREE));
	}
	ck_assert_int_eq(ipc_take(&r, 3, 1), IPC_TAKE_WAIT);

	/* ring 3 next; ring 1 keeps its states */
	ck_assert_uint_eq(ipc_skip_unpublished(&r, 3, 0, 2), 2);
	ck_assert_int_eq(ipc_take(&r, 3, 0), IPC_TAKE_SKIP);
	ck_assert_int_eq(ipc_take(&r, 3, 1), IPC_TAKE_SKIP);
	ck_assert_int_eq(ipc_take(&r, 1, 0), IPC_TAKE_READY);
	ck_assert_uint_eq(ipc_skip_unpublished(&r, 3, 0, 2), 0);
	ck_assert_uint_eq(ipc_skip_unpublished(&r, 1, 0, 4), 0);

	/* After a lap of ring 2 alone, a long range touches only its last
	 * capacity tickets, and only in ring 2. */
	for (uint64_t i = 0; i < 8; i++) {
		ck_assert_int_eq(ipc_reserve(&r, 2, 1, &t), 0);
		ck_assert_uint_eq(t, i);
		publish_msg(&r, 2, t, 0, t, 1);
		ck_assert_int_eq(ipc_take(&r, 2, t), IPC_TAKE_READY);
		ipc_release_slot(&r, 2, t);
	}
	ck_assert_int_eq(ipc_reserve(&r, 2, 4, &t), 0);
	ck_assert_uint_eq(t, 8);
	publish_msg(&r, 2, 8, 0, 8, 1);
	ck_assert_uint_eq(ipc_skip_unpublished(&r, 2, 0, 12), 3);
	ck_assert_uint_eq(*ipc_state(&r, 2, 8), IPC_STATE(8, IPC_READY));
	for (uint64_t k = 9; k < 12; k++)
		ck_assert_uint_eq(*ipc_state(&r, 2, k), IPC_STATE(k, IPC_SKIP));
	for (uint64_t k = 12; k < 16; k++)
		ck_assert_uint_eq(*ipc_state(&r, 2, k), IPC_STATE(k, IPC_FREE));
	ck_assert_uint_eq(*ipc_state(&r, 1, 0), IPC_STATE(0, IPC_READY));
	ck_assert_uint_eq(*ipc_state(&r, 0, 1), IPC_STATE(1, IPC_FREE));
	free(base);
}
END_TEST

START_TEST(test_ring_of)
{
	struct ipc_ring r, r2, u;
	void *base = ring_new(&r, &ordered_geom);
	void *base2 = ring_new(&r2, &ordered_geom);
	void *ubase = ring_new(&u, &small_geom);
	struct ipc_geometry g3 = ordered_geom;
	struct ipc_ring r3;
	void *base3;
	uint32_t seq[4] = { 0 }, strided[4] = { 0 }, three[3] = { 0 };

	/* the mix is splitmix64's finaliser: pinned, since every producer
	 * (and any other-language client) must compute the same ring */
	ck_assert_uint_eq(ipc_mix64(0), 0);
	ck_assert_uint_eq(ipc_mix64(0x9e3779b97f4a7c15ull),
			  0xe220a8397b1dcdafull);
	ck_assert_uint_eq(ipc_mix64(1), 0x5692161d100b05e5ull);

	for (uint64_t k = 0; k < 10000; k++) {
		uint32_t a = ipc_ring_of(&r, k), b = ipc_ring_of(&r, k * 4);

		ck_assert_uint_lt(a, 4);
		ck_assert_uint_lt(b, 4);
		/* stable: the same on every call and in another queue */
		ck_assert_uint_eq(ipc_ring_of(&r, k), a);
		ck_assert_uint_eq(ipc_ring_of(&r2, k), a);
		ck_assert_uint_eq(a, (uint32_t)(ipc_mix64(k) % 4));
		seq[a]++;
		strided[b]++;
		/* an unordered queue has only ring 0 */
		ck_assert_uint_eq(ipc_ring_of(&u, k), 0);
		ck_assert_uint_eq(ipc_ring_of(&u, ~k), 0);
	}
	/* 10k keys spread: each ring gets 15-35%, for consecutive keys and
	 * for keys that are all multiples of the ring count */
	for (uint32_t k = 0; k < 4; k++) {
		ck_assert_msg(seq[k] >= 1500 && seq[k] <= 3500,
			      "ring %u: %u of 10000 consecutive keys", k,
			      seq[k]);
		ck_assert_msg(strided[k] >= 1500 && strided[k] <= 3500,
			      "ring %u: %u of 10000 strided keys", k,
			      strided[k]);
	}

	/* a ring count that is not a power of two */
	g3.nworkers = 3;
	base3 = ring_new(&r3, &g3);
	ck_assert_uint_eq(r3.hdr->nrings, 3);
	for (uint64_t k = 0; k < 9000; k++) {
		uint32_t a = ipc_ring_of(&r3, k);

		ck_assert_uint_lt(a, 3);
		three[a]++;
	}
	for (uint32_t k = 0; k < 3; k++)
		ck_assert_msg(three[k] >= 2400 && three[k] <= 3600,
			      "ring %u of 3: %u of 9000", k, three[k]);
	free(base3);
	free(ubase);
	free(base2);
	free(base);
}
END_TEST

/* ---- dead letters ---- */

static void check_dlq_layout(const struct ipc_geometry *g)
{
	struct ipc_ring r;
	void *base = ring_new(&r, g);
	const struct ipc_hdr *h = r.hdr;
	uint8_t *b = base, *end = b + h->total_bytes;
	const uint32_t n = g->dlq_per_worker;
	struct ipc_cq_entry *lastcq;

	ck_assert_uint_eq(h->dlq_per_worker, n);
	ck_assert_uint_eq(r.dlq_mask, n - 1);
	ck_assert_ptr_eq(r.dlq, b + h->dlq_off);
	ck_assert_uint_eq(h->dlq_stride % IPC_LINE, 0);
	ck_assert_uint_ge(h->dlq_stride, IPC_DLQ_HDR_BYTES + g->slot_bytes);
	ck_assert_uint_eq(h->dlq_off % IPC_LINE, 0);
	/* after the completion areas, inside total_bytes */
	ck_assert_uint_ge(h->dlq_off,
			  h->cq_off + (uint64_t)g->max_clients *
					      g->cq_capacity * h->cq_stride);
	lastcq = ipc_cq_entry(&r, g->max_clients - 1, g->cq_capacity - 1);
	ck_assert((uint8_t *)(lastcq + 1) + g->result_bytes <= r.dlq);
	ck_assert_uint_ge(h->total_bytes,
			  h->dlq_off + (uint64_t)g->nworkers * n *
					       h->dlq_stride);
	ck_assert_uint_eq(h->total_bytes, (uint64_t)ipc_layout_size(g));

	lastcq->done = 0x1234;
	for (uint32_t w = 0; w < g->nworkers; w++) {
		for (uint64_t p = 0; p < n; p++) {
			struct ipc_dlq_entry *e = ipc_dlq_entry(&r, w, p);

			ck_assert_ptr_eq((uint8_t *)e,
					 r.dlq + ((size_t)w * n + p) *
							 h->dlq_stride);
			ck_assert_uint_eq(((uint8_t *)e - b) % IPC_LINE, 0);
			ck_assert((uint8_t *)(e + 1) + g->slot_bytes <= end);
			/* positions wrap within the worker's own area */
			ck_assert_ptr_eq(ipc_dlq_entry(&r, w, p + n), e);
			ck_assert_ptr_eq(ipc_dlq_entry(&r, w, p + 1000ull * n),
					 e);
			ck_assert_ptr_eq(ipc_dlq_entry(&r, w, p - n), e);
		}
		/* worker areas are adjacent and do not overlap */
		if (w + 1 < g->nworkers)
			ck_assert_ptr_eq(
				(uint8_t *)ipc_dlq_entry(&r, w, n - 1) +
					h->dlq_stride,
				(uint8_t *)ipc_dlq_entry(&r, w + 1, 0));
	}
	/* Write every entry whole (header and slot_bytes of payload), read
	 * them back: no overlap, nothing past the end (ASan), and the
	 * completion areas before are untouched. */
	for (uint32_t w = 0; w < g->nworkers; w++)
		for (uint64_t p = 0; p < n; p++) {
			struct ipc_dlq_entry *e = ipc_dlq_entry(&r, w, p);

			memset(e, 0, IPC_DLQ_HDR_BYTES);
			e->seq = p + 1;
			e->ring = w;
			memset(e + 1, (int)(w * n + p + 1) & 0xff,
			       g->slot_bytes);
		}
	for (uint32_t w = 0; w < g->nworkers; w++)
		for (uint64_t p = 0; p < n; p++) {
			const struct ipc_dlq_entry *e = ipc_dlq_entry(&r, w, p);
			const uint8_t *q = (const uint8_t *)(e + 1);

			ck_assert_uint_eq(e->seq, p + 1);
			ck_assert_uint_eq(e->ring, w);
			for (uint32_t j = 0; j < g->slot_bytes; j++)
				ck_assert_uint_eq(q[j], (w * n + p + 1) & 0xff);
		}
	ck_assert_uint_eq(lastcq->done, 0x1234);
	free(base);
}

START_TEST(test_dlq_layout)
{
	struct ipc_geometry g = small_geom;

	g.nworkers = 3;
	g.slot_bytes = 100; /* dlq_stride 64 + 100 -> 256 */
	check_dlq_layout(&g);
	{
		struct ipc_ring r;
		void *base = ring_new(&r, &g);
		ck_assert_uint_eq(r.hdr->dlq_stride, 256);
		free(base);
	}
	g.dlq_per_worker = 1; /* every position is the same entry */
	check_dlq_layout(&g);
	g = ordered_geom;
	g.dlq_per_worker = 32;
	g.slot_bytes = 64; /* exactly one line of payload after the header */
	check_dlq_layout(&g);
	g = small_geom;
	g.result_bytes = 0;
	g.slot_bytes = 1;
	check_dlq_layout(&g);
}
END_TEST

START_TEST(test_counts_dlq)
{
	struct ipc_geometry g = small_geom;
	struct ipc_ring r;
	struct ipc_counts c;
	struct ipc_client *bc;
	void *base;

	g.nworkers = 3;
	g.max_clients = 2;
	base = ring_new(&r, &g);
	bc = &r.clients[IPC_BROKER_CLIENT(&r)];

	ipc_counts_read(&r, &c);
	ck_assert_uint_eq(c.dead_lettered, 0);
	ck_assert_uint_eq(c.retried, 0);
	ck_assert_uint_eq(c.dlq_pending, 0);
	ck_assert_uint_eq(c.dlq_replayed, 0);
	ck_assert_uint_eq(c.dlq_purged, 0);
	ck_assert_uint_eq(c.published, 0);

	r.workers[0].completed = 10;
	r.workers[0].dead_lettered = 2;
	r.workers[0].retried = 5;
	r.workers[0].skipped = 1;
	r.workers[0].dlq_head = 7;
	r.workers[0].dlq_tail = 5;
	r.workers[1].completed = 20;
	r.workers[1].dead_lettered = 3;
	r.workers[1].dlq_head = 3;
	r.workers[1].dlq_tail = 3;
	r.workers[2].completed = 5;
	r.workers[2].dead_lettered = 1;
	r.workers[2].retried = 9;
	r.workers[2].dlq_head = 1000;
	r.workers[2].dlq_tail = 990;
	r.workers[2].dlq_waits = 4; /* not a count ipc_counts reports */
	r.hdr->dlq_replayed = 4;
	r.hdr->dlq_purged = 6;
	r.hdr->retired_published = 7;
	r.clients[0].state = IPC_CLIENT_ACTIVE;
	r.clients[0].published = 11;
	r.clients[1].state = IPC_CLIENT_DEAD;
	r.clients[1].published = 1000;
	/* the broker's own entry, as the broker sets it up: replays count */
	bc->state = IPC_CLIENT_ACTIVE;
	bc->published = 8;
	bc->full_events = 1;

	ipc_counts_read(&r, &c);
	ck_assert_uint_eq(c.completed, 35);
	ck_assert_uint_eq(c.dead_lettered, 6);
	ck_assert_uint_eq(c.retried, 14);
	ck_assert_uint_eq(c.skipped, 1);
	ck_assert_uint_eq(c.dlq_pending, 2 + 0 + 10);
	ck_assert_uint_eq(c.dlq_replayed, 4);
	ck_assert_uint_eq(c.dlq_purged, 6);
	ck_assert_uint_eq(c.published, 7 + 11 + 8);
	ck_assert_uint_eq(c.full_events, 1);

	/* the broker frees dead letters: pending drops, nothing else moves */
	r.workers[2].dlq_tail = 1000;
	r.workers[0].dlq_tail = 6;
	ipc_counts_read(&r, &c);
	ck_assert_uint_eq(c.dlq_pending, 1);
	ck_assert_uint_eq(c.dead_lettered, 6);

	/* head and tail far along (positions never reset) */
	r.workers[1].dlq_tail = UINT64_MAX - 2;
	r.workers[1].dlq_head = UINT64_MAX;
	ipc_counts_read(&r, &c);
	ck_assert_uint_eq(c.dlq_pending, 1 + 2);

	/* an inactive broker entry is not counted, like any client's */
	bc->state = IPC_CLIENT_FREE;
	ipc_counts_read(&r, &c);
	ck_assert_uint_eq(c.published, 7 + 11);
	free(base);
}
END_TEST

/* ---- mapping ---- */

/* A memfd holding a freshly initialised queue of geometry g. */
static int memfd_ring(const struct ipc_geometry *g, size_t *size)
{
	struct ipc_ring r;
	int64_t sz = ipc_layout_size(g);
	void *p;
	int fd;

	ck_assert_int_gt(sz, 0);
	fd = memfd_create("check_ring", MFD_CLOEXEC);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, (off_t)sz), 0);
	p = mmap(NULL, (size_t)sz, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ck_assert_ptr_ne(p, MAP_FAILED);
	ck_assert_int_eq(ipc_ring_init(&r, p, (size_t)sz, g), 0);
	munmap(p, (size_t)sz);
	*size = (size_t)sz;
	return fd;
}

START_TEST(test_map_good)
{
	struct ipc_geometry g = { 32, 200, 24, 8, 3, 2, 0, 16, 0, 0 };
	struct ipc_ring a, b;
	size_t size;
	uint64_t t;
	int fd = memfd_ring(&g, &size);

	memset(&a, 0, sizeof(a));
	ck_assert_int_eq(ipc_ring_map(&a, fd, size), 0);
	ck_assert_ptr_nonnull(a.base);
	ck_assert_uint_eq(a.size, size);
	ck_assert_ptr_eq(a.hdr, a.base);
	ck_assert_uint_eq(a.hdr->capacity, 32);
	ck_assert_uint_eq(a.hdr->slot_bytes, 200);
	ck_assert_uint_eq(a.hdr->result_bytes, 24);
	ck_assert_uint_eq(a.hdr->cq_capacity, 8);
	ck_assert_uint_eq(a.hdr->max_clients, 3);
	ck_assert_uint_eq(a.hdr->nworkers, 2);
	ck_assert_uint_eq(a.mask, 31);
	ck_assert_uint_eq(a.cq_mask, 7);
	ck_assert_ptr_eq((uint8_t *)a.states,
			 (uint8_t *)a.base + a.hdr->states_off);
	ck_assert_ptr_eq(a.slots, (uint8_t *)a.base + a.hdr->slots_off);
	ck_assert_ptr_eq(a.cq, (uint8_t *)a.base + a.hdr->cq_off);
	ck_assert_ptr_eq(a.dlq, (uint8_t *)a.base + a.hdr->dlq_off);
	ck_assert_uint_eq(a.hdr->nrings, 1);
	ck_assert_uint_eq(a.hdr->ordered, 0);
	ck_assert_uint_eq(a.hdr->dlq_per_worker, 16);
	ck_assert_uint_eq(a.dlq_mask, 15);
	for (uint64_t s = 0; s < 32; s++)
		ck_assert_uint_eq(a.states[s], IPC_STATE(s, IPC_FREE));

	/* A second mapping sees what the first writes. */
	ck_assert_int_eq(ipc_ring_map(&b, fd, size), 0);
	ck_assert_ptr_ne(a.base, b.base);
	ck_assert_int_eq(produce(&a, 7, 200, &t), 0);
	ck_assert_uint_eq(t, 0);
	ck_assert_uint_eq(head(&b), 1);
	ck_assert_int_eq(ipc_take(&b, 0, 0), IPC_TAKE_READY);
	ck_assert_uint_eq(ipc_slot(&b, 0, 0)->id, 7);
	ck_assert_mem_eq(payload(&b, 0), payload(&a, 0), 200);
	ipc_release_slot(&b, 0, 0);
	ck_assert_uint_eq(a.states[0], IPC_STATE(32, IPC_FREE));

	ipc_ring_unmap(&a);
	ck_assert_ptr_null(a.base);
	ck_assert_ptr_null(a.hdr);
	ipc_ring_unmap(&b);
	close(fd);
}
END_TEST

enum corrupt {
	C_MAGIC,
	C_VERSION0,
	C_VERSION2,
	C_CTL_OFF,
	C_WORKERS_OFF,
	C_STATES_OFF,
	C_SLOTS_OFF,
	C_CQ_OFF,
	C_TOTAL,
	C_CAPACITY,
	C_SLOT_STRIDE,
	C_CQ_STRIDE,
	C_NWORKERS,
	C_NRINGS,
	C_ORDERED,
	C_DLQ_OFF,
	C_DLQ_STRIDE,
	C_DLQ_PER_WORKER,
	C_DLQ_PER_WORKER2,
	C_SIZE_SHORT,
	C_SIZE_TINY,
	C_COUNT
};

static const struct {
	const char *what;
	int want;
} corrupt_cases[C_COUNT] = {
	[C_MAGIC] = { "magic", GPUQ_EPROTO },
	[C_VERSION0] = { "layout_version 0", GPUQ_EVERSION },
	[C_VERSION2] = { "layout_version + 1", GPUQ_EVERSION },
	[C_CTL_OFF] = { "ctl_off", GPUQ_EPROTO },
	[C_WORKERS_OFF] = { "workers_off", GPUQ_EPROTO },
	[C_STATES_OFF] = { "states_off", GPUQ_EPROTO },
	[C_SLOTS_OFF] = { "slots_off", GPUQ_EPROTO },
	[C_CQ_OFF] = { "cq_off", GPUQ_EPROTO },
	[C_TOTAL] = { "total_bytes", GPUQ_EPROTO },
	[C_CAPACITY] = { "capacity", GPUQ_EPROTO },
	[C_SLOT_STRIDE] = { "slot_stride", GPUQ_EPROTO },
	[C_CQ_STRIDE] = { "cq_stride", GPUQ_EPROTO },
	[C_NWORKERS] = { "nworkers", GPUQ_EPROTO },
	[C_NRINGS] = { "nrings", GPUQ_EPROTO },
	[C_ORDERED] = { "ordered", GPUQ_EPROTO },
	[C_DLQ_OFF] = { "dlq_off", GPUQ_EPROTO },
	[C_DLQ_STRIDE] = { "dlq_stride", GPUQ_EPROTO },
	[C_DLQ_PER_WORKER] = { "dlq_per_worker 3", GPUQ_EPROTO },
	[C_DLQ_PER_WORKER2] = { "dlq_per_worker doubled", GPUQ_EPROTO },
	[C_SIZE_SHORT] = { "size < total_bytes", GPUQ_EPROTO },
	[C_SIZE_TINY] = { "size < one page", GPUQ_EPROTO },
};

START_TEST(test_map_corrupt)
{
	struct ipc_geometry g = { 16, 64, 16, 8, 2, 2, 0, 16, 0, 0 };
	struct ipc_ring r;
	struct ipc_hdr *h;
	size_t size, map_size;
	int fd = memfd_ring(&g, &size);
	int rc;

	h = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ck_assert_ptr_ne(h, MAP_FAILED);
	map_size = size;
	switch ((enum corrupt)_i) {
	case C_MAGIC: h->magic ^= 1; break;
	case C_VERSION0: h->layout_version = 0; break;
	case C_VERSION2: h->layout_version = IPC_LAYOUT_VERSION + 1; break;
	case C_CTL_OFF: h->ctl_off += IPC_LINE; break;
	case C_WORKERS_OFF: h->workers_off += IPC_LINE; break;
	case C_STATES_OFF: h->states_off += 8; break;
	case C_SLOTS_OFF: h->slots_off += PAGE; break;
	case C_CQ_OFF: h->cq_off -= PAGE; break;
	case C_TOTAL: h->total_bytes += PAGE; break;
	case C_CAPACITY: h->capacity = 12; break;
	case C_SLOT_STRIDE: h->slot_stride += IPC_LINE; break;
	case C_CQ_STRIDE: h->cq_stride += 16; break;
	case C_NWORKERS: h->nworkers = 0; break;
	case C_NRINGS: h->nrings = 2; break;
	case C_ORDERED: h->ordered = 1; break;
	case C_DLQ_OFF: h->dlq_off -= PAGE; break;
	case C_DLQ_STRIDE: h->dlq_stride += IPC_LINE; break;
	case C_DLQ_PER_WORKER: h->dlq_per_worker = 3; break;
	case C_DLQ_PER_WORKER2: h->dlq_per_worker *= 2; break;
	case C_SIZE_SHORT: map_size = size - PAGE; break;
	case C_SIZE_TINY: map_size = 100; break;
	case C_COUNT: break;
	}
	munmap(h, size);

	memset(&r, 0xa5, sizeof(r));
	rc = ipc_ring_map(&r, fd, map_size);
	ck_assert_msg(rc == corrupt_cases[_i].want, "%s: got %d (%s), want %s",
		      corrupt_cases[_i].what, rc, gpuq_err_name(rc),
		      gpuq_err_name(corrupt_cases[_i].want));
	close(fd);
}
END_TEST

/* An ordered queue maps with its rings; a header whose nrings, ordered or
 * dead-letter fields disagree with its geometry is refused. */
START_TEST(test_map_ordered)
{
	static const struct {
		const char *what;
		/* 0 nrings, 1 ordered, 2 dlq_off, 3 dlq_per_worker */
		int field;
		int64_t delta;
	} bad[] = {
		{ "nrings 1", 0, 1 },  { "nrings 3", 0, 3 },
		{ "nrings 5", 0, 5 },  { "nrings 0", 0, 0 },
		{ "ordered 0", 1, 0 }, { "ordered 2", 1, 2 },
		{ "dlq_off + page", 2, PAGE },
		{ "dlq_off - page", 2, -(int64_t)PAGE },
		{ "dlq_off + line", 2, IPC_LINE },
		{ "dlq_off 0", 2, INT64_MIN },
		{ "dlq_per_worker 8", 3, 8 },
		{ "dlq_per_worker 0", 3, 0 },
	};
	struct ipc_ring a, b;
	struct ipc_hdr *h, saved;
	size_t size;
	uint64_t t;
	int fd = memfd_ring(&ordered_geom, &size);

	memset(&a, 0, sizeof(a));
	ck_assert_int_eq(ipc_ring_map(&a, fd, size), 0);
	ck_assert_uint_eq(a.hdr->nrings, 4);
	ck_assert_uint_eq(a.hdr->ordered, 1);
	for (uint32_t k = 0; k < 4; k++)
		for (uint64_t s = 0; s < 8; s++)
			ck_assert_uint_eq(*ipc_state(&a, k, s),
					  IPC_STATE(s, IPC_FREE));
	/* a second mapping sees ring 3's traffic, on ring 3 only */
	ck_assert_int_eq(ipc_ring_map(&b, fd, size), 0);
	ck_assert_int_eq(ipc_reserve(&a, 3, 1, &t), 0);
	ck_assert_uint_eq(t, 0);
	memcpy(payload_in(&a, 3, 0), "xyz", 3);
	publish_msg(&a, 3, 0, 1, 33, 3);
	ck_assert_uint_eq(head_of(&b, 3), 1);
	ck_assert_uint_eq(head_of(&b, 0), 0);
	ck_assert_int_eq(ipc_take(&b, 3, 0), IPC_TAKE_READY);
	ck_assert_int_eq(ipc_take(&b, 0, 0), IPC_TAKE_WAIT);
	ck_assert_uint_eq(ipc_slot(&b, 3, 0)->id, 33);
	ck_assert_mem_eq(payload_in(&b, 3, 0), "xyz", 3);
	ipc_ring_unmap(&b);
	ipc_ring_unmap(&a);

	h = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ck_assert_ptr_ne(h, MAP_FAILED);
	saved = *h;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct ipc_ring r;
		int rc;

		*h = saved;
		switch (bad[i].field) {
		case 0: h->nrings = (uint32_t)bad[i].delta; break;
		case 1: h->ordered = (uint32_t)bad[i].delta; break;
		case 2:
			h->dlq_off = bad[i].delta == INT64_MIN
					     ? 0
					     : h->dlq_off +
						       (uint64_t)bad[i].delta;
			break;
		case 3: h->dlq_per_worker = (uint32_t)bad[i].delta; break;
		}
		memset(&r, 0xa5, sizeof(r));
		rc = ipc_ring_map(&r, fd, size);
		ck_assert_msg(rc == GPUQ_EPROTO, "%s: got %d (%s)",
			      bad[i].what, rc, gpuq_err_name(rc));
	}
	/* and the intact header maps again */
	*h = saved;
	ck_assert_int_eq(ipc_ring_map(&a, fd, size), 0);
	ipc_ring_unmap(&a);
	munmap(h, size);
	close(fd);
}
END_TEST

START_TEST(test_map_bad_fd)
{
	struct ipc_ring r;

	ck_assert_int_lt(ipc_ring_map(&r, -1, 65536), 0);
}
END_TEST

/* ---- two threads ---- */

#define MT_MSGS 200000u
#define MT_SLOT 48u

struct mt {
	struct ipc_ring r;
	uint8_t *seen;
	char err[256];
	int failed;
};

static void mt_fail(struct mt *m, const char *what, uint64_t a, uint64_t b)
{
	if (!__atomic_exchange_n(&m->failed, 1, __ATOMIC_RELAXED))
		snprintf(m->err, sizeof(m->err), "%s (%llu, %llu)", what,
			 (unsigned long long)a, (unsigned long long)b);
}

static int mt_failed(struct mt *m)
{
	return __atomic_load_n(&m->failed, __ATOMIC_RELAXED);
}

static uint32_t mt_len(uint64_t seq) { return 8 + (uint32_t)(seq % 41); }

static uint8_t mt_byte(uint64_t seq, uint32_t j)
{
	return (uint8_t)(seq * 131 + j * 7 + (seq >> 8));
}

static void *mt_producer(void *arg)
{
	struct mt *m = arg;
	uint64_t seq = 0, t;

	while (seq < MT_MSGS && !mt_failed(m)) {
		/* batches of 1..5, so batch reservation races the consumer */
		uint32_t n = 1 + (uint32_t)(seq % 5);
		int rc;

		if (n > MT_MSGS - seq)
			n = (uint32_t)(MT_MSGS - seq);
		rc = ipc_reserve(&m->r, 0, n, &t);
		if (rc == GPUQ_EFULL) {
			sched_yield();
			continue;
		}
		if (rc) {
			mt_fail(m, "producer reserve", (uint64_t)-rc, seq);
			break;
		}
		if (t != seq) {
			mt_fail(m, "producer got ticket", t, seq);
			break;
		}
		for (uint32_t i = 0; i < n; i++, seq++) {
			uint8_t *p = payload(&m->r, seq);
			uint32_t len = mt_len(seq);

			memcpy(p, &seq, 8);
			for (uint32_t j = 8; j < len; j++)
				p[j] = mt_byte(seq, j);
		}
		/* publish in reverse: the consumer must still go in order */
		for (uint32_t i = n; i-- > 0;)
			publish_msg(&m->r, 0, t + i, 0, t + i, mt_len(t + i));
	}
	return NULL;
}

static void *mt_consumer(void *arg)
{
	struct mt *m = arg;

	for (uint64_t t = 0; t < MT_MSGS && !mt_failed(m); t++) {
		const struct ipc_msg_hdr *h = ipc_slot(&m->r, 0, t);
		const uint8_t *p = payload(&m->r, t);
		enum ipc_take k;
		uint64_t seq;
		unsigned spins = 0;

		while ((k = ipc_take(&m->r, 0, t)) == IPC_TAKE_WAIT) {
			if (mt_failed(m))
				return NULL;
			if (++spins > 64)
				sched_yield();
		}
		if (k != IPC_TAKE_READY) {
			mt_fail(m, "consumer saw SKIP", t, k);
			return NULL;
		}
		memcpy(&seq, p, 8);
		if (seq >= MT_MSGS || seq != t || h->id != t ||
		    h->len != mt_len(t)) {
			mt_fail(m, "consumer header/seq", t, seq);
			return NULL;
		}
		for (uint32_t j = 8; j < h->len; j++)
			if (p[j] != mt_byte(seq, j)) {
				mt_fail(m, "consumer payload byte", t, j);
				return NULL;
			}
		m->seen[seq]++;
		ipc_release_slot(&m->r, 0, t);
		ipc_store_release(&m->r.workers[0].cur, t + 1);
		ipc_store_relaxed(&m->r.workers[0].completed, t + 1);
	}
	return NULL;
}

START_TEST(test_two_threads)
{
	struct ipc_geometry g = { 64, MT_SLOT, 16, 64, 1, 1, 0, 16, 0, 0 };
	struct mt *m = calloc(1, sizeof(*m));
	pthread_t prod, cons;
	struct ipc_counts c;
	void *base;
	uint64_t missing = 0, dup = 0;

	ck_assert_ptr_nonnull(m);
	base = ring_new(&m->r, &g);
	m->seen = calloc(MT_MSGS, 1);
	ck_assert_ptr_nonnull(m->seen);
	ck_assert_int_eq(pthread_create(&cons, NULL, mt_consumer, m), 0);
	ck_assert_int_eq(pthread_create(&prod, NULL, mt_producer, m), 0);
	pthread_join(prod, NULL);
	pthread_join(cons, NULL);

	ck_assert_msg(!m->failed, "%s", m->err);
	for (uint32_t i = 0; i < MT_MSGS; i++) {
		missing += m->seen[i] == 0;
		dup += m->seen[i] > 1;
	}
	ck_assert_uint_eq(missing, 0);
	ck_assert_uint_eq(dup, 0);
	ck_assert_uint_eq(head(&m->r), MT_MSGS);
	ck_assert_uint_eq(ipc_consumed_frontier(&m->r, 0), MT_MSGS);
	ipc_counts_read(&m->r, &c);
	ck_assert_uint_eq(c.completed, MT_MSGS);
	for (uint64_t s = 0; s < 64; s++)
		ck_assert_uint_eq(m->r.states[s],
				  IPC_STATE(MT_MSGS + s, IPC_FREE));
	free(m->seen);
	free(base);
	free(m);
}
END_TEST

/* ---- the stamped slot format (ipc/stamp.h) ---- */

/* Every length 1..300: the chunks carry the stamp and 12 payload bytes
 * each, the tail chunk is zero-padded, nothing past ipc_stamp_bytes(len)
 * is written and nothing past src + len is read (ASan would say), and
 * reading gives the payload back. */
START_TEST(test_stamp_roundtrip)
{
	static uint8_t buf[512 + 64] __attribute__((aligned(16)));
	uint8_t back[300];

	for (uint32_t len = 1; len <= 300; len++) {
		uint8_t *src = malloc(len);
		uint32_t stamp = 0x9e370000u + len, nb = ipc_stamp_bytes(len);

		ck_assert_ptr_nonnull(src);
		ref_fill(src, len, len);
		memset(buf, 0xa5, sizeof(buf));
		ipc_stamp_write(buf, src, len, stamp);
		ck_assert_uint_eq(nb, (len + 11) / 12 * 16);
		ck_assert(ipc_stamp_check(buf, len, stamp));
		ck_assert(!ipc_stamp_check(buf, len, stamp + 1));
		for (uint32_t i = nb; i < sizeof(buf); i++)
			ck_assert_uint_eq(buf[i], 0xa5);
		for (uint32_t i = len; i < nb / 16 * 12; i++) /* tail padding */
			ck_assert_uint_eq(buf[i / 12 * 16 + i % 12], 0);
		memset(back, 0, sizeof(back));
		ipc_stamp_read(back, buf, len);
		ck_assert_int_eq(memcmp(back, src, len), 0);
		free(src);
	}
}
END_TEST

/* One stale chunk anywhere in a message's length fails the check; a
 * stale chunk past it does not matter. */
START_TEST(test_stamp_stale_chunk)
{
	static uint8_t buf[256] __attribute__((aligned(16)));
	uint8_t src[100];
	uint32_t old = ipc_stamp(5), now = ipc_stamp(5 + 64);

	ref_fill(src, sizeof(src), 1);
	ipc_stamp_write(buf, src, 100, old); /* the previous lap */
	ck_assert_uint_ne(old, now);
	ipc_stamp_write(buf, src, 40, now);  /* this lap: a shorter message */
	ck_assert(ipc_stamp_check(buf, 40, now));
	ck_assert(!ipc_stamp_check(buf, 49, now)); /* a fifth chunk */
	for (uint32_t j = 0; j < ipc_stamp_chunks(40); j++) {
		uint8_t keep[16];

		memcpy(keep, buf + j * 16, 16);
		memcpy(buf + j * 16 + 12, &old, 4);
		ck_assert(!ipc_stamp_check(buf, 40, now));
		memcpy(buf + j * 16, keep, 16);
	}
	/* Ticket 0's stamp is not the zeros a new ring starts with. */
	ck_assert_uint_ne(ipc_stamp(0), 0);
}
END_TEST

/* ipc_stamp(t) is t mod (2^32 - 1) + 1, checked against the division at
 * the edges of its folds; never 0; and the tickets of one slot do not
 * repeat a stamp after 2^32 tickets, where a plain 32-bit t + 1 would. */
START_TEST(test_stamp_function)
{
	static const uint64_t edge[] = {
		0, 1, 0xfffffffeull, 0xffffffffull, 0x100000000ull,
		0x1fffffffeull, 0x1ffffffffull, 0x200000000ull,
		0xfffffffefffffffeull, 0xffffffff00000000ull, UINT64_MAX - 1,
		UINT64_MAX,
	};
	uint64_t x = 0x9e3779b97f4a7c15ull;

	for (size_t i = 0; i < sizeof(edge) / sizeof(edge[0]); i++)
		ck_assert_uint_eq(ipc_stamp(edge[i]),
				  (uint32_t)(edge[i] % 0xffffffffull) + 1);
	for (int i = 0; i < 100000; i++) {
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		ck_assert_uint_eq(ipc_stamp(x), (uint32_t)(x % 0xffffffffull) + 1);
		ck_assert_uint_ne(ipc_stamp(x), 0);
	}
	for (uint32_t cap = 2; cap <= (1u << 24); cap <<= 1) {
		uint64_t t = 12345 + cap;
		ck_assert_uint_ne(ipc_stamp(t), ipc_stamp(t + (1ull << 32)));
		ck_assert_uint_ne(ipc_stamp(t), ipc_stamp(t - cap));
	}
}
END_TEST

/* A stamped queue: room for the bigger format, header stamps from
 * publish, the payload gathered back by ipc_slot_payload; a plain queue
 * keeps stamps 0 and its payload in place. */
START_TEST(test_stamped_ring)
{
	struct ipc_geometry g = small_geom, plain = small_geom;
	struct ipc_ring r, p;
	uint8_t src[96], buf[96];
	void *base, *pbase;

	g.slot_bytes = plain.slot_bytes = 96;
	g.stamped = 1;
	base = ring_new(&r, &g);
	ck_assert_uint_eq(r.hdr->stamped, 1);
	ck_assert_uint_ge(r.hdr->slot_stride,
			  IPC_MSG_HDR_BYTES + ipc_stamp_bytes(96));
	ref_fill(src, sizeof(src), 7);
	for (uint64_t t = 0; t < 3 * g.capacity; t++) {
		struct ipc_msg_meta mm = { t, 9, (uint32_t)(1 + t * 5 % 96), 1, 0 };
		const struct ipc_msg_hdr *m = ipc_slot(&r, 0, t);
		uint64_t got;

		ck_assert_int_eq(ipc_reserve(&r, 0, 1, &got), 0);
		ck_assert_uint_eq(got, t);
		ipc_slot_fill(&r, 0, t, src, mm.len);
		ipc_publish(&r, 0, t, &mm);
		ck_assert_uint_eq(m->stamp0, ipc_stamp(t));
		ck_assert_uint_eq(m->stamp1, ipc_stamp(t));
		ck_assert_uint_eq(m->id, t);
		ck_assert_uint_eq(m->len, mm.len);
		ck_assert_uint_eq(m->key, 9);
		ck_assert_uint_eq(m->client, 1);
		ck_assert(ipc_stamp_check(m + 1, mm.len, ipc_stamp(t)));
		ck_assert_int_eq(ipc_take(&r, 0, t), IPC_TAKE_READY);
		memset(buf, 0, sizeof(buf));
		ck_assert_int_eq(memcmp(ipc_slot_payload(&r, m, mm.len, buf),
					src, mm.len), 0);
		ipc_release_slot(&r, 0, t);
	}
	pbase = ring_new(&p, &plain);
	ck_assert_uint_eq(p.hdr->stamped, 0);
	ck_assert_uint_lt(p.hdr->slot_stride, r.hdr->slot_stride);
	{
		struct ipc_msg_meta mm = { 1, 0, 20, 0, 0 };
		const struct ipc_msg_hdr *m = ipc_slot(&p, 0, 0);
		uint64_t got;

		ck_assert_int_eq(ipc_reserve(&p, 0, 1, &got), 0);
		ipc_slot_fill(&p, 0, 0, src, 20);
		ipc_publish(&p, 0, 0, &mm);
		ck_assert_uint_eq(m->stamp0, 0);
		ck_assert_uint_eq(m->stamp1, 0);
		ck_assert_ptr_eq(ipc_slot_payload(&p, m, 20, buf), m + 1);
		ck_assert_int_eq(memcmp(m + 1, src, 20), 0);
	}
	free(base);
	free(pbase);
}
END_TEST

/* ---- stamped completion entries (ipc/cq.h) ---- */

/* Over three laps of the completion area and every length 0..100, an
 * entry written by ipc_cq_publish reads back whole (outcome and result,
 * gathered); with any one chunk still holding the previous lap's bytes it
 * reads as not done, and so does it for ipc_cq_done. */
START_TEST(test_stamped_cq)
{
	struct ipc_geometry g = small_geom;
	struct ipc_ring r;
	uint8_t src[100], buf[100], prev[32 + 9 * 16], now[32 + 9 * 16];
	void *base;

	g.result_bytes = 100;
	g.cq_stamped = 1;
	base = ring_new(&r, &g);
	ck_assert_uint_eq(r.hdr->cq_stamped, 1);
	ck_assert_uint_ge(r.hdr->cq_stride,
			  IPC_CQ_HDR_BYTES + ipc_stamp_bytes(100));
	for (uint64_t id = 0; id < 3 * g.cq_capacity; id++) {
		struct ipc_cq_entry *e = ipc_cq_entry(&r, 1, id);
		struct ipc_outcome o = { (int32_t)id - 5, (uint32_t)(id * 7 % 101),
					 1 + (uint32_t)(id % 3), (uint32_t)(id % 5),
					 id * 3 }, got;
		uint32_t nb = IPC_CQ_HDR_BYTES + ipc_stamp_bytes(100);
		const uint8_t *res;

		ref_fill(src, o.len, id);
		memcpy(prev, e, nb);
		ipc_cq_publish(&r, e, id, &o, src);
		memcpy(now, e, nb);
		ck_assert_uint_eq(e->stamp, ipc_stamp(id));
		ck_assert(ipc_cq_done(&r, e, id));
		ck_assert(!ipc_cq_done(&r, e, id + 1));
		memset(buf, 0, sizeof(buf));
		ck_assert(ipc_cq_read(&r, e, id, &got, &res, buf));
		ck_assert_ptr_eq(res, buf);
		ck_assert_int_eq(got.status, o.status);
		ck_assert_uint_eq(got.len, o.len);
		ck_assert_uint_eq(got.attempts, o.attempts);
		ck_assert_uint_eq(got.worker, o.worker);
		ck_assert_uint_eq(got.seq, o.seq);
		ck_assert_int_eq(memcmp(buf, src, o.len), 0);
		/* Each chunk the entry uses, stale in turn. */
		for (uint32_t j = 0; j < 2 + ipc_stamp_chunks(o.len); j++) {
			memcpy((uint8_t *)e + j * 16, prev + j * 16, 16);
			ck_assert_msg(!ipc_cq_read(&r, e, id, &got, &res, buf),
				      "id %llu: chunk %u stale, read as done",
				      (unsigned long long)id, j);
			ck_assert(!ipc_cq_done(&r, e, id));
			memcpy((uint8_t *)e + j * 16, now + j * 16, 16);
		}
		ck_assert(ipc_cq_read(&r, e, id, &got, &res, buf));
	}
	free(base);
}
END_TEST

/* The broker's failure entry (no worker) reads back as worker UINT32_MAX
 * on either format; a plain entry is read in place with stamp 0; a
 * scrubbed stamped entry cannot pass for the next client's id, even where
 * that id equals the last client's and only its first chunk has landed. */
START_TEST(test_stamped_cq_scrub)
{
	struct ipc_geometry g = small_geom;
	struct ipc_ring r, p;
	struct ipc_outcome fail = { GPUQ_EDEVICE, 0, 0, UINT32_MAX, 0 }, got;
	struct ipc_outcome ok = { 0, 40, 1, 3, 0 };
	uint8_t src[40], buf[100], first[32];
	const uint8_t *res;
	struct ipc_cq_entry *e;
	void *base, *pbase;

	g.result_bytes = 100;
	pbase = ring_new(&p, &g);
	g.cq_stamped = 1;
	base = ring_new(&r, &g);
	ref_fill(src, sizeof(src), 9);
	for (int k = 0; k < 2; k++) {
		struct ipc_ring *q = k ? &r : &p;

		e = ipc_cq_entry(q, 0, 7);
		ipc_cq_publish(q, e, 7, &fail, NULL);
		ck_assert(ipc_cq_read(q, e, 7, &got, &res, buf));
		ck_assert_int_eq(got.status, GPUQ_EDEVICE);
		ck_assert_uint_eq(got.len, 0);
		ck_assert_uint_eq(got.worker, UINT32_MAX);
		ck_assert_uint_eq(e->worker, IPC_CQ_NO_WORKER);
	}
	e = ipc_cq_entry(&p, 0, 5);
	ipc_cq_publish(&p, e, 5, &ok, src);
	ck_assert_uint_eq(e->stamp, 0);
	ck_assert(ipc_cq_read(&p, e, 5, &got, &res, NULL));
	ck_assert_ptr_eq(res, e + 1);
	ck_assert_int_eq(memcmp(res, src, 40), 0);

	/* The last client's id 5; then the scrub at its reclaim; then the
	 * next client's id 5, of which only the header has landed. */
	e = ipc_cq_entry(&r, 0, 5);
	ipc_cq_publish(&r, e, 5, &ok, src);
	memcpy(first, e, 32);
	ipc_cq_scrub(&r, e);
	ck_assert_uint_eq(e->done, 0);
	ck_assert(!ipc_cq_done(&r, e, 5));
	memcpy(e, first, 32);
	ck_assert(!ipc_cq_read(&r, e, 5, &got, &res, buf));
	ck_assert(!ipc_cq_done(&r, e, 5));
	ipc_cq_publish(&r, e, 5, &ok, src);
	ck_assert(ipc_cq_read(&r, e, 5, &got, &res, buf));
	ck_assert_int_eq(memcmp(buf, src, 40), 0);
	free(base);
	free(pbase);
}
END_TEST

Suite *suite_ring(void)
{
	Suite *s = suite_create("ring");
	TCase *tl = tcase_create("layout");
	TCase *tp = tcase_create("protocol");
	TCase *tb = tcase_create("broker");
	TCase *to = tcase_create("ordered");
	TCase *tm = tcase_create("map");
	TCase *tt = tcase_create("threads");

	tcase_add_test(tl, test_layout_bad_geometry);
	tcase_add_test(tl, test_layout_offsets);
	tcase_add_test(tl, test_layout_sweep);
	tcase_add_test(tl, test_init_states);
	tcase_add_test(tl, test_dlq_layout);
	tcase_add_test(tl, test_stamp_roundtrip);
	tcase_add_test(tl, test_stamp_stale_chunk);
	tcase_add_test(tl, test_stamp_function);
	tcase_add_test(tl, test_stamped_ring);
	tcase_add_test(tl, test_stamped_cq);
	tcase_add_test(tl, test_stamped_cq_scrub);
	suite_add_tcase(s, tl);

	tcase_add_test(tp, test_single_message);
	tcase_add_test(tp, test_wrap_laps);
	tcase_add_test(tp, test_full);
	tcase_add_test(tp, test_batch_larger_than_ring);
	tcase_add_test(tp, test_batch);
	tcase_add_test(tp, test_take_transitions);
	suite_add_tcase(s, tp);

	tcase_add_test(tb, test_close_intake);
	tcase_add_test(tb, test_close_full_ring);
	tcase_add_test(tb, test_skip_unpublished);
	tcase_add_test(tb, test_skip_after_laps);
	tcase_add_test(tb, test_frontier);
	tcase_add_test(tb, test_counts);
	tcase_add_test(tb, test_counts_dlq);
	suite_add_tcase(s, tb);

	tcase_add_test(to, test_ordered_layout);
	tcase_add_test(to, test_ordered_reserve);
	tcase_add_test(to, test_ordered_close);
	tcase_add_test(to, test_ordered_frontier);
	tcase_add_test(to, test_ordered_skip);
	tcase_add_test(to, test_ring_of);
	suite_add_tcase(s, to);

	tcase_add_test(tm, test_map_good);
	tcase_add_loop_test(tm, test_map_corrupt, 0, C_COUNT);
	tcase_add_test(tm, test_map_ordered);
	tcase_add_test(tm, test_map_bad_fd);
	suite_add_tcase(s, tm);

	/* no timing assertion: the limit only stops a hang */
	tcase_set_timeout(tt, 300);
	tcase_add_test(tt, test_two_threads);
	suite_add_tcase(s, tt);
	return s;
}

GPUQ_CHECK_MAIN(suite_ring)
