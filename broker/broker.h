/* broker.h - gpuqd's internal state: queues, connections, backends. */
#ifndef GPUQ_BROKER_BROKER_H
#define GPUQ_BROKER_BROKER_H

#include <stdint.h>
#include <sys/types.h>

#include "broker/conf.h"
#include "broker/kvtable.h"
#include "ipc/proto.h"
#include "ipc/ring.h"

struct bqueue;
struct tracka;

/* A backend consumes one queue's ring.  The CPU backend is threads in
 * gpuqd; the CUDA backend is a persistent kernel. */
struct backend_ops {
	const char *name;
	/* Start consuming.  Errors: negated errno, GPUQ_ECUDA, GPUQ_EBACKEND.*/
	int (*start)(struct bqueue *q);
	/* Stop at once (after drain, or when the drain timed out) and free. */
	void (*stop)(struct bqueue *q);
	/* Optional: bytes the client needs to open the VRAM ring (CUDA IPC
	 * handle); returns 0 when there is none. */
	int (*ipc_handle)(struct bqueue *q, uint8_t out[64]);
	/* Optional, called every tick: 0 while the consumers are alive, else
	 * GPUQ_ECUDA after logging why (a device fault: the CUDA context is
	 * lost, with every kernel in it). */
	int (*health)(struct bqueue *q);
	/* Optional, called every tick: housekeeping on the backend's side
	 * (the CUDA backend sweeps and counts its VRAM tables). */
	void (*tick)(struct bqueue *q, uint64_t now_ns);
	/* Optional: tell the consumers to stop, without waiting.  gpuqd halts
	 * every queue before it stops any: the CUDA backend's frees may wait
	 * for every kernel of the context, and a kernel not yet told to stop
	 * never ends. */
	void (*halt)(struct bqueue *q);
};

extern const struct backend_ops backend_cpu_ops;
#ifdef HAVE_CUDA
extern const struct backend_ops backend_cuda_ops;
/* 1 if a usable CUDA device exists (auto backend selection). */
int backend_cuda_available(void);
#endif

/* A detached client's slot waits here until the consumers have passed every
 * ticket it could have reserved; only then can the entry be reused. */
struct bclient_slot {
	struct bconn *owner;    /* attached connection, or NULL */
	uint64_t *detach_heads; /* each ring's head when it detached */
	int reclaim_pending;    /* unpublished tickets still to SKIP */
	int scrub_asked;        /* handed to the recycler (recycle.c); guarded
				   by its mutex */
	uint64_t *gen_snap;     /* other clients' resv_gen at detach */
};

struct bqueue {
	struct queue_config conf;
	uint32_t handler_id;
	int fd; /* memfd */
	struct ipc_ring r;
	const struct backend_ops *be;
	void *be_state;
	struct bclient_slot *slots; /* conf.max_clients */
	uint64_t *final_heads;      /* per ring, valid once intake is closed */
	int closed;
	/* Liveness, kept by bqueue_tick: when the backend last had work and
	 * made no progress since (0: it is progressing or has nothing). */
	uint64_t last_completed, stalled_since_ns;
	uint64_t last_heartbeat_ns; /* what the last tick wrote */
	/* Timings for stats: how long the start took; when intake closed
	 * and how long the drain took (0 until drained). */
	uint64_t start_ns, closed_at_ns, drain_ns;
	/* The client entry of gpuqd's own producer (Track A), or -1: its
	 * dead letters are freed by bqueue_tick (they go to Redis). */
	int32_t internal_client;
	struct tracka *tracka; /* Redis stream binding, or NULL */
	struct recycler *recycler; /* clears detached clients' areas */
	/* Hash tables (design.md §15): handler state, and the exactly-once
	 * records with the sweep that expires them; .nbuckets 0 where the
	 * queue has none.  tables_dev: they live in device memory (CUDA
	 * backend), .slots are device pointers the host must not touch, and
	 * dev_used holds the slots in use (state, dedupe) as last counted
	 * there. */
	struct gpuq_kvt table, once;
	uint64_t once_window_ns, sweep_pos;
	int tables_dev;
	uint64_t dev_used[2];
};

/* Dead-letter operations, for the control protocol. */
enum dlq_op { DLQ_LIST = 1, DLQ_SHOW = 2, DLQ_REPLAY = 3, DLQ_PURGE = 4 };

#define BCONN_MAX_ATTACH 64

struct bconn {
	int fd;
	pid_t pid;
	uid_t uid;
	gid_t gid;
	int denied;
	/* Attachments: queue index and client slot. */
	uint32_t nattach;
	struct { uint32_t q, client; } attach[BCONN_MAX_ATTACH];
	/* Owned by the event loop. */
	void *loop_priv;
	int dropping;
	struct bconn *lnext, *lprev;
	__attribute__((aligned(8))) uint8_t rx[PROTO_MAX_MSG + 64];
	__attribute__((aligned(8))) uint8_t tx[PROTO_MAX_MSG];
};

struct broker {
	struct gpuqd_config conf;
	struct bqueue *queues;
	uint32_t nqueues;
	uint32_t nconns;
	uint64_t epoch;
	uint64_t started_ns;
	uint64_t ready_ns;          /* start until accepting connections */
	uint64_t drain_started_ns;  /* when the drain began (0: not draining) */
	uint64_t last_tick_ns;      /* when ctl_tick last ran (stall warnings) */
	uint64_t drain_ns;          /* how long it took (0 until done) */
	uint64_t drain_deadline_ns;
	int draining;
	struct bconn *drain_waiter; /* asked for the drain; told when done */
	uint32_t drain_waiter_seq;
	int exit_status;            /* non-zero: gpuqd's exit status */
	int listen_fd, lock_fd;
	char socket_path[CONF_PATH_MAX];
	struct loop *loop;
};

/* queue_table.c: a queue's hash tables (handler state, exactly-once
 * records), in host memory or, on the CUDA backend, only sized here. */
int bqueue_tables_create(struct bqueue *q, uint32_t result_bytes,
			 uint32_t kind);
void bqueue_tables_destroy(struct bqueue *q);
/* Bytes a table takes: its slots and its locks. */
uint64_t bqueue_table_bytes(const struct gpuq_kvt *t);
/* Slots in use in the state table (once 0) or the dedupe table (1). */
uint64_t bqueue_table_used(const struct bqueue *q, int once);
/* Expire exactly-once records past their window, a slice per call;
 * returns how many. */
uint64_t bqueue_tables_sweep(struct bqueue *q, uint64_t now_ns);

/* queue.c */
int bqueue_create(struct bqueue *q, const struct queue_config *c,
		  int default_backend, uint64_t epoch);
/* Tell the queue's consumers to stop (before bqueue_destroy of any queue). */
void bqueue_halt(struct bqueue *q);
void bqueue_destroy(struct bqueue *q);
int bqueue_attach(struct bqueue *q, struct bconn *c, uint32_t *client);
int bqueue_attach_internal(struct bqueue *q, uint32_t *client);
void bqueue_detach(struct bqueue *q, uint32_t client);
/* The queue's recycler thread (recycle.c): recycle_ask hands it a DEAD
 * entry whose quarantine is over; it scrubs the entry's completion area
 * and then publishes the entry FREE.  recycle_stop joins it (safe when it
 * never started). */
int recycle_start(struct bqueue *q);
void recycle_ask(struct bqueue *q, uint32_t client);
void recycle_stop(struct bqueue *q);
/* Periodic work: heartbeat, reclaim of dead producers' tickets, release of
 * quarantined client slots. */
void bqueue_tick(struct bqueue *q, uint64_t now_ns);
/* Stop intake; returns the final ticket count. */
void bqueue_close_intake(struct bqueue *q);
/* Stop (on = 1) or restart consumers taking new tickets; producers can
 * still enqueue until the ring is full. */
void bqueue_pause(struct bqueue *q, int on);
/* Wait until every running worker of a paused q has confirmed the pause
 * (ipc_worker.pause_ack), so that no message published afterwards is run;
 * 0, or GPUQ_ETIMEDOUT at deadline_ns (CLOCK_MONOTONIC). */
int bqueue_pause_wait(const struct bqueue *q, uint64_t deadline_ns);
/* 1 when every ticket below final_head has been consumed. */
int bqueue_drained(const struct bqueue *q);
/* Record (and log) the drain's duration the first time it is over. */
void bqueue_note_drained(struct bqueue *q, uint64_t now_ns);
/* After the consumers died (a device fault): complete every published,
 * unfinished message with GPUQ_EDEVICE, so no producer waits for a result
 * that will never come.  Returns how many. */
uint64_t bqueue_fail_inflight(struct bqueue *q);
void bqueue_qstat(const struct bqueue *q, struct proto_qstat *out);
/* List up to max dead letters starting at the index-th oldest; returns the
 * count written to out.  *total gets how many are held. */
uint32_t bqueue_dlq_list(const struct bqueue *q, uint64_t index,
			 struct proto_dlq_item *out, uint32_t max,
			 uint64_t *total);
/* A dead letter as the control protocol describes it. */
void bqueue_dlq_item(const struct ipc_dlq_entry *d, uint32_t worker,
		     uint64_t pos, struct proto_dlq_item *out);
/* The dead letter at worker/pos, or NULL if it is not held. */
const struct ipc_dlq_entry *bqueue_dlq_get(const struct bqueue *q,
					   uint32_t worker, uint64_t pos);
/* Put the oldest n dead letters back into the ring (as the broker's own
 * messages, results discarded) or drop them.  Returns how many; a replay
 * stops early when the ring is full. */
uint64_t bqueue_dlq_replay(struct bqueue *q, uint64_t n);
uint64_t bqueue_dlq_purge(struct bqueue *q, uint64_t n);

/* ctl.c: the control protocol, shared by both event loops. */
void ctl_accept(struct broker *b, struct bconn *c);
void ctl_message(struct broker *b, struct bconn *c, const void *buf, int n);
void ctl_hangup(struct broker *b, struct bconn *c);
void ctl_tick(struct broker *b);
void ctl_begin_drain(struct broker *b, const char *why);

/* log.c */
void blog(int level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
extern int blog_verbose;

#endif
