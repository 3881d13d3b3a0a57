/*
 * gpuq.h - the public API of libgpuqclient, the producer side of gpuq.
 *
 * gpuq is a message queue for one Linux host.  A broker process (gpuqd) owns
 * named queues; each queue is a ring of fixed-size slots in shared memory that
 * a backend (CUDA kernel or CPU threads) consumes.  A producer process links
 * this library, attaches to a queue once over the broker's Unix socket, and
 * from then on enqueues by writing straight into the shared ring: no copies
 * through the broker, no system calls, no CUDA context in the producer.
 *
 * Conventions
 *   - Every call that can fail returns 0 (or a non-negative count) on success
 *     and a negative code on failure.  Codes are either a negated errno
 *     (-EINVAL for bad arguments, -ENOMEM, ...) or one of the GPUQ_E* codes
 *     below, which live in a reserved range below GPUQ_ERR_BASE.
 *     gpuq_strerror() and gpuq_err_name() describe both kinds.
 *   - Timeouts are in milliseconds: 0 means "do not wait", a negative value
 *     means "wait forever".  Waiting never spins a core: after a short spin it
 *     sleeps with exponential backoff.
 *   - Thread safety: a gpuq_client together with every gpuq_queue opened
 *     through it belongs to one thread at a time (they share the socket and
 *     its state).  A process that enqueues from N threads makes N clients,
 *     one per thread, each opening the queue; each handle is a separate
 *     producer to the broker.  gpuq_strerror(), gpuq_err_name(),
 *     gpuq_version() and gpuq_default_socket() are thread-safe.
 *   - System calls: attach, close and sleeping waits make them; enqueue,
 *     reserve, commit, poll and result do not, except one poll() of the
 *     socket for a broker hang-up at most every 5 ms per handle.
 *   - Message ids are per handle: the first message enqueued through a handle
 *     gets id 0, the next id 1, and so on.
 */
#ifndef GPUQ_H
#define GPUQ_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(GPUQ_BUILDING_LIBRARY)
#define GPUQ_API __attribute__((visibility("default")))
#else
#define GPUQ_API
#endif

/* ------------------------------------------------------------------------ */
/* Error codes                                                              */
/* ------------------------------------------------------------------------ */

/* gpuq's own codes are below this value; anything in (GPUQ_ERR_BASE, 0) is a
 * negated errno. */
#define GPUQ_ERR_BASE (-1000)

/*
 * The one list of project error codes.  X(name, value, message).
 * Each name becomes GPUQ_<name> in enum gpuq_error; gpuq_err_name() returns
 * "GPUQ_<name>" and gpuq_strerror() returns the message.
 */
#define GPUQ_ERROR_LIST(X)                                                       \
	X(EFULL, -1001, "queue ring is full")                                    \
	X(ETIMEDOUT, -1002, "timed out")                                         \
	X(EAGAIN, -1003, "result not ready yet")                                 \
	X(ETOOBIG, -1004, "payload larger than the queue's slot size")           \
	X(EEMPTY, -1005, "zero-length payload")                                  \
	X(ENOQUEUE, -1006, "no queue with that name")                            \
	X(ENOBROKER, -1007, "broker is not running (cannot connect to socket)")  \
	X(EBROKERDEAD, -1008, "broker died or restarted (heartbeat lost)")       \
	X(EPROTO, -1009, "garbled or truncated control message")                 \
	X(EVERSION, -1010, "protocol or shared-memory layout version mismatch")  \
	X(EDENIED, -1011, "broker refused credentials (uid/gid not allowed)")    \
	X(ETOOMANY, -1012, "too many clients attached to the queue")             \
	X(ESHUTDOWN, -1013, "broker is draining or shutting down")               \
	X(ECQFULL, -1014, "too many unread results; read some before enqueuing") \
	X(ECONFIG, -1015, "invalid configuration")                               \
	X(EHANDLER, -1016, "handler failed every attempt; message dead-lettered")\
	X(ECUDA, -1017, "CUDA error")                                            \
	X(ENOTFOUND, -1018, "no such message (not in flight on this handle, or no such dead letter)") \
	X(EBACKEND, -1020, "backend unavailable or failed")                     \
	X(EDEVICE, -1021, "the GPU faulted while the message was in flight; it was not completed") \
	X(EKEYSIZE, -1022, "table key empty or longer than 32 bytes")            \
	X(EVALSIZE, -1023, "table value larger than the table's value size")     \
	X(ETABLEFULL, -1024, "hash table full around this key; nothing changed") \
	X(ENOKEY, -1025, "no such key in the table")                             \
	X(EEXISTS, -1026, "key already in the table")                            \
	X(ECASFAIL, -1027, "compare-and-swap: the value differs; nothing changed")

enum gpuq_error {
#define GPUQ_X_ENUM(name, value, msg) GPUQ_##name = (value),
	GPUQ_ERROR_LIST(GPUQ_X_ENUM)
#undef GPUQ_X_ENUM
};

/* Message for any return code: gpuq codes, negated errnos, and 0 ("success").
 * Never returns NULL. */
GPUQ_API const char *gpuq_strerror(int err);
/* Symbolic name: "GPUQ_EFULL", "EINVAL", "OK", or "UNKNOWN". Never NULL. */
GPUQ_API const char *gpuq_err_name(int err);
/* Library version string, e.g. "0.1.0". */
GPUQ_API const char *gpuq_version(void);

/* ------------------------------------------------------------------------ */
/* Connecting and attaching                                                 */
/* ------------------------------------------------------------------------ */

typedef struct gpuq_client gpuq_client;
typedef struct gpuq_queue gpuq_queue;

/* The socket used when gpuq_connect() gets NULL and $GPUQ_SOCKET is unset:
 * $XDG_RUNTIME_DIR/gpuq/gpuqd.sock if XDG_RUNTIME_DIR is set, else
 * /run/gpuq/gpuqd.sock for root and /tmp/gpuq-<uid>/gpuqd.sock otherwise. */
GPUQ_API int gpuq_default_socket(char *buf, size_t cap);

/*
 * Connect to a broker.  socket_path NULL means $GPUQ_SOCKET, or the default
 * above.  The broker checks the caller's uid/gid (SO_PEERCRED) before it
 * answers anything.
 * Errors: -EINVAL (out NULL, path too long), GPUQ_ENOBROKER (nothing listens
 * there), GPUQ_EDENIED (uid/gid not allowed), GPUQ_ETOOMANY (broker at its
 * connection limit), GPUQ_ETIMEDOUT (broker did not answer in 5 s),
 * GPUQ_EVERSION, GPUQ_EPROTO, -ENOMEM, or a negated errno from socket or
 * connect (e.g. -EACCES: no permission on the socket file).
 */
GPUQ_API int gpuq_connect(const char *socket_path, gpuq_client **out);

/* Close the connection.  Queues still open through it are closed first.
 * NULL is a no-op. */
GPUQ_API void gpuq_disconnect(gpuq_client *c);

/*
 * Attach to the queue called name.  On success the queue's shared memory is
 * mapped into this process and *out is ready for enqueue.  Takes one round
 * trip to the broker (well under a millisecond) and needs no CUDA.
 * Errors: -EINVAL (NULL argument, empty or over-long name), GPUQ_ENOQUEUE,
 * GPUQ_ETOOMANY (queue's client table is full), GPUQ_ESHUTDOWN,
 * GPUQ_EBROKERDEAD, GPUQ_EPROTO, GPUQ_EVERSION, -ENOMEM, or a negated errno
 * from mmap.
 */
GPUQ_API int gpuq_open(gpuq_client *c, const char *name, gpuq_queue **out);

/* Detach.  Results not read yet are given up.  NULL is a no-op. */
GPUQ_API void gpuq_close(gpuq_queue *q);

/* Fixed properties of an attached queue. */
typedef struct gpuq_queue_info {
	char name[64];
	uint32_t capacity;     /* slots in the ring (power of two) */
	uint32_t slot_bytes;   /* largest payload */
	uint32_t result_bytes; /* largest result */
	uint32_t cq_capacity;  /* results this handle may have unread at once */
	char handler[32];      /* "echo", "checksum", "vector", ... */
	char backend[16];      /* "cpu" or "cuda" */
	uint64_t broker_epoch; /* changes every time a broker starts */
	uint32_t ordered;      /* 1: messages with one key complete in order */
	uint32_t rings;        /* sub-rings (1 unless ordered) */
	uint32_t max_attempts; /* handler runs before a message is dead-lettered*/
} gpuq_queue_info;

/* Errors: -EINVAL. */
GPUQ_API int gpuq_queue_info_get(const gpuq_queue *q, gpuq_queue_info *out);

/* ------------------------------------------------------------------------ */
/* Enqueue                                                                  */
/* ------------------------------------------------------------------------ */

/*
 * Copy len bytes from data into the next slot and publish it.  *id (if id is
 * not NULL) receives the message id used to find its result.
 * Waits up to timeout_ms for room in the ring.
 * Errors: -EINVAL (q or data NULL), GPUQ_EEMPTY (len 0), GPUQ_ETOOBIG
 * (len > slot_bytes), GPUQ_EFULL (no room and timeout_ms == 0),
 * GPUQ_ETIMEDOUT (no room within timeout_ms), GPUQ_ECQFULL (cq_capacity
 * results are unread), GPUQ_ESHUTDOWN (broker draining),
 * GPUQ_EBROKERDEAD (broker gone), -EBUSY (a loan is open on q).
 * Nothing is enqueued when an error is returned.
 */
GPUQ_API int gpuq_enqueue(gpuq_queue *q, const void *data, size_t len,
			  uint64_t *id, int timeout_ms);

/* One message of a batch.  key matters only on an ordered queue (see
 * gpuq_enqueue_key); set it to 0 otherwise. */
typedef struct gpuq_iov {
	const void *data;
	size_t len;
	uint64_t key;
} gpuq_iov;

/*
 * gpuq_enqueue() with an ordering key.  On an ordered queue, messages with
 * one key complete in the order they were enqueued (including across
 * retries), while different keys proceed in parallel; on other queues the
 * key is carried along (and kept with a dead letter) but orders nothing.
 * "Enqueued" order among several producers of one key is the order in which
 * their enqueue calls took their slots.  Errors as gpuq_enqueue().
 */
GPUQ_API int gpuq_enqueue_key(gpuq_queue *q, uint64_t key, const void *data,
			      size_t len, uint64_t *id, int timeout_ms);

/*
 * Enqueue up to n messages with one reservation per run of free slots.
 * Every message is validated before any is enqueued, so a bad one
 * (NULL data, len 0, len > slot_bytes) fails the whole call with nothing
 * enqueued.  Otherwise the messages go in order; ids[i] (if ids is not NULL)
 * receives message i's id, and the ids of one call are consecutive.
 * Returns the number enqueued (n on full success).  If the ring fills and
 * stays full for timeout_ms, returns the count so far when it is > 0, or
 * GPUQ_EFULL / GPUQ_ETIMEDOUT / GPUQ_ECQFULL when it is 0.
 */
GPUQ_API int gpuq_enqueue_batch(gpuq_queue *q, const gpuq_iov *msgs, size_t n,
				uint64_t *ids, int timeout_ms);

/*
 * Zero-copy enqueue: loan n consecutive slots, write payloads in place, then
 * commit.  A loan must be committed before the next reserve on the handle;
 * while it is held the queue's consumer waits for these slots, so keep loans
 * short.  A producer that dies while holding a loan is reclaimed by the
 * broker.
 */
typedef struct gpuq_loan {
	uint32_t count;      /* slots loaned (== n asked for) */
	uint32_t slot_bytes; /* room in each slot */
	uint64_t first_id;   /* ids are first_id .. first_id + count - 1 */
	uint64_t ticket;     /* internal: first ring ticket */
	uint64_t key;        /* the key every message of the loan carries */
} gpuq_loan;

/* Errors as gpuq_enqueue (n == 0 or n > capacity gives -EINVAL; -EBUSY if a
 * loan is already open; -EOPNOTSUPP on a queue with stamped slots, whose
 * payloads only the copying calls can write: docs/api.md, Stamped queues).
 */
GPUQ_API int gpuq_reserve(gpuq_queue *q, uint32_t n, gpuq_loan *loan,
			  int timeout_ms);
/* gpuq_reserve() for messages that all carry one ordering key. */
GPUQ_API int gpuq_reserve_key(gpuq_queue *q, uint64_t key, uint32_t n,
			      gpuq_loan *loan, int timeout_ms);
/* Where to write message i (0 <= i < count) of the loan; NULL if i is out of
 * range. */
GPUQ_API void *gpuq_loan_slot(gpuq_queue *q, const gpuq_loan *loan,
			      uint32_t i);
/*
 * Publish the loan.  lens[i] is message i's length (1 .. slot_bytes).  If any
 * length is invalid, nothing is published, GPUQ_EEMPTY / GPUQ_ETOOBIG is
 * returned and the loan stays open to be committed again.  -EINVAL if loan
 * is not the handle's open loan.  GPUQ_EBROKERDEAD (nothing published) if
 * the broker is gone.
 */
GPUQ_API int gpuq_commit(gpuq_queue *q, gpuq_loan *loan, const uint32_t *lens);

/*
 * GPU producers.  A producer whose payloads already live in device memory
 * need not copy them to the host: on a queue of the CUDA backend it writes
 * them straight into the queue's VRAM ring (a device-to-device copy, or its
 * own kernel) and publishes them with gpuq_commit_device().  libgpuqclient
 * itself never touches CUDA; the producer opens the ring once with the CUDA
 * runtime, from the handle gpuq_vram_handle() gives:
 *
 *   unsigned char h[64];  cudaIpcMemHandle_t ih;  uint8_t *ring;
 *   gpuq_vram_handle(q, h, sizeof h);  memcpy(&ih, h, sizeof ih);
 *   cudaIpcOpenMemHandle((void **)&ring, ih, cudaIpcMemLazyEnablePeerAccess);
 *
 * then, per batch: gpuq_reserve(); for each message i, write its payload at
 * ring + gpuq_vram_offset(q, &loan, i) (at most slot_bytes); make those
 * writes complete (cudaStreamSynchronize on their stream); then
 * gpuq_commit_device(q, &loan, lens).  Results come back as for any other
 * message.  Kernels and copies of several processes run at once on a GPU
 * only under NVIDIA MPS (docs/runbook.md); without it they time-slice with
 * gpuqd's kernels.
 */
/* Copy the queue's VRAM ring handle (a cudaIpcMemHandle_t, 64 bytes) into
 * buf; returns the byte count.  GPUQ_EBACKEND if the queue is not on the
 * CUDA backend, -ENOSPC if cap < 64, -EINVAL. */
GPUQ_API int gpuq_vram_handle(const gpuq_queue *q, void *buf, size_t cap);
/* Byte offset, in the VRAM ring, of message i's payload in the open loan;
 * -EINVAL (not the open loan, i out of range) or GPUQ_EBACKEND. */
GPUQ_API int64_t gpuq_vram_offset(const gpuq_queue *q, const gpuq_loan *loan,
				  uint32_t i);
/* gpuq_commit() for a loan whose payloads were written into the VRAM ring:
 * the consumer takes them from there, not from the host slots.  Errors as
 * gpuq_commit(), and GPUQ_EBACKEND on a queue not on the CUDA backend. */
GPUQ_API int gpuq_commit_device(gpuq_queue *q, gpuq_loan *loan,
				const uint32_t *lens);

/* ------------------------------------------------------------------------ */
/* Results                                                                  */
/* ------------------------------------------------------------------------ */

/* One completed message, as gpuq_poll() reports it. */
typedef struct gpuq_completion {
	uint64_t id;
	int32_t status;     /* 0, or GPUQ_EHANDLER (dead-lettered) */
	uint32_t len;       /* bytes of result */
	const void *result; /* in shared memory (a stamped-result queue: the
			       library's own copy); valid until the next
			       call on q (any call but the read-only getters) */
	uint32_t attempts;  /* handler runs it took (> 1: it was retried) */
	uint32_t worker;    /* the consumer worker (CPU thread, GPU block) */
	uint64_t seq;       /* on an ordered queue: how many messages that
			       worker had finished before this one, so two
			       completions by one worker can be ordered */
} gpuq_completion;

/*
 * Report up to max completed messages not reported before, in no particular
 * order, and free their result storage.  Never blocks.
 * Returns the count (0 when none is ready).  Errors: -EINVAL,
 * GPUQ_EBROKERDEAD (nothing ready and the broker is gone).
 */
GPUQ_API int gpuq_poll(gpuq_queue *q, gpuq_completion *out, size_t max);

/*
 * If message id has completed, copy its result (up to cap bytes) into buf,
 * set *len (if not NULL) to the result's full length and free its storage.
 * Returns 0 when the handler succeeded, GPUQ_EHANDLER when it failed on
 * every attempt and the message went to the dead-letter queue (the result
 * is then empty), GPUQ_EAGAIN when not complete yet,
 * GPUQ_ENOTFOUND when id is not in flight on q (never enqueued, or already
 * read), GPUQ_EBROKERDEAD, -EINVAL (q NULL, or buf NULL with cap > 0),
 * -EMSGSIZE (cap too small: *len says how much is needed; the result stays).
 */
GPUQ_API int gpuq_result(gpuq_queue *q, uint64_t id, void *buf, size_t cap,
			 size_t *len);

/* gpuq_result(), but wait up to timeout_ms; GPUQ_ETIMEDOUT when it expires.*/
GPUQ_API int gpuq_wait(gpuq_queue *q, uint64_t id, void *buf, size_t cap,
		       size_t *len, int timeout_ms);

/* Messages enqueued through q whose results have not been read. */
GPUQ_API uint64_t gpuq_inflight(const gpuq_queue *q);

/* ------------------------------------------------------------------------ */
/* Stats                                                                    */
/* ------------------------------------------------------------------------ */

typedef struct gpuq_stats {
	uint64_t enqueued;     /* messages published into the ring, all clients*/
	uint64_t completed;    /* messages the backend finished, any outcome */
	uint64_t retried;      /* handler re-runs after a failure */
	uint64_t dead_lettered;/* of completed: failed every attempt, moved to
				  the dead-letter queue */
	uint64_t dlq_pending;  /* dead letters held (not replayed or purged) */
	uint64_t reclaimed;    /* reserved slots of dead producers skipped */
	uint64_t full_events;  /* enqueue attempts that found the ring full */
	uint64_t depth;        /* reserved or published, not yet completed */
	uint32_t capacity;
	uint32_t clients;      /* attached producers */
	uint64_t heartbeat_age_ns; /* since the broker last wrote its heartbeat*/
} gpuq_stats;

/* Read the queue's counters straight from shared memory (no broker round
 * trip).  Errors: -EINVAL. */
GPUQ_API int gpuq_stats_get(const gpuq_queue *q, gpuq_stats *out);

/* ------------------------------------------------------------------------ */
/* Key-value: the broker's hash table through a queue with handler = kv     */
/* ------------------------------------------------------------------------ */

/*
 * One key of a batch.  key: 1-32 bytes (longer or empty ones get status
 * GPUQ_EKEYSIZE from the broker; over 255 the call fails with -EINVAL).
 * val and vlen: for a put, the value and its length (0-65535; longer
 * than the queue's table_value_bytes gets GPUQ_EVALSIZE); for a get, the
 * buffer and its size on the way in, and on the way out vlen is the
 * value's full length (only min(full length, size) bytes are copied).
 * status (out): 0, GPUQ_ENOKEY (get, delete), GPUQ_EKEYSIZE,
 * GPUQ_EVALSIZE, GPUQ_ETABLEFULL (put of a new key with no room).
 */
typedef struct gpuq_kv_item {
	const void *key;
	uint32_t klen;
	uint32_t vlen;
	void *val;
	int status;
} gpuq_kv_item;

/*
 * Get, put (insert or overwrite) or delete n keys through q, a queue whose
 * handler is kv.  The operations are packed as many to a message as the
 * slot (and the result room) allows, and each message is enqueued as soon
 * as it is packed; each key's operation is atomic, and operations on one
 * key from one call happen in item order (a key that comes again in a
 * later message waits for the messages before it).  Returns 0 once every item has its status
 * (items' statuses may still be errors), or: -EINVAL (q or items NULL, a
 * key over 255 bytes, a value over 65535, or q's handler is not kv),
 * GPUQ_ETOOBIG (one item alone does not fit a message), or what
 * gpuq_enqueue / gpuq_wait return (GPUQ_ETIMEDOUT, GPUQ_EBROKERDEAD,
 * ...); then items' statuses are unset, and operations sent may or may
 * not have been done.  Not thread-safe on one q (like every call on q).
 */
GPUQ_API int gpuq_kv_mget(gpuq_queue *q, gpuq_kv_item *items, size_t n,
			  int timeout_ms);
GPUQ_API int gpuq_kv_mput(gpuq_queue *q, gpuq_kv_item *items, size_t n,
			  int timeout_ms);
GPUQ_API int gpuq_kv_mdelete(gpuq_queue *q, gpuq_kv_item *items, size_t n,
			     int timeout_ms);

/* One key.  Return the key's status (0, GPUQ_ENOKEY, ...) or the call's
 * error, as above.  gpuq_kv_get sets *vlen (if not NULL) to the value's
 * full length and copies at most cap bytes. */
GPUQ_API int gpuq_kv_get(gpuq_queue *q, const void *key, size_t klen,
			 void *val, size_t cap, size_t *vlen, int timeout_ms);
GPUQ_API int gpuq_kv_put(gpuq_queue *q, const void *key, size_t klen,
			 const void *val, size_t vlen, int timeout_ms);
GPUQ_API int gpuq_kv_delete(gpuq_queue *q, const void *key, size_t klen,
			    int timeout_ms);

#ifdef __cplusplus
}
#endif
#endif /* GPUQ_H */
