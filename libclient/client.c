/* client.c - libgpuqclient: connecting, attaching and the producer path. */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "ipc/clock.h"
#include "ipc/cq.h"
#include "ipc/proto.h"
#include "ipc/ring.h"
#include "libclient/gpuq.h"

/* Replies from a healthy broker take microseconds; this only bounds a hung
 * one. */
#define RPC_TIMEOUT_S 5
/* Scanning for completions stops after this many not-done ids in a row:
 * results arrive nearly in order, so a long gap means the rest are not done
 * either, and bounding the scan keeps gpuq_poll() cheap with deep queues. */
#define POLL_GAP_LIMIT 512u
#define WAIT_MAX_SLEEP_NS 200000u

struct gpuq_client {
	int sock;
	uint32_t seq;
	int32_t broker_pid;
	uint64_t epoch;
	int broker_dead; /* once seen, every later call reports it */
	uint64_t vouched_ns; /* when the broker last answered a liveness ping */
	int said_vouched;    /* GPUQ_DEBUG said so once */
	struct gpuq_queue *queues;
};

struct gpuq_queue {
	struct gpuq_client *c;
	struct gpuq_queue *next;
	struct ipc_ring r;
	struct ipc_client *me;
	uint32_t client;
	uint32_t backend;
	uint64_t next_id;  /* ids below this were issued */
	uint64_t released; /* ids below this were read and their entries freed */
	uint64_t reported; /* ids below this are settled on the next call */
	uint8_t *taken;    /* per cq entry: result already handed to the user */
	uint64_t *sent_ns; /* per cq entry: when its message was published */
	/* A stamped-result queue's results, gathered out of their entries
	 * (ipc/cq.h): room for res_n of them, result_bytes apart.  Valid
	 * until the next call, as in-place results are. */
	uint8_t *res;
	size_t res_n;
	int loan_open;
	uint64_t sock_checked_ns; /* last hang-up poll of the socket */
	uint64_t dead_ns;         /* heartbeat age that means "broker dead" */
	uint64_t loan_ticket;     /* first ticket of the open loan */
	uint32_t loan_ring;       /* and its ring */
	int has_vram;             /* a CUDA queue: vram_handle is valid */
	uint8_t vram_handle[64];  /* its VRAM ring's cudaIpcMemHandle_t */
};

/* Heartbeat age after which the broker counts as dead.  $GPUQ_HEARTBEAT_
 * TIMEOUT_MS raises it for brokers slowed down on purpose (a debugger,
 * compute-sanitizer); read once per handle at open. */
static uint64_t heartbeat_dead_ns(void)
{
	const char *e = getenv("GPUQ_HEARTBEAT_TIMEOUT_MS");
	unsigned long ms = e ? strtoul(e, NULL, 10) : 0;
	return ms ? (uint64_t)ms * 1000000ull : IPC_HEARTBEAT_DEAD_NS;
}

/* One request, one reply.  The reply is decoded into *m (body points into
 * buf); a PROTO_ERROR reply becomes its code. */
static int rpc(struct gpuq_client *c, uint16_t type, const void *body,
	       uint32_t len, void *buf, size_t cap, struct proto_msg *m,
	       int *fd)
{
	int n, rc, dummy;
	uint32_t seq = ++c->seq;
	if (!fd)
		fd = &dummy;
	n = proto_encode(buf, cap, type, seq, body, len);
	if (n < 0)
		return n;
	rc = proto_send(c->sock, buf, (size_t)n, -1);
	if (rc)
		return rc == -EPIPE || rc == -ECONNRESET ? GPUQ_EBROKERDEAD : rc;
	n = proto_recv(c->sock, buf, cap, fd);
	if (n == 0 || n == -ECONNRESET)
		rc = GPUQ_EBROKERDEAD;
	else if (n == -EAGAIN)
		rc = GPUQ_ETIMEDOUT;
	else if (n < 0)
		rc = n;
	else
		rc = proto_decode(buf, (size_t)n, m);
	if (!rc && m->hdr.seq != seq)
		rc = GPUQ_EPROTO;
	if (!rc && m->hdr.type == PROTO_ERROR) {
		const struct proto_error *e = m->body;
		rc = e->code < 0 ? e->code : GPUQ_EPROTO;
	}
	if (rc && *fd >= 0) {
		close(*fd);
		*fd = -1;
	}
	return rc;
}

static int sock_connect(const char *path, int *out)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { RPC_TIMEOUT_S, 0 };
	int s, rc;
	if (strlen(path) >= sizeof(sa.sun_path))
		return -EINVAL;
	strcpy(sa.sun_path, path);
	s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -errno;
	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		rc = errno;
		close(s);
		return (rc == ENOENT || rc == ECONNREFUSED || rc == ENOTDIR)
			       ? GPUQ_ENOBROKER : -rc;
	}
	*out = s;
	return 0;
}

GPUQ_API int gpuq_connect(const char *socket_path, gpuq_client **out)
{
	_Alignas(8) uint8_t buf[PROTO_MAX_MSG];
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct gpuq_client *c = NULL;
	struct proto_msg m;
	int rc;
	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!socket_path) {
		rc = gpuq_default_socket(path, sizeof(path));
		if (rc)
			return -EINVAL; /* $GPUQ_SOCKET too long */
		socket_path = path;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->sock = -1;
	rc = sock_connect(socket_path, &c->sock);
	if (rc)
		goto fail;
	rc = rpc(c, PROTO_HELLO, NULL, 0, buf, sizeof(buf), &m, NULL);
	if (rc)
		goto fail;
	if (m.hdr.type != PROTO_HELLO_OK) {
		rc = GPUQ_EPROTO;
		goto fail;
	}
	{
		const struct proto_hello_ok *h = m.body;
		if (h->layout_version != IPC_LAYOUT_VERSION) {
			rc = GPUQ_EVERSION;
			goto fail;
		}
		c->broker_pid = h->broker_pid;
		c->epoch = h->epoch;
	}
	*out = c;
	return 0;
fail:
	if (c->sock >= 0)
		close(c->sock);
	free(c);
	return rc;
}

/* Map the fd the broker passed and check it describes what OPEN_OK says. */
static int attach_ring(struct gpuq_queue *q, const struct proto_open_ok *ok,
		       int fd)
{
	int rc = ipc_ring_map(&q->r, fd, ok->map_bytes);
	if (rc)
		return rc;
	if (ok->client >= q->r.hdr->max_clients ||
	    ipc_load_acquire(&q->r.clients[ok->client].state) !=
		    IPC_CLIENT_ACTIVE)
		return GPUQ_EPROTO;
	q->client = ok->client;
	q->me = &q->r.clients[ok->client];
	q->dead_ns = heartbeat_dead_ns();
	q->backend = ok->backend;
	q->has_vram = ok->backend == IPC_BACKEND_CUDA && ok->has_cuda_ipc;
	memcpy(q->vram_handle, ok->cuda_ipc, sizeof(q->vram_handle));
	q->taken = calloc(q->r.hdr->cq_capacity, 1);
	q->sent_ns = calloc(q->r.hdr->cq_capacity, sizeof(uint64_t));
	return q->taken && q->sent_ns ? 0 : -ENOMEM;
}

/* Tell the broker to let go of a client entry (CLOSE has no reply). */
static void send_close(struct gpuq_client *c, uint32_t client, const char *name)
{
	_Alignas(8) uint8_t buf[256];
	struct proto_close cl;
	int n;
	memset(&cl, 0, sizeof(cl));
	cl.client = client;
	snprintf(cl.name, sizeof(cl.name), "%s", name);
	n = proto_encode(buf, sizeof(buf), PROTO_CLOSE, ++c->seq, &cl, sizeof(cl));
	if (n > 0)
		proto_send(c->sock, buf, (size_t)n, -1);
}

GPUQ_API int gpuq_open(gpuq_client *c, const char *name, gpuq_queue **out)
{
	_Alignas(8) uint8_t buf[PROTO_MAX_MSG];
	struct proto_open req;
	struct proto_msg m;
	struct gpuq_queue *q;
	int fd = -1, rc, attached = 0;
	uint32_t client = 0;
	if (!c || !name || !out)
		return -EINVAL;
	*out = NULL;
	if (!*name || strlen(name) >= IPC_NAME_MAX)
		return -EINVAL;
	if (c->broker_dead)
		return GPUQ_EBROKERDEAD;
	memset(&req, 0, sizeof(req));
	strcpy(req.name, name);
	q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	rc = rpc(c, PROTO_OPEN, &req, sizeof(req), buf, sizeof(buf), &m, &fd);
	if (!rc && m.hdr.type == PROTO_OPEN_OK) {
		attached = 1;
		client = ((const struct proto_open_ok *)m.body)->client;
	}
	if (rc)
		goto fail;
	if (!attached || fd < 0) {
		rc = GPUQ_EPROTO;
		goto fail;
	}
	rc = attach_ring(q, m.body, fd);
	if (rc)
		goto fail;
	close(fd);
	q->c = c;
	q->next = c->queues;
	c->queues = q;
	*out = q;
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	if (attached) /* the broker holds an entry for us: give it back */
		send_close(c, client, name);
	ipc_ring_unmap(&q->r);
	free(q->taken);
	free(q->sent_ns);
	free(q->res);
	free(q);
	return rc;
}

GPUQ_API void gpuq_close(gpuq_queue *q)
{
	struct gpuq_queue **pp;
	if (!q)
		return;
	send_close(q->c, q->client, q->r.hdr->name);
	for (pp = &q->c->queues; *pp; pp = &(*pp)->next)
		if (*pp == q) {
			*pp = q->next;
			break;
		}
	ipc_ring_unmap(&q->r);
	free(q->taken);
	free(q->sent_ns);
	free(q->res);
	free(q);
}

GPUQ_API void gpuq_disconnect(gpuq_client *c)
{
	if (!c)
		return;
	while (c->queues)
		gpuq_close(c->queues);
	close(c->sock);
	free(c);
}

GPUQ_API int gpuq_queue_info_get(const gpuq_queue *q, gpuq_queue_info *o)
{
	const struct ipc_hdr *h;
	if (!q || !o)
		return -EINVAL;
	h = q->r.hdr;
	memset(o, 0, sizeof(*o));
	snprintf(o->name, sizeof(o->name), "%s", h->name);
	snprintf(o->handler, sizeof(o->handler), "%s", h->handler);
	snprintf(o->backend, sizeof(o->backend), "%s",
		 q->backend == IPC_BACKEND_CUDA ? "cuda" : "cpu");
	o->capacity = h->capacity;
	o->slot_bytes = h->slot_bytes;
	o->result_bytes = h->result_bytes;
	o->cq_capacity = h->cq_capacity;
	o->broker_epoch = h->epoch;
	o->ordered = h->ordered;
	o->rings = h->nrings;
	o->max_attempts = h->max_attempts;
	return 0;
}

/* ---- liveness ---- */

/* How often a waiting call polls the socket for a hang-up (a system call);
 * the shared-memory heartbeat is checked on every call. */
#define SOCK_CHECK_NS 5000000ull

/* Why a handle counted the broker dead, said once on stderr when
 * $GPUQ_DEBUG is set: the three signs look the same to the caller. */
static void broker_dead_why(const char *why, uint64_t age_ns)
{
	if (getenv("GPUQ_DEBUG"))
		fprintf(stderr, "gpuq[%d]: broker counted dead: %s (heartbeat "
				"%.1f ms old)\n",
			(int)getpid(), why, (double)age_ns / 1e6);
}

/* How long a liveness ping vouches for a broker whose heartbeat is old,
 * and the least time a ping waits for its answer: generous, since a late
 * answer comes after the verdict, and a busy host's loop may take a
 * while. */
#define VOUCH_NS 100000000ull
#define PING_MIN_WAIT_NS 500000000ull

/* Does the broker's event loop answer a STATUS request within wait_ns?
 * Any reply will do.  A reply that comes later is never read: by then
 * the client has counted the broker dead for good. */
static int broker_answers(struct gpuq_client *c, uint64_t wait_ns)
{
	_Alignas(8) uint8_t buf[PROTO_MAX_MSG];
	struct pollfd p = { c->sock, POLLIN, 0 };
	int fd = -1, n;
	n = proto_encode(buf, sizeof(buf), PROTO_STATUS, ++c->seq, NULL, 0);
	if (n < 0 || proto_send(c->sock, buf, (size_t)n, -1))
		return 0;
	if (poll(&p, 1, (int)(wait_ns / 1000000)) <= 0 || !(p.revents & POLLIN))
		return 0;
	n = proto_recv(c->sock, buf, sizeof(buf), &fd);
	if (fd >= 0)
		close(fd);
	return n > 0;
}

/*
 * A heartbeat older than the bound means a hung broker, or one whose
 * heartbeat stopped showing while its loop ran on: on an H200 host under
 * the kv benchmark producers saw it 800 ms old while gpuqd's own log said
 * every tick came on time (cause not found).  So the verdict waits for
 * the loop itself: a STATUS request answered within the bound vouches
 * for the broker for VOUCH_NS.  A stopped or hung broker answers nothing.
 */
static int broker_vouched(struct gpuq_queue *q, uint64_t now, uint64_t hb)
{
	struct gpuq_client *c = q->c;
	uint64_t t0;
	if (c->vouched_ns && now < c->vouched_ns + VOUCH_NS)
		return 1;
	t0 = ipc_now_ns();
	if (!broker_answers(c, q->dead_ns > PING_MIN_WAIT_NS ? q->dead_ns
							  : PING_MIN_WAIT_NS))
		return 0;
	c->vouched_ns = ipc_now_ns();
	if (!c->said_vouched && getenv("GPUQ_DEBUG")) {
		/* What this mapping of the header says, to set beside
		 * gpuqd's log: whose header it is and what it last saw. */
		const struct ipc_hdr *h = q->r.hdr;
		uint64_t hb2 = ipc_load_acquire(&h->heartbeat_ns);
		fprintf(stderr, "gpuq[%d]: heartbeat %.1f ms old, but the broker "
				"answered in %.3f ms; after the answer it was "
				"%.1f ms old (heartbeat %llu, now %llu, broker pid "
				"%d, epoch %llx, state %u, clients %llu)\n",
			(int)getpid(), (double)(now - hb) / 1e6,
			(double)(c->vouched_ns - t0) / 1e6,
			((double)c->vouched_ns - (double)hb2) / 1e6,
			(unsigned long long)hb2,
			(unsigned long long)c->vouched_ns, (int)h->broker_pid,
			(unsigned long long)h->epoch, ipc_load_acquire(&h->state),
			(unsigned long long)ipc_load_relaxed(&h->clients_attached));
	}
	c->said_vouched = 1;
	return 1;
}

/* 0 while the broker is alive, else GPUQ_EBROKERDEAD.  A broker that exits
 * or is killed hangs the socket up at once; a hung one stops its heartbeat
 * (IPC_HEARTBEAT_DEAD_NS) and answers no ping (broker_vouched); a stopped
 * one says so in the header. */
static int broker_check_at(struct gpuq_queue *q, uint64_t now)
{
	const struct ipc_hdr *h = q->r.hdr;
	uint64_t hb;
	if (q->c->broker_dead)
		return GPUQ_EBROKERDEAD;
	/* Our own liveness, for gpuqctl clients (one relaxed store). */
	ipc_store_relaxed(&q->me->heartbeat_ns, now);
	hb = ipc_load_acquire(&h->heartbeat_ns);
	if (ipc_load_acquire(&h->state) == IPC_BROKER_STOPPED) {
		q->c->broker_dead = 1;
		broker_dead_why("stopped", now > hb ? now - hb : 0);
	} else if (now > hb + q->dead_ns && !broker_vouched(q, now, hb)) {
		q->c->broker_dead = 1;
		broker_dead_why("heartbeat too old, and no answer", now - hb);
	}
	if (!q->c->broker_dead && now - q->sock_checked_ns >= SOCK_CHECK_NS) {
		struct pollfd p = { q->c->sock, POLLRDHUP, 0 };
		q->sock_checked_ns = now;
		if (poll(&p, 1, 0) > 0 &&
		    (p.revents & (POLLHUP | POLLRDHUP | POLLERR))) {
			q->c->broker_dead = 1;
			broker_dead_why("socket hung up", now > hb ? now - hb : 0);
		}
	}
	return q->c->broker_dead ? GPUQ_EBROKERDEAD : 0;
}

static int broker_check(struct gpuq_queue *q)
{
	return broker_check_at(q, ipc_now_ns());
}

/* Deadline helper: 0 when timeout_ms has passed, else 1. */
static int before(uint64_t deadline) { return ipc_now_ns() < deadline; }
static uint64_t deadline_of(int timeout_ms)
{
	if (timeout_ms < 0)
		return UINT64_MAX;
	return ipc_now_ns() + (uint64_t)timeout_ms * 1000000ull;
}

/* ---- enqueue ---- */

static int check_len(const struct gpuq_queue *q, size_t len)
{
	if (len == 0)
		return GPUQ_EEMPTY;
	if (len > q->r.hdr->slot_bytes)
		return GPUQ_ETOOBIG;
	return 0;
}

/* Free the completion entries the user has finished with: everything up to
 * `reported` that was handed out, in id order. */
static void settle(struct gpuq_queue *q)
{
	uint64_t r = q->released;
	while (r < q->reported && q->taken[r & q->r.cq_mask]) {
		q->taken[r & q->r.cq_mask] = 0;
		r++;
	}
	if (r != q->released) {
		q->released = r;
		ipc_store_release(&q->me->cq_released, r);
	}
}

static uint64_t cq_room(const struct gpuq_queue *q)
{
	return q->r.hdr->cq_capacity - (q->next_id - q->released);
}

static void resv_begin(struct gpuq_queue *q)
{
	ipc_resv_begin(q->me);
}

static void resv_end(struct gpuq_queue *q)
{
	ipc_resv_end(q->me);
}

/*
 * Reserve up to want (at least 1, exactly want if exact) tickets of ring,
 * waiting until the deadline.  Leaves resv_gen odd on success.
 */
static int reserve_wait(struct gpuq_queue *q, uint32_t ring, uint32_t want,
			int exact, uint64_t deadline, uint64_t *ticket,
			uint32_t *got)
{
	struct ipc_backoff b = IPC_BACKOFF_CLIENT_INIT(WAIT_MAX_SLEEP_NS);
	int counted = 0, rc;
	for (;;) {
		uint32_t n = want;
		resv_begin(q);
		rc = ipc_reserve(&q->r, ring, n, ticket);
		/* Not exact: take whatever prefix of the run is free. */
		while (rc == GPUQ_EFULL && !exact && n > 1) {
			n = n / 2;
			rc = ipc_reserve(&q->r, ring, n, ticket);
		}
		if (!rc) {
			*got = n;
			return 0;
		}
		resv_end(q);
		if (rc != GPUQ_EFULL)
			return rc;
		if (!counted) {
			ipc_store_relaxed(&q->me->full_events,
					  q->me->full_events + 1);
			counted = 1;
		}
		if (!before(deadline))
			return deadline == 0 ? GPUQ_EFULL : GPUQ_ETIMEDOUT;
		if (b.spins >= 64 && (rc = broker_check(q)))
			return rc;
		ipc_backoff_wait(&b);
	}
}

/* now: when the enqueue call began, which latency counts from. */
static void publish_copies(struct gpuq_queue *q, uint32_t ring,
			   uint64_t ticket, const gpuq_iov *msgs, uint32_t n,
			   uint64_t *ids, uint64_t now)
{
	struct ipc_msg_meta mm = { 0, 0, 0, (uint16_t)q->client, 0 };
	for (uint32_t i = 0; i < n; i++) {
		ipc_slot_fill(&q->r, ring, ticket + i, msgs[i].data,
			      (uint32_t)msgs[i].len);
		mm.id = q->next_id + i;
		mm.key = msgs[i].key;
		mm.len = (uint32_t)msgs[i].len;
		q->sent_ns[mm.id & q->r.cq_mask] = now;
		ipc_publish(&q->r, ring, ticket + i, &mm);
		if (ids)
			ids[i] = mm.id;
	}
	q->next_id += n;
	ipc_store_relaxed(&q->me->published, q->me->published + n);
}

/* How many messages from msgs[0] on go to the same ring (at most max). */
static uint32_t same_ring_run(const struct gpuq_queue *q, const gpuq_iov *msgs,
			      size_t n, uint32_t max, uint32_t *ring)
{
	uint32_t k = 1;
	*ring = ipc_ring_of(&q->r, msgs[0].key);
	if (q->r.hdr->nrings == 1)
		return (uint32_t)(n < max ? n : max);
	while (k < n && k < max && ipc_ring_of(&q->r, msgs[k].key) == *ring)
		k++;
	return k;
}

GPUQ_API int gpuq_enqueue_batch(gpuq_queue *q, const gpuq_iov *msgs, size_t n,
				uint64_t *ids, int timeout_ms)
{
	uint64_t deadline, now;
	size_t done = 0;
	int rc = 0;
	if (!q || (!msgs && n))
		return -EINVAL;
	if (q->loan_open)
		return -EBUSY;
	for (size_t i = 0; i < n; i++) {
		if (!msgs[i].data)
			return -EINVAL;
		if ((rc = check_len(q, msgs[i].len)))
			return rc;
	}
	if (n > INT32_MAX)
		return -EINVAL;
	/* Never accept work a dead broker will not do.  One clock reading
	 * serves the liveness check and the messages' latency stamps. */
	now = ipc_now_ns();
	if ((rc = broker_check_at(q, now)))
		return rc;
	settle(q);
	deadline = timeout_ms == 0 ? 0 : deadline_of(timeout_ms);
	while (done < n) {
		uint64_t ticket, room = cq_room(q);
		uint32_t want, got, ring;
		if (room == 0) {
			rc = GPUQ_ECQFULL;
			break;
		}
		if (room > q->r.hdr->capacity)
			room = q->r.hdr->capacity;
		want = same_ring_run(q, msgs + done, n - done, (uint32_t)room,
				     &ring);
		rc = reserve_wait(q, ring, want, 0, deadline, &ticket, &got);
		if (rc)
			break;
		publish_copies(q, ring, ticket, msgs + done, got,
			       ids ? ids + done : NULL, now);
		resv_end(q);
		done += got;
	}
	return done ? (int)done : rc;
}

GPUQ_API int gpuq_enqueue_key(gpuq_queue *q, uint64_t key, const void *data,
			      size_t len, uint64_t *id, int timeout_ms)
{
	gpuq_iov v = { data, len, key };
	int rc;
	if (!q || !data)
		return -EINVAL;
	rc = gpuq_enqueue_batch(q, &v, 1, id, timeout_ms);
	return rc == 1 ? 0 : rc;
}

GPUQ_API int gpuq_enqueue(gpuq_queue *q, const void *data, size_t len,
			  uint64_t *id, int timeout_ms)
{
	return gpuq_enqueue_key(q, 0, data, len, id, timeout_ms);
}

GPUQ_API int gpuq_reserve_key(gpuq_queue *q, uint64_t key, uint32_t n,
			      gpuq_loan *loan, int timeout_ms)
{
	uint64_t ticket;
	uint32_t got, ring;
	int rc;
	if (!q || !loan || n == 0 || n > q->r.hdr->capacity)
		return -EINVAL;
	if (q->loan_open)
		return -EBUSY;
	/* A loan is written in place, but a stamped slot must be written
	 * whole chunks at a time (ipc/stamp.h). */
	if (q->r.hdr->stamped)
		return -EOPNOTSUPP;
	if ((rc = broker_check(q)))
		return rc;
	settle(q);
	if (cq_room(q) < n)
		return GPUQ_ECQFULL;
	ring = ipc_ring_of(&q->r, key);
	rc = reserve_wait(q, ring, n, 1,
			  timeout_ms == 0 ? 0 : deadline_of(timeout_ms), &ticket,
			  &got);
	if (rc)
		return rc;
	loan->count = n;
	loan->slot_bytes = q->r.hdr->slot_bytes;
	loan->first_id = q->next_id;
	loan->ticket = ticket;
	loan->key = key;
	q->loan_ticket = ticket;
	q->loan_ring = ring;
	q->next_id += n;
	q->loan_open = 1;
	ipc_store_relaxed(&q->me->reserved, n);
	return 0;
}

GPUQ_API int gpuq_reserve(gpuq_queue *q, uint32_t n, gpuq_loan *loan,
			  int timeout_ms)
{
	return gpuq_reserve_key(q, 0, n, loan, timeout_ms);
}

/* 1 if loan is the handle's open loan. */
static int loan_ok(const struct gpuq_queue *q, const gpuq_loan *loan)
{
	/* Only the open loan: committing a stale copy would republish
	 * tickets that are no longer ours. */
	return q->loan_open && loan->ticket == q->loan_ticket &&
	       ipc_ring_of(&q->r, loan->key) == q->loan_ring;
}

GPUQ_API void *gpuq_loan_slot(gpuq_queue *q, const gpuq_loan *loan, uint32_t i)
{
	if (!q || !loan || !loan_ok(q, loan) || i >= loan->count)
		return NULL;
	return ipc_slot(&q->r, q->loan_ring, loan->ticket + i) + 1;
}

/* Publish the open loan in phase IPC_READY (payloads in the host slots) or
 * IPC_READY_VRAM (in the VRAM ring). */
static int commit_loan(gpuq_queue *q, gpuq_loan *loan, const uint32_t *lens,
		       enum ipc_phase phase)
{
	struct ipc_msg_meta mm = { 0, 0, 0, 0, 0 };
	uint64_t now;
	int rc;
	if (!q || !loan || !lens || !loan_ok(q, loan))
		return -EINVAL;
	for (uint32_t i = 0; i < loan->count; i++)
		if ((rc = check_len(q, lens[i])))
			return rc;
	/* Publishing into a dead broker's ring would report success for
	 * messages nobody will run. */
	if ((rc = broker_check(q)))
		return rc;
	mm.client = (uint16_t)q->client;
	mm.key = loan->key;
	now = ipc_now_ns();
	for (uint32_t i = 0; i < loan->count; i++) {
		mm.id = loan->first_id + i;
		mm.len = lens[i];
		q->sent_ns[mm.id & q->r.cq_mask] = now;
		ipc_publish_phase(&q->r, q->loan_ring, loan->ticket + i, &mm,
				  phase);
	}
	ipc_store_relaxed(&q->me->published, q->me->published + loan->count);
	ipc_store_relaxed(&q->me->reserved, 0);
	resv_end(q);
	q->loan_open = 0;
	return 0;
}

GPUQ_API int gpuq_commit(gpuq_queue *q, gpuq_loan *loan, const uint32_t *lens)
{
	return commit_loan(q, loan, lens, IPC_READY);
}

/* ---- GPU producers: payloads written into the VRAM ring ---- */

GPUQ_API int gpuq_vram_handle(const gpuq_queue *q, void *buf, size_t cap)
{
	if (!q || !buf)
		return -EINVAL;
	if (!q->has_vram)
		return GPUQ_EBACKEND;
	if (cap < sizeof(q->vram_handle))
		return -ENOSPC;
	memcpy(buf, q->vram_handle, sizeof(q->vram_handle));
	return (int)sizeof(q->vram_handle);
}

GPUQ_API int64_t gpuq_vram_offset(const gpuq_queue *q, const gpuq_loan *loan,
				  uint32_t i)
{
	if (!q || !loan || !loan_ok(q, loan) || i >= loan->count)
		return -EINVAL;
	if (!q->has_vram)
		return GPUQ_EBACKEND;
	/* The VRAM ring mirrors the host slots: header, then payload. */
	return (int64_t)(ipc_slot_index(&q->r, q->loan_ring, loan->ticket + i) *
				 q->r.hdr->slot_stride +
			 IPC_MSG_HDR_BYTES);
}

GPUQ_API int gpuq_commit_device(gpuq_queue *q, gpuq_loan *loan,
				const uint32_t *lens)
{
	if (q && !q->has_vram)
		return GPUQ_EBACKEND;
	return commit_loan(q, loan, lens, IPC_READY_VRAM);
}

/* ---- results ---- */

/* Room for n gathered results (a stamped-result queue's); 0 or -ENOMEM. */
static int res_room(struct gpuq_queue *q, size_t n)
{
	uint8_t *p;
	if (!q->r.hdr->cq_stamped || n <= q->res_n)
		return 0;
	p = realloc(q->res, n * q->r.hdr->result_bytes + 1);
	if (!p)
		return -ENOMEM;
	q->res = p;
	q->res_n = n;
	return 0;
}

/* 1 if id is complete: *o its outcome, *res its result (in place, or
 * gathered into result room i). */
static int done_entry(const struct gpuq_queue *q, uint64_t id, size_t i,
		      struct ipc_outcome *o, const uint8_t **res)
{
	const struct ipc_cq_entry *e = ipc_cq_entry(&q->r, q->client, id);
	uint8_t *buf = q->res ? q->res + i * q->r.hdr->result_bytes : NULL;
	return ipc_cq_read(&q->r, e, id, o, res, buf);
}

/* Count one end-to-end latency (publish to result read) in the client's
 * shared histogram: bucket b holds latencies below 2^b us. */
static void lat_record(struct gpuq_queue *q, uint64_t ns)
{
	struct ipc_client *me = q->me;
	uint64_t us = ns / 1000;
	uint32_t b = 0;
	while (b < IPC_LAT_BUCKETS - 1 && us >= (1ull << b))
		b++;
	ipc_store_relaxed(&me->lat[b], me->lat[b] + 1);
	ipc_store_relaxed(&me->lat_sum_ns, me->lat_sum_ns + ns);
	ipc_store_relaxed(&me->lat_count, me->lat_count + 1);
}

/* Hand id's entry to the user; it is freed at the next call (settle()). */
static void take(struct gpuq_queue *q, uint64_t id, uint64_t now)
{
	uint64_t sent = q->sent_ns[id & q->r.cq_mask];
	lat_record(q, now > sent ? now - sent : 0);
	q->taken[id & q->r.cq_mask] = 1;
	if (id + 1 > q->reported)
		q->reported = id + 1;
}

GPUQ_API int gpuq_poll(gpuq_queue *q, gpuq_completion *out, size_t max)
{
	size_t n = 0;
	uint32_t gap = 0;
	uint64_t now = ipc_now_ns();
	if (!q || (!out && max))
		return -EINVAL;
	settle(q);
	if (res_room(q, max < q->r.hdr->cq_capacity ? max
						    : q->r.hdr->cq_capacity))
		return -ENOMEM;
	for (uint64_t id = q->released; id < q->next_id && n < max; id++) {
		struct ipc_outcome o;
		const uint8_t *res;
		if (q->taken[id & q->r.cq_mask])
			continue;
		if (!done_entry(q, id, n, &o, &res)) {
			if (++gap >= POLL_GAP_LIMIT)
				break;
			continue;
		}
		gap = 0;
		out[n].id = id;
		out[n].status = o.status;
		out[n].len = o.len;
		out[n].result = res;
		out[n].attempts = o.attempts;
		out[n].worker = o.worker;
		out[n].seq = o.seq;
		take(q, id, now);
		n++;
	}
	if (n == 0) {
		int rc = broker_check(q);
		if (rc)
			return rc;
	}
	return (int)n;
}

GPUQ_API int gpuq_result(gpuq_queue *q, uint64_t id, void *buf, size_t cap,
			 size_t *len)
{
	struct ipc_outcome o;
	const uint8_t *res;
	if (!q || (!buf && cap))
		return -EINVAL;
	settle(q);
	if (id < q->released || id >= q->next_id || q->taken[id & q->r.cq_mask])
		return GPUQ_ENOTFOUND;
	if (res_room(q, 1))
		return -ENOMEM;
	if (!done_entry(q, id, 0, &o, &res)) {
		int rc = broker_check(q);
		return rc ? rc : GPUQ_EAGAIN;
	}
	if (len)
		*len = o.len;
	if (o.len > cap)
		return -EMSGSIZE;
	if (o.len) /* buf may be NULL when the result is empty */
		memcpy(buf, res, o.len);
	take(q, id, ipc_now_ns());
	settle(q);
	return o.status;
}

GPUQ_API int gpuq_wait(gpuq_queue *q, uint64_t id, void *buf, size_t cap,
		       size_t *len, int timeout_ms)
{
	struct ipc_backoff b = IPC_BACKOFF_CLIENT_INIT(WAIT_MAX_SLEEP_NS);
	uint64_t deadline = deadline_of(timeout_ms);
	for (;;) {
		int rc = gpuq_result(q, id, buf, cap, len);
		if (rc != GPUQ_EAGAIN)
			return rc;
		if (timeout_ms == 0 || !before(deadline))
			return GPUQ_ETIMEDOUT;
		if (b.spins >= 64 && (rc = broker_check(q)))
			return rc;
		ipc_backoff_wait(&b);
	}
}

GPUQ_API uint64_t gpuq_inflight(const gpuq_queue *q)
{
	return q ? q->next_id - q->released : 0;
}

GPUQ_API int gpuq_stats_get(const gpuq_queue *q, gpuq_stats *o)
{
	struct ipc_counts c;
	const struct ipc_hdr *h;
	uint64_t now, hb;
	if (!q || !o)
		return -EINVAL;
	h = q->r.hdr;
	ipc_counts_read(&q->r, &c);
	memset(o, 0, sizeof(*o));
	o->enqueued = c.published;
	o->completed = c.completed;
	o->retried = c.retried;
	o->dead_lettered = c.dead_lettered;
	o->dlq_pending = c.dlq_pending;
	o->reclaimed = c.skipped;
	o->full_events = c.full_events;
	o->depth = c.head > c.completed + c.skipped
			   ? c.head - c.completed - c.skipped : 0;
	o->capacity = h->capacity;
	o->clients = (uint32_t)ipc_load_relaxed(&h->clients_attached);
	now = ipc_now_ns();
	hb = ipc_load_acquire(&h->heartbeat_ns);
	o->heartbeat_age_ns = now > hb ? now - hb : 0;
	return 0;
}
