/*
 * ring.h - the slot-ring protocol over the shared layout in layout.h.
 *
 * One implementation serves every party: libgpuqclient (producers), the
 * broker (creation, reclaim, counters) and the CPU backend (consumer).  The
 * CUDA backend implements the same consumer steps in device code.
 */
#ifndef GPUQ_IPC_RING_H
#define GPUQ_IPC_RING_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ipc/atomics.h"
#include "ipc/layout.h"
#include "ipc/stamp.h"

/* The broker's heartbeat period and the age after which clients call it
 * dead.  The dead age bounds how long a client call can wait on a dead
 * broker. */
#define IPC_HEARTBEAT_PERIOD_NS 100000000ull
#define IPC_HEARTBEAT_DEAD_NS 800000000ull

/* What a queue is made of; the broker fills it from the config. */
struct ipc_geometry {
	uint32_t capacity;
	uint32_t slot_bytes;
	uint32_t result_bytes;
	uint32_t cq_capacity;
	uint32_t max_clients;
	uint32_t nworkers;
	uint32_t ordered;        /* 1: one ring per worker, keyed */
	uint32_t dlq_per_worker; /* power of two */
	uint32_t stamped;        /* 1: the stamped slot format (stamp.h) */
	uint32_t cq_stamped;     /* 1: stamped completion entries (cq.h) */
};

/* A mapped queue: pointers into the shared memory, the same in every
 * process that maps it. */
struct ipc_ring {
	void *base;
	size_t size;
	struct ipc_hdr *hdr;
	struct ipc_ctl *ctl;
	struct ipc_worker *workers;
	struct ipc_client *clients; /* max_clients + 1: the last is the broker's */
	uint64_t *states;
	uint8_t *slots;
	uint8_t *cq;
	uint8_t *dlq;
	uint64_t mask;     /* capacity - 1 */
	uint64_t cq_mask;  /* cq_capacity - 1 */
	uint64_t dlq_mask; /* dlq_per_worker - 1 */
};

/* The broker's own client index: replays are published under it. */
#define IPC_BROKER_CLIENT(r) ((r)->hdr->max_clients)

/* The ring a key goes to (always 0 for an unordered queue).  A fixed mix so
 * producers and tests agree; splitmix64's finaliser. */
static inline uint64_t ipc_mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static inline uint32_t ipc_ring_of(const struct ipc_ring *r, uint64_t key)
{
	return r->hdr->nrings == 1 ? 0
				   : (uint32_t)(ipc_mix64(key) % r->hdr->nrings);
}

/* Check a geometry and return the bytes it needs (> 0), or GPUQ_ECONFIG. */
int64_t ipc_layout_size(const struct ipc_geometry *g);

/* Broker: lay out and initialise memory of ipc_layout_size() bytes at base,
 * which must be zero-filled.  layout_version is written last. */
int ipc_ring_init(struct ipc_ring *r, void *base, size_t size,
		  const struct ipc_geometry *g);

/* Client: map fd read-write and validate the header against size.
 * Errors: GPUQ_EVERSION, GPUQ_EPROTO, negated errno from mmap. */
int ipc_ring_map(struct ipc_ring *r, int fd, size_t size);
/* Read-only, for observers (gpuqctl stat): writes would fault. */
int ipc_ring_map_ro(struct ipc_ring *r, int fd, size_t size);
void ipc_ring_unmap(struct ipc_ring *r);

static inline size_t ipc_slot_index(const struct ipc_ring *r, uint32_t ring,
				    uint64_t ticket)
{
	return (size_t)ring * r->hdr->capacity + (ticket & r->mask);
}

static inline struct ipc_msg_hdr *ipc_slot(const struct ipc_ring *r,
					   uint32_t ring, uint64_t ticket)
{
	return (struct ipc_msg_hdr *)(r->slots + ipc_slot_index(r, ring, ticket) *
						       r->hdr->slot_stride);
}

static inline uint64_t *ipc_state(const struct ipc_ring *r, uint32_t ring,
				  uint64_t ticket)
{
	return &r->states[ipc_slot_index(r, ring, ticket)];
}

static inline struct ipc_dlq_entry *ipc_dlq_entry(const struct ipc_ring *r,
						  uint32_t worker, uint64_t pos)
{
	size_t idx = (size_t)worker * r->hdr->dlq_per_worker + (pos & r->dlq_mask);
	return (struct ipc_dlq_entry *)(r->dlq + idx * r->hdr->dlq_stride);
}

static inline struct ipc_cq_entry *ipc_cq_entry(const struct ipc_ring *r,
						uint32_t client, uint64_t id)
{
	size_t idx = (size_t)client * r->hdr->cq_capacity + (id & r->cq_mask);
	return (struct ipc_cq_entry *)(r->cq + idx * r->hdr->cq_stride);
}

/* ---- producer side ---- */

/*
 * Bracket a reservation (and the publishing that follows it): resv_gen is
 * odd in between.  seq_cst on the way in: the broker's reclaim must see
 * "reserving" before the CAS on head can be seen (docs/protocol.md,
 * reclaim).  Every producer (clients, the broker's replays, Track A) uses
 * these two, so the argument holds for all of them.
 */
static inline void ipc_resv_begin(struct ipc_client *me)
{
	ipc_store_seqcst(&me->resv_gen, me->resv_gen + 1);
}

static inline void ipc_resv_end(struct ipc_client *me)
{
	ipc_store_release(&me->resv_gen, me->resv_gen + 1);
}

/*
 * Reserve n consecutive tickets of one ring without waiting.  Succeeds only
 * if every one of the n slots is already free for its ticket, so a producer
 * never holds a ticket while it waits (the probe's deadlock).  The caller
 * must have marked itself reserving (ipc_client.resv_gen odd) first.
 * Returns 0 and *ticket, GPUQ_EFULL, or GPUQ_ESHUTDOWN when intake closed.
 */
int ipc_reserve(struct ipc_ring *r, uint32_t ring, uint32_t n, uint64_t *ticket);

/* What a producer says about one message when it publishes it. */
struct ipc_msg_meta {
	uint64_t id;
	uint64_t key;
	uint32_t len;
	uint16_t client;
	uint16_t flags;
};

/*
 * Write a message's payload into the slot for ticket, in the queue's
 * format: plain bytes, or stamped chunks.  Every producer that copies
 * (clients, the broker's replays, Track A) goes through here; a loan's
 * payload is written in place, so loans exist only on plain queues.
 */
static inline void ipc_slot_fill(struct ipc_ring *r, uint32_t ring,
				 uint64_t ticket, const void *data, uint32_t len)
{
	struct ipc_msg_hdr *m = ipc_slot(r, ring, ticket);
#if IPC_HAVE_STAMPS
	if (r->hdr->stamped) {
		ipc_stamp_write(m + 1, data, len, ipc_stamp(ticket));
		return;
	}
#endif
	memcpy(m + 1, data, len);
}

/* The payload of the published slot m (ticket t): in place on a plain
 * queue, gathered into buf (slot_bytes) on a stamped one. */
static inline const uint8_t *ipc_slot_payload(const struct ipc_ring *r,
					      const struct ipc_msg_hdr *m,
					      uint32_t len, uint8_t *buf)
{
	if (!r->hdr->stamped)
		return (const uint8_t *)(m + 1);
	ipc_stamp_read(buf, m + 1, len);
	return buf;
}

/* Fill the message header of the slot for ticket, then publish it (phase
 * IPC_READY, or IPC_READY_VRAM when the payload is in the VRAM ring) with a
 * release store.  The payload must be written before this.  On a stamped
 * queue the header goes as two single 16-byte stores, each chunk whole. */
static inline void ipc_publish_phase(struct ipc_ring *r, uint32_t ring,
				     uint64_t ticket,
				     const struct ipc_msg_meta *mm,
				     enum ipc_phase phase)
{
	struct ipc_msg_hdr *m = ipc_slot(r, ring, ticket);
	struct ipc_msg_hdr h;
	uint32_t st = r->hdr->stamped ? ipc_stamp(ticket) : 0;
	h.id = mm->id;
	h.len = mm->len;
	h.stamp0 = st;
	h.key = mm->key;
	h.client = mm->client;
	h.flags = mm->flags;
	h.stamp1 = st;
#if IPC_HAVE_STAMPS
	ipc_chunk_store(m, &h);
	ipc_chunk_store((uint8_t *)m + 16, (uint8_t *)&h + 16);
#else
	*m = h;
#endif
	ipc_store_release(ipc_state(r, ring, ticket), IPC_STATE(ticket, phase));
}

static inline void ipc_publish(struct ipc_ring *r, uint32_t ring,
			       uint64_t ticket, const struct ipc_msg_meta *mm)
{
	ipc_publish_phase(r, ring, ticket, mm, IPC_READY);
}

/* ---- consumer side ---- */

enum ipc_take { IPC_TAKE_WAIT = 0, IPC_TAKE_READY = 1, IPC_TAKE_SKIP = 2 };

/* What ticket t's slot holds now (acquire load). */
static inline enum ipc_take ipc_take(const struct ipc_ring *r, uint32_t ring,
				     uint64_t t)
{
	uint64_t s = ipc_load_acquire(ipc_state(r, ring, t));
	if (s == IPC_STATE(t, IPC_READY))
		return IPC_TAKE_READY;
	if (s == IPC_STATE(t, IPC_SKIP))
		return IPC_TAKE_SKIP;
	return IPC_TAKE_WAIT;
}

/* Hand ticket t's slot to the producer of ticket t + capacity. */
static inline void ipc_release_slot(struct ipc_ring *r, uint32_t ring,
				    uint64_t t)
{
	ipc_store_release(ipc_state(r, ring, t),
			  IPC_STATE(t + r->hdr->capacity, IPC_FREE));
}

/* The ctl line (head) of a ring. */
static inline struct ipc_ctl *ipc_ctl(const struct ipc_ring *r, uint32_t ring)
{
	return &r->ctl[ring];
}

/* A consumer that has seen hdr.paused set confirms the pause generation
 * (the broker waits for it; docs/protocol.md, pause). */
static inline void ipc_pause_ack(const struct ipc_ring *r,
				 struct ipc_worker *me)
{
	uint64_t g = ipc_load_acquire(&r->hdr->pause_gen);
	if (ipc_load_relaxed(&me->pause_ack) != g)
		ipc_store_release(&me->pause_ack, g);
}

/* 1 once every worker still running has confirmed the current pause. */
static inline int ipc_pause_confirmed(const struct ipc_ring *r)
{
	uint64_t g = ipc_load_acquire(&r->hdr->pause_gen);
	for (uint32_t w = 0; w < r->hdr->nworkers; w++)
		if (ipc_load_acquire(&r->workers[w].pause_ack) != g &&
		    ipc_load_acquire(&r->workers[w].cur) != UINT64_MAX)
			return 0;
	return 1;
}

/* ---- broker side ---- */

/* Close intake of one ring: set IPC_HEAD_CLOSED, return its final count. */
uint64_t ipc_close_intake(struct ipc_ring *r, uint32_t ring);

/* Lowest ticket of ring not yet consumed: its worker's cur for an ordered
 * queue, the minimum over workers' cur for the shared ring. */
uint64_t ipc_consumed_frontier(const struct ipc_ring *r, uint32_t ring);

/* Mark SKIP every ticket of ring in [lo, hi) whose slot is still
 * unpublished.  Only valid once no live producer can own such a ticket.
 * Returns the count marked. */
uint64_t ipc_skip_unpublished(struct ipc_ring *r, uint32_t ring, uint64_t lo,
			      uint64_t hi);

/* Counters summed over rings, workers and clients, straight from shared
 * memory.  head is the sum of all rings' heads. */
struct ipc_counts {
	uint64_t published, completed, dead_lettered, retried, skipped;
	uint64_t full_events, head, dlq_pending, dlq_replayed, dlq_purged;
	uint64_t dlq_waits, garbled;
	uint64_t lat[IPC_LAT_BUCKETS], lat_sum_ns, lat_count;
};
void ipc_counts_read(const struct ipc_ring *r, struct ipc_counts *out);

#endif
