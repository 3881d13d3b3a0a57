/*
 * layout.h - the shared-memory layout of one gpuq queue (layout version 1).
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
 *   hdr.ctl_off       struct ipc_ctl            (head/closed, own cache line)
 *   hdr.workers_off   struct ipc_worker[N]      (consumer counters, 1 line each)
 *   hdr.clients_off   struct ipc_client[M]      (2 lines each)
 *   hdr.states_off    uint64_t state[capacity]  (slot state words)
 *   hdr.slots_off     capacity * slot_stride    (ipc_msg_hdr + payload)
 *   hdr.cq_off        M * cq_capacity * cq_stride (per-client result areas)
 */
#ifndef GPUQ_IPC_LAYOUT_H
#define GPUQ_IPC_LAYOUT_H

#include <stdint.h>

#define IPC_MAGIC 0x3130515550477167ull /* "gqGPUQ01" little-endian */
#define IPC_LAYOUT_VERSION 1u
/* 128, not 64: x86 prefetches cache lines in adjacent pairs, so counters
 * 64 bytes apart still false-share. */
#define IPC_LINE 128u
#define IPC_NAME_MAX 64u
#define IPC_HANDLER_MAX 32u
#define IPC_MAX_WORKERS 128u

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
 * After consuming ticket t the consumer writes FREE(t + capacity).
 */
enum ipc_phase { IPC_FREE = 0, IPC_READY = 1, IPC_SKIP = 2 };
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
	uint64_t ctl_off, workers_off, clients_off, states_off, slots_off, cq_off;
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
};

struct ipc_ctl {
	/* Next ticket to hand out; producers CAS it forward by the batch size.
	 * IPC_HEAD_CLOSED set by the broker ends intake. */
	IPC_ALIGN_LINE uint64_t head;
};

/* Per consumer worker (CPU thread or GPU block): written only by it. */
struct ipc_worker {
	IPC_ALIGN_LINE uint64_t completed;
	uint64_t failed;
	uint64_t skipped;
	/* Lowest ticket this worker has not finished; the broker's consumed
	 * frontier is the minimum over workers. */
	uint64_t cur;
};

enum ipc_client_state { IPC_CLIENT_FREE = 0, IPC_CLIENT_ACTIVE = 1,
			IPC_CLIENT_DEAD = 2 };

struct ipc_client {
	/* Line 1: written by the broker at attach and detach. */
	IPC_ALIGN_LINE uint32_t state; /* enum ipc_client_state */
	int32_t pid;
	uint32_t uid;
	uint32_t gen; /* bumped on every attach of this entry */
	/* Line 2: written only by the attached client. */
	IPC_ALIGN_LINE uint64_t resv_gen; /* odd while reserving or loaning */
	uint64_t published;   /* messages published */
	uint64_t full_events; /* attempts that found the ring full */
	uint64_t cq_released; /* all ids below this have been read */
};

/* In front of each payload.  Written by the producer before READY. */
struct ipc_msg_hdr {
	uint64_t id;     /* the client's message id */
	uint32_t len;    /* payload bytes */
	uint16_t client; /* index into the clients array */
	uint16_t flags;
	uint64_t pad;
	uint64_t key; /* reserved for ordered queues */
};

/*
 * One completion entry.  The consumer writes status, len and the result,
 * then stores done = id + 1 with release semantics (on the GPU: after
 * __threadfence_system()).  The client owns the entry again once it has
 * read it; it never has more than cq_capacity messages unread, so the
 * consumer never overwrites an unread entry and never has to wait.
 */
struct ipc_cq_entry {
	uint64_t done;
	int32_t status;
	uint32_t len;
	/* result bytes follow, 16-byte aligned */
};

#define IPC_MSG_HDR_BYTES ((uint32_t)sizeof(struct ipc_msg_hdr))
#define IPC_CQ_HDR_BYTES ((uint32_t)sizeof(struct ipc_cq_entry))

IPC_STATIC_ASSERT(sizeof(struct ipc_msg_hdr) == 32, "msg hdr is 32 bytes");
IPC_STATIC_ASSERT(sizeof(struct ipc_cq_entry) == 16, "cq entry hdr is 16 bytes");
IPC_STATIC_ASSERT(sizeof(struct ipc_ctl) == IPC_LINE, "ctl is one line");
IPC_STATIC_ASSERT(sizeof(struct ipc_worker) == IPC_LINE, "worker is one line");
IPC_STATIC_ASSERT(sizeof(struct ipc_client) == 2 * IPC_LINE, "client: 2 lines");

#endif
