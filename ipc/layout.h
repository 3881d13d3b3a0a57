/*
 * layout.h - the shared-memory layout of one gpuq queue (layout version 5).
 *
 * One memfd per queue, created by gpuqd and passed to clients over the
 * control socket.  docs/protocol.md is the prose version of this file.
 *
 * The rule that shapes every field: each word has exactly one writer in each
 * phase of its life.  On the CUDA backend the consumer is a GPU kernel, and
 * GPU read-modify-write atomics on host memory are not atomic with the CPU
 * over PCIe; only aligned 1-16 byte loads and stores are.  So the only
 * multi-writer word is the ticket counter `head`, which producers (all CPU)
 * advance with compare-and-swap and the GPU never writes.
 *
 *   offset 0          struct ipc_hdr            (one page)
 *   hdr.ctl_off       struct ipc_ctl[R]         (one head per ring, a line each)
 *   hdr.workers_off   struct ipc_worker[N]      (consumer counters, 2 lines each)
 *   hdr.clients_off   struct ipc_client[M + 1]  (3 lines each; the last is
 *                                                the broker's own, for replays)
 *   hdr.states_off    uint64_t state[R][capacity] (slot state words)
 *   hdr.slots_off     R * capacity * slot_stride  (ipc_msg_hdr + payload)
 *   hdr.cq_off        M * cq_capacity * cq_stride (per-client result areas)
 *   hdr.dlq_off       N * dlq_per_worker * dlq_stride (dead letters, per worker)
 *
 * R (nrings) is 1 for an unordered queue.  An ordered queue has one ring per
 * worker: a message goes to ring hash(key) % R and each ring is consumed in
 * ticket order by its one worker, so messages with one key complete in the
 * order they were enqueued, and different keys proceed in parallel.
 */
#ifndef GPUQ_IPC_LAYOUT_H
#define GPUQ_IPC_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

#define IPC_MAGIC 0x3130515550477167ull /* "gqGPUQ01" little-endian */
#define IPC_LAYOUT_VERSION 5u
/* 128, not 64: x86 prefetches cache lines in adjacent pairs, so counters
 * 64 bytes apart still false-share. */
#define IPC_LINE 128u
#define IPC_NAME_MAX 64u
#define IPC_HANDLER_MAX 32u
#define IPC_MAX_WORKERS 128u

/* End-to-end latency histogram (enqueue to result read), kept by each
 * client in its own record: bucket b counts latencies below 2^b us, the
 * last bucket everything longer. */
#define IPC_LAT_BUCKETS 24u

/* The layout is read by C (gcc) and C++ (nvcc) alike. */
#define IPC_ALIGN_LINE __attribute__((aligned(IPC_LINE)))
#ifdef __cplusplus
#define IPC_STATIC_ASSERT static_assert
#else
#define IPC_STATIC_ASSERT _Static_assert
#endif

/*
 * Slot state word: (ticket << 2) | phase.  Carrying the ticket makes every
 * state unambiguous across laps of the ring (no ABA) and lets a producer
 * check "is slot free for *my* ticket" with one load.
 *   FREE(t)   slot may be written by the producer holding ticket t.
 *             Writer: the consumer (or the broker at creation).
 *   READY(t)  payload for ticket t is published.  Writer: that producer.
 *   SKIP(t)   ticket t was reserved by a producer that died before
 *             publishing; the consumer passes over it.  Writer: the broker,
 *             only after the producer is known dead (its phase has ended).
 *   READY_VRAM(t)  as READY, but the payload is already in the queue's
 *             VRAM ring (a GPU producer put it there through the CUDA IPC
 *             handle); the host slot holds only the header.  CUDA queues
 *             only.  Writer: that producer.
 * After consuming ticket t the consumer writes FREE(t + capacity).
 */
enum ipc_phase { IPC_FREE = 0, IPC_READY = 1, IPC_SKIP = 2,
		 IPC_READY_VRAM = 3 };
#define IPC_STATE(ticket, phase) (((uint64_t)(ticket) << 2) | (uint64_t)(phase))
#define IPC_STATE_PHASE(s) ((unsigned)((s)&3u))
#define IPC_STATE_TICKET(s) ((s) >> 2)

/* Set in ctl.head by the broker to stop intake: producers' CAS from an open
 * value never succeeds again, and the low bits are the exact final count. */
#define IPC_HEAD_CLOSED (1ull << 63)

/* Broker lifecycle, hdr.state. */
enum ipc_broker_state {
	IPC_BROKER_STARTING = 0,
	IPC_BROKER_RUNNING = 1,
	IPC_BROKER_DRAINING = 2,
	IPC_BROKER_STOPPED = 3,
};

/* Backends, hdr.backend. */
enum ipc_backend { IPC_BACKEND_CPU = 1, IPC_BACKEND_CUDA = 2 };

struct ipc_hdr {
	uint64_t magic;
	/* Written last by the broker, after everything else is initialised;
	 * a client that maps the memory checks it before reading anything. */
	uint32_t layout_version;
	uint32_t hdr_bytes;
	uint64_t total_bytes;
	uint32_t capacity;     /* power of two */
	uint32_t slot_bytes;   /* payload room per slot */
	uint32_t slot_stride;  /* sizeof(ipc_msg_hdr) + slot_bytes, 128-aligned*/
	uint32_t result_bytes; /* result room per completion entry */
	uint32_t cq_stride;    /* sizeof(ipc_cq_entry) + result_bytes, aligned */
	uint32_t cq_capacity;  /* completion entries per client, power of two */
	uint32_t max_clients;
	uint32_t nworkers;     /* entries of the workers array in use */
	uint32_t backend;      /* enum ipc_backend */
	uint32_t handler_id;
	uint32_t nrings;       /* 1, or nworkers for an ordered queue */
	uint32_t ordered;      /* 1: ring r is consumed in order by worker r */
	uint32_t max_attempts; /* handler runs per message before dead-letter */
	uint32_t fail_ppm;     /* fault injection: messages chosen per million */
	uint32_t fail_attempts;/* a chosen message fails this many attempts
				  (0 = all of them) */
	uint32_t dlq_per_worker; /* dead-letter entries per worker, power of 2 */
	uint32_t dlq_stride;   /* sizeof(ipc_dlq_entry) + slot_bytes, aligned */
	uint32_t stamped;      /* 1: slots in the stamped format (stamp.h);
				  slot_stride then has room for it */
	uint32_t cq_stamped;   /* 1: completion entries in the stamped format
				  (ipc/cq.h); cq_stride has room for it */
	uint32_t pad2;
	uint64_t ctl_off, workers_off, clients_off, states_off, slots_off, cq_off;
	uint64_t dlq_off;
	char name[IPC_NAME_MAX];
	char handler[IPC_HANDLER_MAX];
	int32_t broker_pid;
	uint32_t pad0;
	uint64_t epoch; /* random per broker start */

	/* Broker-written, changes at run time: its own cache lines. */
	IPC_ALIGN_LINE uint64_t heartbeat_ns; /* CLOCK_MONOTONIC */
	uint32_t state;                           /* enum ipc_broker_state */
	uint32_t pad1;
	uint64_t retired_published; /* published by clients now detached */
	uint64_t retired_full;      /* full events of clients now detached */
	uint64_t reclaimed;         /* tickets the broker marked SKIP */
	uint64_t clients_attached;
	uint64_t dlq_replayed;      /* dead letters put back into the ring */
	uint64_t dlq_purged;        /* dead letters dropped by an operator */
	/* paused and pause_gen form one aligned 64-bit word, so a consumer
	 * reads both in one load (the GPU's pump does). */
	uint32_t paused;            /* 1: consumers take no new tickets */
	uint32_t pause_gen;         /* bumped by each pause; consumers confirm
				       it in ipc_worker.pause_ack */
	/* Latency of clients now detached, added in at detach. */
	uint64_t retired_lat[IPC_LAT_BUCKETS];
	uint64_t retired_lat_sum_ns, retired_lat_count;
};

struct ipc_ctl {
	/* Next ticket to hand out; producers CAS it forward by the batch size.
	 * IPC_HEAD_CLOSED set by the broker ends intake. */
	IPC_ALIGN_LINE uint64_t head;
};

/* Per consumer worker (CPU thread or GPU block). */
struct ipc_worker {
	/* Line 1: written only by the worker. */
	IPC_ALIGN_LINE uint64_t completed; /* messages finished, any outcome */
	uint64_t dead_lettered; /* of completed: moved to the dead-letter queue */
	uint64_t skipped;       /* reclaimed tickets passed over */
	uint64_t retried;       /* handler re-runs after a failure */
	/* Lowest ticket (of its ring, or of the shared ring) this worker has
	 * not finished; the consumed frontier is built from these. */
	uint64_t cur;
	uint64_t dlq_head;      /* dead letters written (positions < this) */
	uint64_t dlq_waits;     /* times the worker waited for dead-letter room */
	uint64_t garbled;       /* of completed: slot header out of range (a
				   producer bug); dropped, counted here */
	/* The hdr.pause_gen this worker last saw paused: from then on it
	 * takes no ticket until resumed, and every look it began before has
	 * ended.  The broker waits for it before PAUSE answers. */
	uint64_t pause_ack;
	/* Line 2: written only by the broker. */
	IPC_ALIGN_LINE uint64_t dlq_tail; /* positions below this are freed */
};

enum ipc_client_state { IPC_CLIENT_FREE = 0, IPC_CLIENT_ACTIVE = 1,
			IPC_CLIENT_DEAD = 2 };

struct ipc_client {
	/* Line 1: written by the broker at attach and detach. */
	IPC_ALIGN_LINE uint32_t state; /* enum ipc_client_state */
	int32_t pid;
	uint32_t uid;
	uint32_t gen; /* bumped on every attach of this entry */
	/* Lines 2-3: written only by the attached client. */
	IPC_ALIGN_LINE uint64_t resv_gen; /* odd while reserving or loaning */
	uint64_t published;   /* messages published */
	uint64_t full_events; /* attempts that found the ring full */
	uint64_t cq_released; /* all ids below this have been read */
	uint64_t heartbeat_ns;/* CLOCK_MONOTONIC of its last call */
	uint64_t reserved;    /* slots on loan (reserved, not committed) */
	uint64_t lat_sum_ns, lat_count;
	uint64_t lat[IPC_LAT_BUCKETS];
};

/* ipc_msg_hdr.flags */
#define IPC_MSG_NORESULT 1u /* no completion entry (the broker's replays) */

/* In front of each payload.  Written by the producer before READY.  Two
 * 16-byte chunks, each ending in a stamp (stamp.h): ipc_stamp(ticket) on a
 * stamped queue, 0 otherwise. */
struct ipc_msg_hdr {
	uint64_t id;     /* the client's message id */
	uint32_t len;    /* payload bytes */
	uint32_t stamp0;
	uint64_t key;    /* ordering key (ordered queues), kept for dead letters */
	uint16_t client; /* index into the clients array */
	uint16_t flags;  /* IPC_MSG_* */
	uint32_t stamp1;
};

/*
 * A dead letter: a message whose handler failed max_attempts times.  The
 * worker writes the entry at position p of its own dead-letter ring (waiting
 * while p - dlq_tail == dlq_per_worker, so nothing is ever dropped), then
 * stores seq = p + 1 with release semantics.  The broker lists, replays and
 * purges entries in position order and frees them by advancing dlq_tail.
 */
struct ipc_dlq_entry {
	uint64_t seq;
	uint64_t id;
	uint64_t key;
	uint64_t ticket;
	int32_t status;    /* the handler's last return code */
	uint32_t attempts;
	uint32_t len;
	uint16_t client;
	uint16_t flags;
	int32_t pid;       /* the producer, as the client table had it */
	uint32_t ring;
	uint64_t pad;
	/* payload follows */
};

/*
 * One completion entry, two 16-byte chunks of header and then the result.
 * How the consumer makes it visible depends on hdr.cq_stamped (ipc/cq.h):
 *   plain    status, len, the rest and the result first; then done = id + 1
 *            with release semantics (on the GPU: after a system fence).
 *   stamped  every 16-byte chunk proves itself, in any order, with no fence:
 *            chunk 0 by done == id + 1, chunk 1 by stamp == ipc_stamp(id),
 *            and the result's chunks (12 bytes and the stamp each, as a
 *            stamped slot's) by their stamps.
 * The client owns the entry again once it has read it; it never has more
 * than cq_capacity messages unread, so the consumer never overwrites an
 * unread entry and never has to wait.
 */
struct ipc_cq_entry {
	uint64_t done;
	int32_t status;
	uint32_t len;
	uint64_t seq;      /* that worker's completions before this one: the
			      order in which one worker finished messages */
	uint16_t attempts; /* handler runs it took (max_attempts <= 100) */
	uint16_t worker;   /* the worker that ran it; IPC_CQ_NO_WORKER when
			      the broker failed it (no worker ran it) */
	uint32_t stamp;    /* ipc_stamp(id) when stamped, else 0 */
	/* result bytes follow, 16-byte aligned */
};
#define IPC_CQ_NO_WORKER 0xffffu

/* Both backends fill a dead letter's header the same way (the CPU worker
 * and the GPU kernel); seq is published separately, last. */
#ifdef __CUDACC__
#define IPC_HD __host__ __device__ inline
#else
#define IPC_HD static inline
#endif
IPC_HD void ipc_dlq_fill(struct ipc_dlq_entry *d, const struct ipc_msg_hdr *m,
			 uint64_t ticket, int32_t status, uint32_t attempts,
			 int32_t pid, uint32_t ring)
{
	d->id = m->id;
	d->key = m->key;
	d->ticket = ticket;
	d->status = status;
	d->attempts = attempts;
	d->len = m->len;
	d->client = m->client;
	d->flags = m->flags;
	d->pid = pid;
	d->ring = ring;
}

#define IPC_MSG_HDR_BYTES ((uint32_t)sizeof(struct ipc_msg_hdr))
#define IPC_CQ_HDR_BYTES ((uint32_t)sizeof(struct ipc_cq_entry))
#define IPC_DLQ_HDR_BYTES ((uint32_t)sizeof(struct ipc_dlq_entry))

IPC_STATIC_ASSERT(sizeof(struct ipc_msg_hdr) == 32, "msg hdr is 32 bytes");
IPC_STATIC_ASSERT(sizeof(struct ipc_cq_entry) == 32, "cq entry hdr is 32 bytes");
IPC_STATIC_ASSERT(offsetof(struct ipc_cq_entry, stamp) == 28,
		  "a cq entry's stamp ends its second chunk");
IPC_STATIC_ASSERT(IPC_MAX_WORKERS < IPC_CQ_NO_WORKER, "worker fits 16 bits");
IPC_STATIC_ASSERT(sizeof(struct ipc_ctl) == IPC_LINE, "ctl is one line");
IPC_STATIC_ASSERT(sizeof(struct ipc_worker) == 2 * IPC_LINE, "worker: 2 lines");
IPC_STATIC_ASSERT(sizeof(struct ipc_dlq_entry) == 64, "dlq entry hdr is 64 bytes");
IPC_STATIC_ASSERT(sizeof(struct ipc_client) == 3 * IPC_LINE, "client: 3 lines");
IPC_STATIC_ASSERT(offsetof(struct ipc_hdr, paused) % 8 == 0 &&
		  offsetof(struct ipc_hdr, pause_gen) ==
			  offsetof(struct ipc_hdr, paused) + 4,
		  "paused and pause_gen: one aligned 64-bit word");

#endif
