/*
 * proto.h - control-socket messages between clients and gpuqd.
 *
 * The socket is AF_UNIX SOCK_SEQPACKET, so each message arrives whole or not
 * at all; every message is a fixed header plus a body whose size the type
 * fixes.  The decoder trusts nothing: docs/protocol.md lists the checks, and
 * tests/check_proto.c feeds it random and mutated messages.
 */
#ifndef GPUQ_IPC_PROTO_H
#define GPUQ_IPC_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "ipc/layout.h"

#define PROTO_MAGIC 0x47505551u /* "QUPG" */
#define PROTO_VERSION 3u
#define PROTO_MAX_MSG 8192u /* largest message either side sends */
#define PROTO_MAX_QUEUES 32u  /* queues per STATUS reply */

enum proto_type {
	PROTO_HELLO = 1,     /* c->b: version check */
	PROTO_HELLO_OK = 2,  /* b->c: broker pid, epoch */
	PROTO_OPEN = 3,      /* c->b: queue name */
	PROTO_OPEN_OK = 4,   /* b->c: client index, map size, CUDA handle; fd */
	PROTO_CLOSE = 5,     /* c->b: client index (no reply) */
	PROTO_STATUS = 6,    /* c->b: (empty) */
	PROTO_STATUS_OK = 7, /* b->c: per-queue counters */
	PROTO_ERROR = 8,     /* b->c: code and text */
	PROTO_SHUTDOWN = 9,  /* c->b: drain and stop (operator only); the
				STATUS_OK reply comes when the drain ends */
	PROTO_DLQ = 10,      /* c->b: dead-letter list/show/replay/purge */
	PROTO_DLQ_OK = 11,   /* b->c: its result */
	PROTO_PAUSE = 12,    /* c->b: proto_name ("" = every queue); operator */
	PROTO_RESUME = 13,   /* c->b: proto_name; operator; reply STATUS_OK */
	PROTO_CLIENTS = 14,  /* c->b: proto_clients_req */
	PROTO_CLIENTS_OK = 15, /* b->c: attached clients */
	PROTO_TYPE_MAX = 16,
};

struct proto_hdr {
	uint32_t magic;
	uint16_t version;
	uint16_t type;
	uint32_t body_len;
	uint32_t seq; /* echoed in the reply */
};

struct proto_hello_ok {
	int32_t broker_pid;
	uint32_t layout_version;
	uint64_t epoch;
};

struct proto_open {
	char name[IPC_NAME_MAX]; /* NUL-terminated */
};

struct proto_open_ok {
	uint32_t client;       /* index into the queue's client table */
	uint32_t backend;      /* enum ipc_backend */
	uint64_t map_bytes;    /* size to mmap from the passed fd */
	uint32_t has_cuda_ipc; /* 1 if cuda_ipc holds a cudaIpcMemHandle_t */
	uint32_t pad;
	uint8_t cuda_ipc[64];  /* the queue's VRAM ring, for GPU producers */
};

struct proto_close {
	uint32_t client;
	uint32_t pad;
	char name[IPC_NAME_MAX];
};

struct proto_qstat {
	char name[IPC_NAME_MAX];
	char handler[IPC_HANDLER_MAX];
	uint32_t capacity, slot_bytes, result_bytes, backend;
	uint32_t clients, state, nrings, ordered;
	uint64_t enqueued, completed, retried, dead_lettered, reclaimed;
	uint64_t full_events, depth, dlq_pending, dlq_replayed, dlq_purged;
	uint64_t dlq_waits, garbled;
	uint32_t paused, pad;
	uint64_t start_ns; /* creating the queue and starting its backend */
	uint64_t drain_ns; /* intake closed until all consumed; 0 before */
};

struct proto_status_ok {
	int32_t broker_pid;
	uint32_t nqueues;
	uint64_t epoch;
	uint64_t uptime_ns;
	uint64_t ready_ns; /* process start until it accepted connections */
	uint64_t drain_ns; /* drain start until every queue drained; 0 before */
	struct proto_qstat q[]; /* nqueues entries */
};

/* PROTO_DLQ: op is enum dlq_op (broker.h): 1 list, 2 show, 3 replay,
 * 4 purge. */
struct proto_dlq_req {
	char name[IPC_NAME_MAX];
	uint32_t op;
	uint32_t worker; /* show: which worker's dead-letter ring */
	uint64_t pos;    /* show: position; list: index of the first to list */
	uint64_t count;  /* list: most to list; replay/purge: how many
			    (UINT64_MAX: all) */
};

struct proto_dlq_item {
	uint32_t worker, ring;
	uint64_t pos, id, key;
	int32_t status;
	uint32_t attempts, len, client;
	int32_t pid;
	uint32_t pad;
};

#define PROTO_DLQ_MAX_ITEMS 128u
#define PROTO_DLQ_MAX_DATA 4096u /* payload bytes a show carries */

struct proto_dlq_ok {
	uint64_t total;    /* dead letters held after the operation */
	uint64_t done;     /* replay/purge: how many */
	uint32_t nitems;   /* list: items; show: 1 */
	uint32_t data_len; /* show: payload bytes after the item (maybe cut) */
	struct proto_dlq_item items[];
};

struct proto_name {
	char name[IPC_NAME_MAX];
};

struct proto_clients_req {
	uint32_t first; /* index of the first client to list */
	uint32_t pad;
};

struct proto_client_item {
	char queue[IPC_NAME_MAX];
	uint32_t client;
	int32_t pid;
	uint32_t uid;
	uint32_t pad;
	uint64_t published, reserved, inflight;
	uint64_t heartbeat_age_ns;
};

#define PROTO_CLIENTS_MAX_ITEMS 64u

struct proto_clients_ok {
	uint32_t total;  /* clients attached over all queues */
	uint32_t nitems;
	struct proto_client_item items[];
};

struct proto_error {
	int32_t code;
	char text[124];
};

/* The biggest message is a STATUS_OK listing every queue. */
IPC_STATIC_ASSERT(sizeof(struct proto_hdr) + sizeof(struct proto_status_ok) +
			  PROTO_MAX_QUEUES * sizeof(struct proto_qstat) <=
		  PROTO_MAX_MSG,
		  "a full STATUS_OK must fit in PROTO_MAX_MSG");
IPC_STATIC_ASSERT(sizeof(struct proto_hdr) + sizeof(struct proto_clients_ok) +
			  PROTO_CLIENTS_MAX_ITEMS * sizeof(struct proto_client_item) <=
		  PROTO_MAX_MSG,
		  "a full client list must fit in PROTO_MAX_MSG");
IPC_STATIC_ASSERT(sizeof(struct proto_hdr) + sizeof(struct proto_dlq_ok) +
			  PROTO_DLQ_MAX_ITEMS * sizeof(struct proto_dlq_item) <=
		  PROTO_MAX_MSG,
		  "a full dead-letter list must fit in PROTO_MAX_MSG");
IPC_STATIC_ASSERT(sizeof(struct proto_hdr) + sizeof(struct proto_dlq_ok) +
			  sizeof(struct proto_dlq_item) + PROTO_DLQ_MAX_DATA <=
		  PROTO_MAX_MSG,
		  "a dead-letter show must fit in PROTO_MAX_MSG");

/* A decoded message: the header, and the body in place. */
struct proto_msg {
	struct proto_hdr hdr;
	const void *body;
};

/* Check buf[0..n) is one well-formed message; fill *m.
 * Errors: GPUQ_EPROTO (garbled/truncated/unknown type/bad size or an
 * unterminated name), GPUQ_EVERSION (other protocol version). */
int proto_decode(const void *buf, size_t n, struct proto_msg *m);

/* Write header + body into buf (cap bytes); returns total length or
 * -EMSGSIZE. */
int proto_encode(void *buf, size_t cap, uint16_t type, uint32_t seq,
		 const void *body, uint32_t body_len);

/* Send one message (and optionally one fd) / receive one message (and
 * any passed fd, else *fd = -1).  recv returns bytes, 0 on hang-up, or a
 * negated errno.  Messages longer than cap are reported as GPUQ_EPROTO. */
int proto_send(int sock, const void *buf, size_t len, int fd);
int proto_recv(int sock, void *buf, size_t cap, int *fd);

/* Build a control-message buffer carrying fd for sendmsg(); used by both
 * proto_send() and the broker's io_uring path. */
struct msghdr;
struct iovec;
void proto_msghdr_fd(struct msghdr *mh, struct iovec *iov, void *cmsgbuf,
		     size_t cmsgcap, void *buf, size_t len, int fd);

#endif
