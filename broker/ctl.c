/*
 * ctl.c - the broker side of the control protocol (ipc/proto.h): checking
 * credentials, attaching clients to queues, status, drain.  Called by both
 * event-loop drivers.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker/broker.h"
#include "broker/loop.h"
#include "broker/notify.h"
#include "ipc/clock.h"
#include "libclient/gpuq.h"

static void reply(struct broker *b, struct bconn *c, uint16_t type,
		  uint32_t seq, const void *body, uint32_t len, int fd)
{
	int n = proto_encode(c->tx, sizeof(c->tx), type, seq, body, len);
	if (n > 0)
		loop_send(b->loop, c, c->tx, (size_t)n, fd);
}

static void reply_error(struct broker *b, struct bconn *c, uint32_t seq,
			int code)
{
	struct proto_error e;
	memset(&e, 0, sizeof(e));
	e.code = code;
	snprintf(e.text, sizeof(e.text), "%s", gpuq_strerror(code));
	reply(b, c, PROTO_ERROR, seq, &e, sizeof(e), -1);
}

static int uid_listed(const uid_t *ids, uint32_t n, uid_t id)
{
	for (uint32_t i = 0; i < n; i++)
		if (ids[i] == id)
			return 1;
	return 0;
}

static int gid_listed(const gid_t *ids, uint32_t n, gid_t id)
{
	for (uint32_t i = 0; i < n; i++)
		if (ids[i] == id)
			return 1;
	return 0;
}

/* SO_PEERCRED was read by the loop at accept.  With no allow_uid list the
 * broker's own euid is the only uid allowed. */
static int creds_ok(const struct broker *b, const struct bconn *c)
{
	const struct gpuqd_config *k = &b->conf;
	if (k->n_allow_uid ? uid_listed(k->allow_uid, k->n_allow_uid, c->uid)
			   : c->uid == geteuid())
		return 1;
	return gid_listed(k->allow_gid, k->n_allow_gid, c->gid);
}

void ctl_accept(struct broker *b, struct bconn *c)
{
	b->nconns++;
	if (!creds_ok(b, c)) {
		blog(1, "denied pid %d uid %u gid %u", (int)c->pid,
		     (unsigned)c->uid, (unsigned)c->gid);
		c->denied = GPUQ_EDENIED;
	} else if (b->nconns > b->conf.max_connections) {
		blog(1, "refused pid %d: %u connections", (int)c->pid,
		     b->nconns - 1);
		c->denied = GPUQ_ETOOMANY;
	}
	/* A refused peer gets its error as the reply to whatever it sends
	 * first, then the connection closes: nothing else ever leaves. */
}

static int find_queue(struct broker *b, const char *name)
{
	for (uint32_t i = 0; i < b->nqueues; i++)
		if (!strcmp(b->queues[i].conf.name, name))
			return (int)i;
	return -1;
}

static void on_open(struct broker *b, struct bconn *c, const struct proto_msg *m)
{
	const struct proto_open *req = m->body;
	struct proto_open_ok ok;
	struct bqueue *q;
	uint32_t client;
	int qi = find_queue(b, req->name), rc;
	if (qi < 0) {
		reply_error(b, c, m->hdr.seq, GPUQ_ENOQUEUE);
		return;
	}
	if (b->draining || c->nattach >= BCONN_MAX_ATTACH) {
		reply_error(b, c, m->hdr.seq,
			    b->draining ? GPUQ_ESHUTDOWN : GPUQ_ETOOMANY);
		return;
	}
	q = &b->queues[qi];
	rc = bqueue_attach(q, c, &client);
	if (rc) {
		reply_error(b, c, m->hdr.seq, rc);
		return;
	}
	c->attach[c->nattach].q = (uint32_t)qi;
	c->attach[c->nattach].client = client;
	c->nattach++;
	memset(&ok, 0, sizeof(ok));
	ok.client = client;
	ok.backend = q->r.hdr->backend;
	ok.map_bytes = q->r.size;
	if (q->be->ipc_handle && q->be->ipc_handle(q, ok.cuda_ipc) == 0)
		ok.has_cuda_ipc = 1;
	blog(2, "pid %d attached to %s as client %u", (int)c->pid, req->name,
	     client);
	reply(b, c, PROTO_OPEN_OK, m->hdr.seq, &ok, sizeof(ok), q->fd);
}

static void detach_one(struct broker *b, struct bconn *c, uint32_t i)
{
	bqueue_detach(&b->queues[c->attach[i].q], c->attach[i].client);
	c->attach[i] = c->attach[--c->nattach];
}

static void on_close(struct broker *b, struct bconn *c, const struct proto_msg *m)
{
	const struct proto_close *req = m->body;
	for (uint32_t i = 0; i < c->nattach; i++)
		if (c->attach[i].client == req->client &&
		    !strcmp(b->queues[c->attach[i].q].conf.name, req->name)) {
			detach_one(b, c, i);
			return;
		}
	/* CLOSE has no reply; an unknown one is just logged. */
	blog(1, "pid %d closed client %u of '%s' it does not hold",
	     (int)c->pid, req->client, req->name);
}

_Static_assert(CONF_MAX_QUEUES <= PROTO_MAX_QUEUES,
	       "every configured queue fits in one STATUS_OK");

/* Fill a STATUS_OK body; returns its length. */
static uint32_t status_body(struct broker *b, uint8_t *body)
{
	struct proto_status_ok *st = (struct proto_status_ok *)body;
	uint32_t n = b->nqueues < PROTO_MAX_QUEUES ? b->nqueues
						   : PROTO_MAX_QUEUES;
	memset(st, 0, sizeof(*st));
	st->broker_pid = getpid();
	st->nqueues = n;
	st->epoch = b->epoch;
	st->uptime_ns = ipc_now_ns() - b->started_ns;
	st->ready_ns = b->ready_ns;
	st->drain_ns = b->drain_ns;
	for (uint32_t i = 0; i < n; i++)
		bqueue_qstat(&b->queues[i], &st->q[i]);
	return (uint32_t)(sizeof(*st) + n * sizeof(st->q[0]));
}

static void on_status(struct broker *b, struct bconn *c, uint32_t seq)
{
	_Alignas(8) uint8_t body[PROTO_MAX_MSG];
	uint32_t len = status_body(b, body);
	reply(b, c, PROTO_STATUS_OK, seq, body, len, -1);
}

/* ---- dead letters ---- */

static void dlq_list(struct broker *b, struct bconn *c, uint32_t seq,
		     struct bqueue *q, const struct proto_dlq_req *req)
{
	_Alignas(8) uint8_t body[PROTO_MAX_MSG];
	struct proto_dlq_ok *ok = (struct proto_dlq_ok *)body;
	uint32_t max = req->count < PROTO_DLQ_MAX_ITEMS ? (uint32_t)req->count
							: PROTO_DLQ_MAX_ITEMS;
	memset(ok, 0, sizeof(*ok));
	ok->nitems = bqueue_dlq_list(q, req->pos, ok->items, max, &ok->total);
	reply(b, c, PROTO_DLQ_OK, seq, body,
	      (uint32_t)(sizeof(*ok) + ok->nitems * sizeof(ok->items[0])), -1);
}

static void dlq_show(struct broker *b, struct bconn *c, uint32_t seq,
		     struct bqueue *q, const struct proto_dlq_req *req)
{
	_Alignas(8) uint8_t body[PROTO_MAX_MSG];
	struct proto_dlq_ok *ok = (struct proto_dlq_ok *)body;
	struct proto_dlq_item all[1];
	const struct ipc_dlq_entry *d = bqueue_dlq_get(q, req->worker, req->pos);
	if (!d) {
		reply_error(b, c, seq, GPUQ_ENOTFOUND);
		return;
	}
	memset(ok, 0, sizeof(*ok));
	bqueue_dlq_list(q, UINT64_MAX, all, 0, &ok->total);
	ok->nitems = 1;
	ok->data_len = d->len < PROTO_DLQ_MAX_DATA ? d->len : PROTO_DLQ_MAX_DATA;
	bqueue_dlq_item(d, req->worker, req->pos, &ok->items[0]);
	memcpy(&ok->items[1], d + 1, ok->data_len);
	reply(b, c, PROTO_DLQ_OK, seq, body,
	      (uint32_t)(sizeof(*ok) + sizeof(ok->items[0]) + ok->data_len), -1);
}

/* Changing the queues is for operators: the broker's uid, or root. */
static int is_operator(const struct bconn *c)
{
	return c->uid == geteuid() || c->uid == 0;
}

/* PAUSE answers once the consumers have confirmed it: from then on no
 * message published is run (the GPU reads a slot and the pause flag in
 * the same trip, so only its confirmation orders the two).  Bounded well
 * under the clients' dead-broker age, since the loop waits here; a worker
 * busy in a long handler or on a full dead-letter ring confirms late. */
#define PAUSE_CONFIRM_NS 200000000ull

static void confirm_pause(struct broker *b, int qi)
{
	uint64_t deadline = ipc_now_ns() + PAUSE_CONFIRM_NS;
	for (uint32_t i = 0; i < b->nqueues; i++)
		if ((qi < 0 || (uint32_t)qi == i) &&
		    bqueue_pause_wait(&b->queues[i], deadline))
			blog(0, "pause of %s not confirmed by every worker "
				"within %llu ms (busy in a handler, or waiting "
				"for dead-letter room); it holds from their "
				"next look",
			     b->queues[i].conf.name,
			     (unsigned long long)(PAUSE_CONFIRM_NS / 1000000));
}

static void on_pause(struct broker *b, struct bconn *c,
		     const struct proto_msg *m, int on)
{
	const struct proto_name *req = m->body;
	int qi = req->name[0] ? find_queue(b, req->name) : -1;
	if (!is_operator(c)) {
		reply_error(b, c, m->hdr.seq, GPUQ_EDENIED);
		return;
	}
	if (req->name[0] && qi < 0) {
		reply_error(b, c, m->hdr.seq, GPUQ_ENOQUEUE);
		return;
	}
	for (uint32_t i = 0; i < b->nqueues; i++)
		if (qi < 0 || (uint32_t)qi == i)
			bqueue_pause(&b->queues[i], on);
	if (on)
		confirm_pause(b, qi);
	blog(0, "%s %s", on ? "paused" : "resumed",
	     req->name[0] ? req->name : "every queue");
	on_status(b, c, m->hdr.seq);
}

/* One attached client, as gpuqctl clients shows it. */
static void client_item(const struct bqueue *q, uint32_t i, uint64_t now,
			struct proto_client_item *it)
{
	const struct ipc_client *cl = &q->r.clients[i];
	uint64_t hb = ipc_load_relaxed(&cl->heartbeat_ns);
	uint64_t pub = ipc_load_relaxed(&cl->published);
	uint64_t rel = ipc_load_relaxed(&cl->cq_released);
	memset(it, 0, sizeof(*it));
	snprintf(it->queue, sizeof(it->queue), "%s", q->conf.name);
	it->client = i;
	it->pid = cl->pid;
	it->uid = cl->uid;
	it->published = pub;
	it->reserved = ipc_load_relaxed(&cl->reserved);
	/* Published but whose result has not been read (an estimate: ids
	 * handed out but never published are not counted). */
	it->inflight = pub > rel ? pub - rel : 0;
	it->heartbeat_age_ns = now > hb ? now - hb : 0;
}

static void on_clients(struct broker *b, struct bconn *c,
		       const struct proto_msg *m)
{
	_Alignas(8) uint8_t body[PROTO_MAX_MSG];
	const struct proto_clients_req *req = m->body;
	struct proto_clients_ok *ok = (struct proto_clients_ok *)body;
	uint64_t now = ipc_now_ns();
	memset(ok, 0, sizeof(*ok));
	for (uint32_t qi = 0; qi < b->nqueues; qi++) {
		const struct bqueue *q = &b->queues[qi];
		for (uint32_t i = 0; i < q->r.hdr->max_clients; i++) {
			if (ipc_load_acquire(&q->r.clients[i].state) !=
			    IPC_CLIENT_ACTIVE)
				continue;
			if (ok->total++ < req->first ||
			    ok->nitems >= PROTO_CLIENTS_MAX_ITEMS)
				continue;
			client_item(q, i, now, &ok->items[ok->nitems++]);
		}
	}
	reply(b, c, PROTO_CLIENTS_OK, m->hdr.seq, body,
	      (uint32_t)(sizeof(*ok) + ok->nitems * sizeof(ok->items[0])), -1);
}

static void on_dlq(struct broker *b, struct bconn *c, const struct proto_msg *m)
{
	const struct proto_dlq_req *req = m->body;
	struct proto_dlq_ok ok;
	struct proto_dlq_item none[1];
	struct bqueue *q;
	int qi = find_queue(b, req->name);
	if (qi < 0) {
		reply_error(b, c, m->hdr.seq, GPUQ_ENOQUEUE);
		return;
	}
	q = &b->queues[qi];
	switch (req->op) {
	case DLQ_LIST:
		dlq_list(b, c, m->hdr.seq, q, req);
		return;
	case DLQ_SHOW:
		dlq_show(b, c, m->hdr.seq, q, req);
		return;
	case DLQ_REPLAY:
	case DLQ_PURGE:
		if (!is_operator(c)) {
			reply_error(b, c, m->hdr.seq, GPUQ_EDENIED);
			return;
		}
		memset(&ok, 0, sizeof(ok));
		ok.done = req->op == DLQ_REPLAY ? bqueue_dlq_replay(q, req->count)
						: bqueue_dlq_purge(q, req->count);
		bqueue_dlq_list(q, UINT64_MAX, none, 0, &ok.total);
		blog(1, "queue %s: %s %llu dead letters", q->conf.name,
		     req->op == DLQ_REPLAY ? "replayed" : "purged",
		     (unsigned long long)ok.done);
		reply(b, c, PROTO_DLQ_OK, m->hdr.seq, &ok, sizeof(ok), -1);
		return;
	default:
		reply_error(b, c, m->hdr.seq, GPUQ_EPROTO);
	}
}

void ctl_message(struct broker *b, struct bconn *c, const void *buf, int n)
{
	struct proto_msg m = { 0 };
	int rc = proto_decode(buf, (size_t)n, &m);
	if (c->denied) {
		reply_error(b, c, rc ? 0 : m.hdr.seq, c->denied);
		loop_drop(b->loop, c);
		return;
	}
	if (rc) {
		/* Say why, keep the connection: SEQPACKET keeps boundaries,
		 * so one bad message does not poison the next. */
		blog(1, "pid %d sent a bad control message: %s", (int)c->pid,
		     gpuq_strerror(rc));
		reply_error(b, c, n >= (int)sizeof(struct proto_hdr)
					  ? m.hdr.seq : 0, rc);
		return;
	}
	switch (m.hdr.type) {
	case PROTO_HELLO: {
		struct proto_hello_ok h = { getpid(), IPC_LAYOUT_VERSION,
					    b->epoch };
		reply(b, c, PROTO_HELLO_OK, m.hdr.seq, &h, sizeof(h), -1);
		break;
	}
	case PROTO_OPEN:
		on_open(b, c, &m);
		break;
	case PROTO_CLOSE:
		on_close(b, c, &m);
		break;
	case PROTO_STATUS:
		on_status(b, c, m.hdr.seq);
		break;
	case PROTO_SHUTDOWN:
		if (!is_operator(c)) {
			reply_error(b, c, m.hdr.seq, GPUQ_EDENIED);
			break;
		}
		ctl_begin_drain(b, "shutdown requested over the socket");
		/* Answered with the final counts once the drain is over. */
		if (!b->drain_waiter) {
			b->drain_waiter = c;
			b->drain_waiter_seq = m.hdr.seq;
		} else {
			reply_error(b, c, m.hdr.seq, GPUQ_ESHUTDOWN);
		}
		break;
	case PROTO_DLQ:
		on_dlq(b, c, &m);
		break;
	case PROTO_PAUSE:
	case PROTO_RESUME:
		on_pause(b, c, &m, m.hdr.type == PROTO_PAUSE);
		break;
	case PROTO_CLIENTS:
		on_clients(b, c, &m);
		break;
	default: /* replies are not requests */
		reply_error(b, c, m.hdr.seq, GPUQ_EPROTO);
		break;
	}
}

void ctl_hangup(struct broker *b, struct bconn *c)
{
	if (b->drain_waiter == c)
		b->drain_waiter = NULL;
	if (c->nattach)
		blog(2, "pid %d hung up holding %u queue attachments",
		     (int)c->pid, c->nattach);
	while (c->nattach)
		detach_one(b, c, c->nattach - 1);
	b->nconns--;
}

void ctl_begin_drain(struct broker *b, const char *why)
{
	if (b->draining)
		return;
	blog(0, "draining: %s", why);
	b->draining = 1;
	b->drain_started_ns = ipc_now_ns();
	b->drain_deadline_ns =
		ipc_now_ns() + (uint64_t)b->conf.drain_timeout_ms * 1000000ull;
	for (uint32_t i = 0; i < b->nqueues; i++)
		bqueue_close_intake(&b->queues[i]);
}

/*
 * The device fault policy: a handler that traps, or any sticky CUDA error,
 * loses the CUDA context and every kernel in it.  gpuqd completes every
 * published, unfinished message of every CUDA queue with GPUQ_EDEVICE (so
 * producers see the failure instead of waiting), closes intake, and exits
 * with status 3 so that its supervisor restarts it with a new context.
 */
static void device_fault(struct broker *b)
{
	blog(0, "device fault: failing in-flight messages and exiting (status 3)");
	for (uint32_t i = 0; i < b->nqueues; i++) {
		struct bqueue *q = &b->queues[i];
		if (!q->be->health)
			continue;
		blog(0, "queue %s: %llu in-flight message(s) completed with "
			"GPUQ_EDEVICE",
		     q->conf.name, (unsigned long long)bqueue_fail_inflight(q));
	}
	for (uint32_t i = 0; i < b->nqueues; i++)
		bqueue_close_intake(&b->queues[i]);
	b->exit_status = 3;
	loop_stop(b->loop);
}

/* A tick that comes this late, or a queue's tick that takes this long, is
 * logged: producers call the broker dead once its heartbeat, written by
 * the tick, is IPC_HEARTBEAT_DEAD_NS old, so an operator should see what
 * held the loop long before that. */
#define TICK_LATE_NS (IPC_HEARTBEAT_DEAD_NS / 4)

static void tick_queue(struct bqueue *q, uint64_t now)
{
	uint64_t took;
	bqueue_tick(q, now);
	took = ipc_now_ns() - now;
	if (took >= TICK_LATE_NS)
		blog(0, "queue %s: its tick took %.0f ms (backend %s); producers "
			"call the broker dead at %.0f ms",
		     q->conf.name, (double)took / 1e6, q->be->name,
		     (double)IPC_HEARTBEAT_DEAD_NS / 1e6);
}

void ctl_tick(struct broker *b)
{
	uint64_t now = ipc_now_ns();
	int all_drained = 1;
	if (b->last_tick_ns && now - b->last_tick_ns >= TICK_LATE_NS + LOOP_TICK_NS)
		blog(0, "broker loop: %.0f ms since the last tick (every %.0f "
			"ms); producers call the broker dead at %.0f ms",
		     (double)(now - b->last_tick_ns) / 1e6,
		     (double)LOOP_TICK_NS / 1e6,
		     (double)IPC_HEARTBEAT_DEAD_NS / 1e6);
	b->last_tick_ns = now;
	if (notify_watchdog_due(now))
		notify_watchdog(now);
	for (uint32_t i = 0; i < b->nqueues; i++) {
		struct bqueue *q = &b->queues[i];
		if (q->be->health && q->be->health(q)) {
			device_fault(b);
			return;
		}
		tick_queue(q, ipc_now_ns());
		bqueue_note_drained(q, now);
		all_drained &= bqueue_drained(q);
	}
	if (!b->draining)
		return;
	if (!all_drained && now <= b->drain_deadline_ns)
		return;
	if (!all_drained)
		blog(0, "drain timed out after %u ms; stopping anyway",
		     b->conf.drain_timeout_ms);
	else
		blog(0, "drained in %.1f ms",
		     (double)(now - b->drain_started_ns) / 1e6);
	b->drain_ns = now > b->drain_started_ns ? now - b->drain_started_ns : 1;
	if (b->drain_waiter) {
		/* The loop stops now, so send directly rather than queue. */
		_Alignas(8) uint8_t body[PROTO_MAX_MSG];
		struct bconn *c = b->drain_waiter;
		uint32_t len = status_body(b, body);
		int n = proto_encode(c->tx, sizeof(c->tx), PROTO_STATUS_OK,
				     b->drain_waiter_seq, body, len);
		if (n > 0)
			proto_send(c->fd, c->tx, (size_t)n, -1);
		b->drain_waiter = NULL;
	}
	loop_stop(b->loop);
}
