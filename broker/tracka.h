/*
 * tracka.h - Track A: a gpuqd queue bound to a Redis stream.
 *
 * A binding is a thread inside gpuqd that reads the stream through a
 * consumer group (XREADGROUP), enqueues each entry into the queue's ring as
 * gpuqd's own producer, and for each completion writes the result (XADD to
 * the result stream) before it acknowledges the entry (XACK).  Entries that
 * cannot be processed go to a dead-letter stream with a reason, also
 * written before the ack.  docs/tracka.md describes formats and guarantees.
 */
#ifndef GPUQ_BROKER_TRACKA_H
#define GPUQ_BROKER_TRACKA_H

#include <stdint.h>

struct bqueue;
struct tracka;

/* What a binding has done so far; every field only grows. */
struct tracka_stats {
	uint64_t read;          /* entries received from Redis */
	uint64_t enqueued;      /* entries published into the ring */
	uint64_t results;       /* results written (XADD acknowledged) */
	uint64_t acked;         /* entries acknowledged (XACK) */
	uint64_t dead_lettered; /* entries written to the dead-letter stream */
	uint64_t redelivered;   /* entries received again (own pending after
				   a restart or reconnect, or claimed) */
	uint64_t claimed;       /* of those: taken over with XAUTOCLAIM */
	uint64_t skipped_held;  /* received while already in progress here */
	uint64_t reconnects;    /* connections to Redis after the first */
	uint64_t write_errors;  /* result or dead-letter writes Redis refused */
	uint64_t full_waits;    /* times the ring was full (backpressure) */
};

/* 1 if the queue's config binds it to a Redis stream. */
int tracka_bound(const struct bqueue *q);

/*
 * Start the binding of q (which must be bound): takes one client entry of
 * the queue and starts the thread.  Redis need not be up: the thread
 * connects and reconnects with backoff.  force_epoll: use epoll instead of
 * io_uring for the socket.  Errors: GPUQ_ETOOMANY (no free client entry),
 * GPUQ_ECONFIG, -ENOMEM, negated errno from pthread_create.
 */
int tracka_start(struct bqueue *q, int force_epoll, struct tracka **out);

/*
 * Stop: stop reading, let entries already in the ring finish, write their
 * results and acks (for at most timeout_ms), then end the thread, detach
 * the client entry and free.  Entries not finished stay pending in Redis,
 * to be delivered again.  NULL is a no-op.
 */
void tracka_stop(struct tracka *t, int timeout_ms);

/* A consistent-enough copy of the counters (each read atomically). */
void tracka_stats_get(const struct tracka *t, struct tracka_stats *out);
/* The consumer name the binding uses in its group. */
const char *tracka_consumer(const struct tracka *t);

#endif
