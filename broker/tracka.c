/*
 * tracka.c - Track A: one thread per bound queue moves Redis stream entries
 * into the ring and results back to Redis.  tracka.h has the contract,
 * docs/tracka.md the formats and the guarantees.
 *
 * Everything happens on one pipelined connection, in this order per entry:
 *   XREADGROUP (a batch) -> validate -> publish into the ring -> read the
 *   completion -> XADD to the result stream (or, on failure, XADD to the
 *   dead-letter stream) -> when Redis confirms that write: XACK.
 * Replies arrive in command order, so each command pushes a tag saying what
 * its reply is for.  An entry is acknowledged only after its write was
 * confirmed; anything not acknowledged stays in the group's pending list
 * (PEL) and is delivered again (at-least-once):
 *   - own pending entries are re-read from id 0 after every (re)connect,
 *     which covers a gpuqd restart and a Redis restart alike;
 *   - XAUTOCLAIM takes over entries idle longer than claim_idle_ms, which
 *     covers a consumer (another gpuqd) that died.
 * Entries delivered again are first looked up with XPENDING for their
 * delivery count: past max_deliveries they go to the dead-letter stream
 * instead of the ring, so a message that kills its consumer cannot loop.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "broker/broker.h"
#include "broker/handlers.h" /* gpuq_fault_mix */
#include "broker/redis_conn.h"
#include "broker/tracka.h"
#include "broker/tracka_window.h"
#include "ipc/clock.h"
#include "ipc/cq.h"
#include "libclient/gpuq.h"

#define MS 1000000ull
#define CONNECT_TIMEOUT_MS 2000
#define BACKOFF_MIN_NS (50 * MS)
#define BACKOFF_MAX_NS (2000 * MS)
/* Scanning for completions stops after this many not-done entries in a
 * row (results come back nearly in order; see libclient's poll). */
#define SCAN_GAP_LIMIT 512u
/* After a non-blocking read found nothing while work is in flight, wait
 * this long before asking again rather than spin on Redis. */
#define EMPTY_READ_PAUSE_NS 200000ull
#define IDLE_POLL_NS (10 * MS)
/* Waiting for the ring (results, room) vs. only for Redis. */
#define WAIT_RING_US 50u
#define WAIT_IDLE_US 5000u
#define XACK_MAX_IDS 1024u
/* A result-stream entry holding several results (redis_result_batch) is
 * closed at this many result bytes, however many results it holds. */
#define RESULT_GROUP_BYTES (1u << 20)
#define STATS_LOG_NS (10000 * MS)
#define DELIV_SKIP UINT32_MAX
#define READ_BYTES_MAX (64u << 20)

enum tag_kind {
	T_AUTH = 1,
	T_GROUP,  /* XGROUP CREATE */
	T_READ,   /* XREADGROUP > */
	T_RESCAN, /* XREADGROUP <id>: own pending entries */
	T_CLAIM,  /* XAUTOCLAIM */
	T_CHECK,  /* XPENDING of one redelivered entry */
	T_FETCH,  /* XRANGE of a failed entry, for its dead letter */
	T_RESULT, /* XADD to the result stream */
	T_DLQ,    /* XADD to the dead-letter stream */
	T_XACK,
};

struct tag {
	uint32_t kind;
	uint32_t n;       /* T_XACK: ids acknowledged; T_RESULT: results in
			     the entry; T_CHECK: item index */
	uint64_t seq;     /* T_DLQ, T_FETCH */
	struct batch *b;  /* T_CHECK */
};

/* Entries of one read reply, fed into the ring in order. */
struct batch {
	redisReply *r;        /* owned: items point into it */
	redisReply **items;   /* [id, [field, value, ...] or nil] */
	size_t n, next;
	uint32_t *deliv;      /* redelivered: XPENDING's count per item */
	uint32_t checks;      /* T_CHECK replies still to come */
	int redelivered, claimed;
	struct batch *nextb;
};

/* A result waiting for its XADD. */
struct rpend {
	uint64_t seq;
	const void *res; /* in its completion entry */
	uint32_t len;
};

/* A growable argv for one command. */
struct args {
	const char **v;
	size_t *l;
	int n, cap;
	char num[4][24];
	int nnum;
};

struct tracka {
	struct bqueue *q;
	struct ipc_ring *r;
	struct ipc_client *me;
	uint32_t client;
	pthread_t th;
	int stop;              /* atomic: 1 asks for a drain */
	uint64_t deadline_ns;  /* atomic: when a drain gives up */
	int force_epoll;
	struct rconn *rc;
	char host[64], password[128], stream[128], group[64];
	char consumer[96], result[160], dlq[160];
	uint16_t port;
	uint32_t batch, block_ms, max_deliv, claim_idle_ms, result_batch;

	struct ta_window w;
	uint64_t scan;    /* no E_RING entry below this sequence number */
	uint32_t in_ring; /* entries in E_RING */
	struct tag *tags;
	size_t tcap, thead, tlen;
	struct batch *bhead, *btail;
	uint64_t *ackq; /* sequence numbers: [ahead, asent) in an XACK sent,
			   [asent, atail) confirmed written, XACK not sent */
	uint64_t ahead, asent, atail;
	/* Successful results, by position: [rtail, rsent) in XADDs sent and
	 * not yet confirmed, [rsent, rhead) harvested, XADD not sent (their
	 * bytes are still in the completion entries).  Replies come in the
	 * order of the commands, so positions are confirmed in order. */
	struct rpend *rq;
	uint64_t rtail, rsent, rhead;
	/* A stamped-result queue's results, gathered out of their entries
	 * (ipc/cq.h) by window position; NULL on a plain queue, whose
	 * results are sent from the entries themselves. */
	uint8_t *rbuf;
	char (*rfield)[3][24]; /* "src.<i>", "result.<i>", "attempts.<i>" */
	char (*rnum)[2][SID_STR_MAX]; /* the id and attempts of result i */
	struct args a;
	char (*ids)[SID_STR_MAX];

	int ever_connected, group_ready, read_out, claim_out, rescanning;
	int intake_closed, blocked;
	char rescan_from[SID_STR_MAX], claim_cursor[SID_STR_MAX];
	uint64_t next_claim_ns, next_read_ns, next_connect_ns, backoff_ns;
	uint64_t last_log_ns, connect_failures;
	struct tracka_stats st;
	struct tracka_stats logged;
};

#define STAT_ADD(t, f, n) \
	__atomic_store_n(&(t)->st.f, (t)->st.f + (n), __ATOMIC_RELAXED)

/* ------------------------------------------------------------------------ */
/* Commands and tags                                                        */
/* ------------------------------------------------------------------------ */

static int args_reserve(struct args *a, int n)
{
	if (n <= a->cap)
		return 0;
	const char **v = realloc(a->v, (size_t)n * sizeof(*v));
	if (!v)
		return -ENOMEM;
	a->v = v;
	size_t *l = realloc(a->l, (size_t)n * sizeof(*l));
	if (!l)
		return -ENOMEM;
	a->l = l;
	a->cap = n;
	return 0;
}

static void args_reset(struct args *a)
{
	a->n = 0;
	a->nnum = 0;
}

/* Callers reserve room first (args_reserve), so adding never fails. */
static void arg_buf(struct args *a, const void *p, size_t len)
{
	a->v[a->n] = p;
	a->l[a->n++] = len;
}

static void arg_str(struct args *a, const char *s)
{
	arg_buf(a, s, strlen(s));
}

static void arg_u64(struct args *a, uint64_t v)
{
	char *b = a->num[a->nnum++];
	arg_buf(a, b, (size_t)snprintf(b, sizeof(a->num[0]), "%" PRIu64, v));
}

static int tag_push(struct tracka *t, const struct tag *tg)
{
	if (t->tlen == t->tcap) {
		size_t ncap = t->tcap ? t->tcap * 2 : 1024;
		struct tag *nt = malloc(ncap * sizeof(*nt));
		if (!nt)
			return -ENOMEM;
		for (size_t i = 0; i < t->tlen; i++)
			nt[i] = t->tags[(t->thead + i) % t->tcap];
		free(t->tags);
		t->tags = nt;
		t->tcap = ncap;
		t->thead = 0;
	}
	t->tags[(t->thead + t->tlen) % t->tcap] = *tg;
	t->tlen++;
	return 0;
}

static struct tag tag_pop(struct tracka *t)
{
	struct tag tg = t->tags[t->thead];
	t->thead = (t->thead + 1) % t->tcap;
	t->tlen--;
	return tg;
}

/* Send the command in t->a, expecting a reply of the given tag. */
static int send_cmd(struct tracka *t, const struct tag *tg)
{
	int rc = rconn_append(t->rc, t->a.n, t->a.v, t->a.l);
	return rc ? rc : tag_push(t, tg);
}

static int simple_cmd(struct tracka *t, uint32_t kind, int argc,
		      const char *const *argv)
{
	struct tag tg = { kind, 0, 0, NULL };
	int rc = args_reserve(&t->a, argc);
	if (rc)
		return rc;
	args_reset(&t->a);
	for (int i = 0; i < argc; i++)
		arg_str(&t->a, argv[i]);
	return send_cmd(t, &tg);
}

/* ------------------------------------------------------------------------ */
/* Entries: fields, dead letters, results                                   */
/* ------------------------------------------------------------------------ */

static const redisReply *field(const redisReply *fields, const char *name)
{
	size_t n = strlen(name);
	if (!fields || fields->type != REDIS_REPLY_ARRAY)
		return NULL;
	for (size_t i = 0; i + 1 < fields->elements; i += 2) {
		const redisReply *k = fields->element[i];
		if (k->type == REDIS_REPLY_STRING && k->len == n &&
		    !memcmp(k->str, name, n))
			return fields->element[i + 1];
	}
	return NULL;
}

/*
 * XADD <dlq> * src <id> reason <text> deliveries <n> consumer <name>
 *             [attempts <n>] orig:<field> <value> ...
 * The original fields are copied whole (prefixed), so a dead letter loses
 * nothing of its entry, whatever was wrong with it.
 */
static int send_dead_letter(struct tracka *t, uint64_t seq, const char *reason,
			    const redisReply *fields)
{
	struct ta_ent *e = win_ent(&t->w, seq);
	struct tag tg = { T_DLQ, 0, seq, NULL };
	size_t nf = fields && fields->type == REDIS_REPLY_ARRAY
			    ? fields->elements : 0;
	char id[SID_STR_MAX], *names = NULL, *np;
	size_t nbytes = 1;
	int rc = args_reserve(&t->a, 14 + (int)nf);
	if (rc)
		return rc;
	for (size_t i = 0; i + 1 < nf; i += 2)
		nbytes += 5 + fields->element[i]->len;
	if (!(names = np = malloc(nbytes)))
		return -ENOMEM;
	args_reset(&t->a);
	sid_format(&e->id, id);
	arg_str(&t->a, "XADD");
	arg_str(&t->a, t->dlq);
	arg_str(&t->a, "*");
	arg_str(&t->a, "src");
	arg_str(&t->a, id);
	arg_str(&t->a, "reason");
	arg_str(&t->a, reason);
	arg_str(&t->a, "deliveries");
	arg_u64(&t->a, e->deliveries);
	arg_str(&t->a, "consumer");
	arg_str(&t->a, t->consumer);
	if (e->attempts) {
		arg_str(&t->a, "attempts");
		arg_u64(&t->a, e->attempts);
	}
	for (size_t i = 0; i + 1 < nf; i += 2) {
		const redisReply *k = fields->element[i], *v = fields->element[i + 1];
		memcpy(np, "orig:", 5);
		if (k->len)
			memcpy(np + 5, k->str, k->len);
		arg_buf(&t->a, np, 5 + k->len);
		np += 5 + k->len;
		arg_buf(&t->a, v->str ? v->str : "", v->str ? v->len : 0);
	}
	e->state = E_WRITING;
	e->dlq = 1;
	rc = send_cmd(t, &tg);
	free(names);
	return rc;
}

/* Results sent in the next XADD: up to result_batch, and past the first
 * no more than RESULT_GROUP_BYTES of result bytes. */
static uint32_t result_group(const struct tracka *t)
{
	uint64_t bytes = 0;
	uint32_t n = 0;
	while (t->rsent + n < t->rhead && n < t->result_batch) {
		bytes += t->rq[(t->rsent + n) & t->w.mask].len;
		if (n && bytes > RESULT_GROUP_BYTES)
			break;
		n++;
	}
	return n;
}

/*
 * One result-stream entry (docs/tracka.md):
 *   redis_result_batch = 1:
 *     XADD <result> * src <id> result <bytes> attempts <n> consumer <name>
 *   otherwise, k results of one group:
 *     XADD <result> * n <k> consumer <name>
 *          src.0 <id> result.0 <bytes> attempts.0 <n> ... src.<k-1> ...
 * One XADD costs Redis about as much as a group's, which is what grouping
 * is for (docs/benchmarking.md §8.1.1).
 */
static int send_result_group(struct tracka *t, uint32_t n)
{
	struct tag tg = { T_RESULT, n, 0, NULL };
	int rc = args_reserve(&t->a, 7 + 6 * (int)n);
	if (rc)
		return rc;
	args_reset(&t->a);
	arg_str(&t->a, "XADD");
	arg_str(&t->a, t->result);
	arg_str(&t->a, "*");
	if (t->result_batch > 1) {
		arg_str(&t->a, "n");
		arg_u64(&t->a, n);
		arg_str(&t->a, "consumer");
		arg_str(&t->a, t->consumer);
	}
	for (uint32_t i = 0; i < n; i++) {
		const struct rpend *p = &t->rq[(t->rsent + i) & t->w.mask];
		struct ta_ent *e = win_ent(&t->w, p->seq);
		char *id = t->rnum[i][0], *att = t->rnum[i][1];
		int one = t->result_batch == 1;
		sid_format(&e->id, id);
		snprintf(att, sizeof(t->rnum[i][1]), "%" PRIu32, e->attempts);
		arg_str(&t->a, one ? "src" : t->rfield[i][0]);
		arg_str(&t->a, id);
		arg_str(&t->a, one ? "result" : t->rfield[i][1]);
		arg_buf(&t->a, p->len ? p->res : "", p->len);
		arg_str(&t->a, one ? "attempts" : t->rfield[i][2]);
		arg_str(&t->a, att);
	}
	if (t->result_batch == 1) {
		arg_str(&t->a, "consumer");
		arg_str(&t->a, t->consumer);
	}
	if ((rc = send_cmd(t, &tg)))
		return rc;
	t->rsent += n;
	return 0;
}

/* Send every harvested result, in groups. */
static int send_results(struct tracka *t)
{
	int rc;
	while (t->rsent < t->rhead)
		if ((rc = send_result_group(t, result_group(t))))
			return rc;
	return 0;
}

/* A successful result, to go out with the next group. */
static int add_result(struct tracka *t, uint64_t seq, const void *res,
		      uint32_t len)
{
	t->rq[t->rhead++ & t->w.mask] = (struct rpend){ seq, res, len };
	win_ent(&t->w, seq)->state = E_WRITING;
	return t->rhead - t->rsent >= t->result_batch ? send_results(t) : 0;
}

/* ------------------------------------------------------------------------ */
/* Into the ring                                                            */
/* ------------------------------------------------------------------------ */

/* Why an entry cannot go into the ring (NULL: it can).  why has room for
 * the message; *payload and *key are set when it can. */
static const char *validate(struct tracka *t, const redisReply *fields,
			    const redisReply **payload, uint64_t *key,
			    char *why, size_t cap)
{
	const redisReply *p = field(fields, "payload"), *k = field(fields, "key");
	uint32_t slot = t->r->hdr->slot_bytes;
	if (!fields || fields->type != REDIS_REPLY_ARRAY)
		return "entry deleted from the stream";
	if (!p || p->type != REDIS_REPLY_STRING)
		return "missing field 'payload'";
	if (p->len == 0)
		return "empty payload";
	if (p->len > slot) {
		snprintf(why, cap,
			 "payload of %zu bytes is larger than the slot (slot_bytes %u)",
			 (size_t)p->len, slot);
		return why;
	}
	*key = 0;
	if (k) {
		struct sid tmp;
		char buf[48];
		int n;
		if (k->type != REDIS_REPLY_STRING || k->len > 20)
			return "bad field 'key': want a decimal number below 2^64";
		/* A key is a decimal number below 2^64: the id parser does
		 * exactly that check on "<key>-0". */
		n = snprintf(buf, sizeof(buf), "%.*s-0", (int)k->len, k->str);
		if (sid_parse(buf, (size_t)n, &tmp))
			return "bad field 'key': want a decimal number below 2^64";
		*key = tmp.ms;
	}
	*payload = p;
	return NULL;
}

/* Publish one payload; 0, GPUQ_EFULL or GPUQ_ESHUTDOWN. */
static int publish(struct tracka *t, uint64_t seq, const redisReply *p,
		   uint64_t key)
{
	struct ipc_msg_meta mm = { seq, key, (uint32_t)p->len,
				   (uint16_t)t->client, 0 };
	uint32_t ring = ipc_ring_of(t->r, key);
	uint64_t ticket;
	int rc;
	ipc_resv_begin(t->me);
	rc = ipc_reserve(t->r, ring, 1, &ticket);
	if (!rc) {
		ipc_slot_fill(t->r, ring, ticket, p->str, (uint32_t)p->len);
		ipc_publish(t->r, ring, ticket, &mm);
		ipc_store_relaxed(&t->me->published, t->me->published + 1);
	}
	ipc_resv_end(t->me);
	return rc;
}

/* Counted once taken (into the ring or to the dead-letter stream), so an
 * entry skipped as held, or retried after backpressure, counts once. */
static void count_taken(struct tracka *t, const struct batch *b)
{
	if (b->redelivered) {
		STAT_ADD(t, redelivered, 1);
		if (b->claimed)
			STAT_ADD(t, claimed, 1);
	}
}

/* An entry's idempotency key on an exactly_once queue: its stream id,
 * mixed into 64 bits (never 0).  A redelivery of the entry (its own
 * pending re-read after a reconnect, or claimed back) carries the same
 * key, so it gets the first run's result without the handler running
 * again (docs/guarantees.md, Exactly-once). */
static uint64_t entry_key(const struct sid *id)
{
	uint64_t k = gpuq_fault_mix(id->ms * 0x9e3779b97f4a7c15ull ^ id->seq);
	return k ? k : 1;
}

/* Into the ring: 0, or 1 when there is no room (or no intake) now. */
static int take_ring(struct tracka *t, const struct batch *b,
		     const struct sid *id, uint32_t deliv,
		     const redisReply *payload, uint64_t key)
{
	uint64_t seq;
	int rc;
	if (t->intake_closed)
		return 1;
	if (t->q->conf.exactly_once)
		key = entry_key(id);
	rc = publish(t, t->w.head, payload, key);
	if (rc == GPUQ_EFULL) {
		if (!t->blocked)
			STAT_ADD(t, full_waits, 1);
		t->blocked = 1;
		return 1;
	}
	if (rc == GPUQ_ESHUTDOWN) {
		t->intake_closed = 1; /* draining: the rest stays pending */
		return 1;
	}
	t->blocked = 0;
	seq = win_add(&t->w, id, deliv);
	win_ent(&t->w, seq)->ring = (uint16_t)ipc_ring_of(t->r, key);
	t->in_ring++;
	STAT_ADD(t, enqueued, 1);
	count_taken(t, b);
	return 0;
}

/* Take item i of b: 0 done with it, 1 blocked (no room: try later), or a
 * negated errno from the connection. */
static int take(struct tracka *t, struct batch *b, size_t i)
{
	const redisReply *it = b->items[i], *fields, *payload = NULL;
	uint32_t deliv = b->deliv ? b->deliv[i] : 1;
	const char *why;
	char whybuf[128];
	struct sid id;
	uint64_t key = 0, seq;
	if (it->type != REDIS_REPLY_ARRAY || it->elements != 2 ||
	    it->element[0]->type != REDIS_REPLY_STRING ||
	    sid_parse(it->element[0]->str, it->element[0]->len, &id))
		return 0; /* not an entry (a claim's nil): nothing to do */
	if (deliv == DELIV_SKIP)
		return 0; /* no longer pending: someone else finished it */
	if (win_find(&t->w, &id) >= 0) {
		STAT_ADD(t, skipped_held, 1);
		return 0;
	}
	if (!win_room(&t->w))
		return 1;
	fields = it->element[1];
	if (deliv > t->max_deliv) {
		snprintf(whybuf, sizeof(whybuf),
			 "delivered %u times, more than redis_max_deliveries %u",
			 deliv, t->max_deliv);
		why = whybuf;
	} else {
		why = validate(t, fields, &payload, &key, whybuf,
			       sizeof(whybuf));
	}
	if (!why)
		return take_ring(t, b, &id, deliv, payload, key);
	seq = win_add(&t->w, &id, deliv);
	count_taken(t, b);
	return send_dead_letter(t, seq, why, fields);
}

static void batch_free(struct batch *b)
{
	freeReplyObject(b->r);
	free(b->deliv);
	free(b);
}

/* Feed the queued batches into the ring, oldest first. */
static int feed(struct tracka *t)
{
	while (t->bhead) {
		struct batch *b = t->bhead;
		if (b->checks)
			return 0; /* delivery counts still to come */
		for (; b->next < b->n; b->next++) {
			int rc = take(t, b, b->next);
			if (rc)
				return rc < 0 ? rc : 0;
		}
		t->bhead = b->nextb;
		if (!t->bhead)
			t->btail = NULL;
		batch_free(b);
	}
	return 0;
}

/* Ask for the delivery count of each redelivered item not held here. */
static int check_deliveries(struct tracka *t, struct batch *b)
{
	b->deliv = calloc(b->n ? b->n : 1, sizeof(*b->deliv));
	if (!b->deliv)
		return -ENOMEM;
	for (size_t i = 0; i < b->n; i++) {
		const redisReply *it = b->items[i];
		struct tag tg = { T_CHECK, (uint32_t)i, 0, b };
		struct sid id;
		int rc;
		if (it->type != REDIS_REPLY_ARRAY || it->elements != 2 ||
		    it->element[0]->type != REDIS_REPLY_STRING ||
		    sid_parse(it->element[0]->str, it->element[0]->len, &id) ||
		    win_find(&t->w, &id) >= 0)
			continue;
		rc = args_reserve(&t->a, 6);
		if (rc)
			return rc;
		args_reset(&t->a);
		arg_str(&t->a, "XPENDING");
		arg_str(&t->a, t->stream);
		arg_str(&t->a, t->group);
		arg_buf(&t->a, it->element[0]->str, it->element[0]->len);
		arg_buf(&t->a, it->element[0]->str, it->element[0]->len);
		arg_str(&t->a, "1");
		if ((rc = send_cmd(t, &tg)))
			return rc;
		b->checks++;
	}
	return 0;
}

/* Queue the entries of a read reply (rep is owned from here on). */
static int add_batch(struct tracka *t, redisReply *rep, const redisReply *ents,
		     int redelivered, int claimed)
{
	struct batch *b;
	int rc = 0;
	if (!ents || ents->type != REDIS_REPLY_ARRAY || !ents->elements) {
		freeReplyObject(rep);
		return 0;
	}
	b = calloc(1, sizeof(*b));
	if (!b) {
		freeReplyObject(rep);
		return -ENOMEM;
	}
	b->r = rep;
	b->items = ents->element;
	b->n = ents->elements;
	b->redelivered = redelivered;
	b->claimed = claimed;
	STAT_ADD(t, read, b->n);
	if (redelivered)
		rc = check_deliveries(t, b);
	if (t->btail)
		t->btail->nextb = b;
	else
		t->bhead = b;
	t->btail = b;
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Out of the ring                                                          */
/* ------------------------------------------------------------------------ */

/* Ask for a failed entry's fields again, for its dead letter: its slot is
 * long reused, and the entry itself is the one lossless copy. */
static int fetch_for_dlq(struct tracka *t, uint64_t seq)
{
	struct tag tg = { T_FETCH, 0, seq, NULL };
	char id[SID_STR_MAX];
	int rc = args_reserve(&t->a, 4);
	if (rc)
		return rc;
	args_reset(&t->a);
	sid_format(&win_ent(&t->w, seq)->id, id);
	arg_str(&t->a, "XRANGE");
	arg_str(&t->a, t->stream);
	arg_str(&t->a, id);
	arg_str(&t->a, id);
	win_ent(&t->w, seq)->state = E_FETCH;
	return send_cmd(t, &tg);
}

static int harvest_one(struct tracka *t, uint64_t seq,
		       const struct ipc_outcome *c, const uint8_t *res)
{
	struct ta_ent *e = win_ent(&t->w, seq);
	e->attempts = c->attempts;
	t->in_ring--;
	if (c->status == 0)
		return add_result(t, seq, res, c->len);
	/* A GPU fault, not the entry's fault: gpuqd is about to exit, so
	 * leave the entry pending, unacknowledged, for the restarted gpuqd
	 * (or another consumer) to deliver again. */
	if (c->status == GPUQ_EDEVICE) {
		win_release(&t->w, seq);
		return 0;
	}
	return fetch_for_dlq(t, seq);
}

/*
 * Read the completions that arrived and send their results.  On an ordered
 * queue, once an entry of a ring is found unfinished, later entries of that
 * ring wait for the next pass even if they are done by now: the worker may
 * have finished both between our two looks, and taking the later one first
 * would write one key's results out of order.
 */
static int harvest(struct tracka *t)
{
	uint64_t waiting[IPC_MAX_WORKERS / 64] = { 0 };
	int ordered = t->r->hdr->nrings > 1;
	uint32_t gap = 0;
	uint64_t s;
	int rc;
	for (s = t->scan; s < t->w.head && gap < SCAN_GAP_LIMIT; s++) {
		struct ta_ent *e = win_ent(&t->w, s);
		struct ipc_outcome c;
		const uint8_t *res;
		uint8_t *buf = t->rbuf ? t->rbuf + (s & t->w.mask) *
							   t->r->hdr->result_bytes
				       : NULL;
		uint64_t bit = 1ull << (e->ring % 64);
		if (e->state != E_RING) {
			if (s == t->scan)
				t->scan++;
			continue;
		}
		if ((ordered && (waiting[e->ring / 64] & bit)) ||
		    !ipc_cq_read(t->r, ipc_cq_entry(t->r, t->client, s), s, &c,
				 &res, buf)) {
			waiting[e->ring / 64] |= bit;
			gap++;
			continue;
		}
		if ((rc = harvest_one(t, s, &c, res)))
			return rc;
		if (s == t->scan)
			t->scan++;
	}
	/* Before the completion entries are given back: the results' bytes
	 * are read from them. */
	if ((rc = send_results(t)))
		return rc;
	/* Everything below scan has been read: say so, as a client does
	 * (gpuqctl clients shows the difference as in flight). */
	ipc_store_release(&t->me->cq_released, t->scan);
	ipc_store_relaxed(&t->me->heartbeat_ns, ipc_now_ns());
	return 0;
}

static int flush_acks(struct tracka *t)
{
	while (t->asent < t->atail) {
		uint64_t n = t->atail - t->asent;
		struct tag tg = { T_XACK, 0, 0, NULL };
		int rc;
		if (n > XACK_MAX_IDS)
			n = XACK_MAX_IDS;
		if ((rc = args_reserve(&t->a, 3 + (int)n)))
			return rc;
		args_reset(&t->a);
		arg_str(&t->a, "XACK");
		arg_str(&t->a, t->stream);
		arg_str(&t->a, t->group);
		for (uint64_t i = 0; i < n; i++) {
			uint64_t seq = t->ackq[(t->asent + i) & t->w.mask];
			int len = sid_format(&win_ent(&t->w, seq)->id, t->ids[i]);
			arg_buf(&t->a, t->ids[i], (size_t)len);
			win_ent(&t->w, seq)->state = E_ACKING;
		}
		tg.n = (uint32_t)n;
		if ((rc = send_cmd(t, &tg)))
			return rc;
		t->asent += n;
	}
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Replies                                                                  */
/* ------------------------------------------------------------------------ */

static int is_error(const redisReply *r, const char *prefix)
{
	return r->type == REDIS_REPLY_ERROR &&
	       (!prefix || !strncmp(r->str, prefix, strlen(prefix)));
}

static void log_error(struct tracka *t, const char *what, const redisReply *r)
{
	blog(0, "tracka %s: %s: %.200s", t->q->conf.name, what,
	     r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
}

static int send_group_create(struct tracka *t)
{
	/* From the start of the stream: entries added before the first
	 * gpuqd came up are processed too. */
	const char *argv[] = { "XGROUP", "CREATE", t->stream, t->group, "0",
			       "MKSTREAM" };
	return simple_cmd(t, T_GROUP, 6, argv);
}

/* The entries array of an XREADGROUP reply, or NULL for none. */
static const redisReply *read_entries(const redisReply *r)
{
	if (r->type != REDIS_REPLY_ARRAY || r->elements < 1)
		return NULL;
	r = r->element[0];
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 2)
		return NULL;
	return r->element[1];
}

static int on_read(struct tracka *t, redisReply *r, int rescan)
{
	const redisReply *ents;
	t->read_out = 0;
	if (is_error(r, "NOGROUP")) {
		/* The stream or group was deleted under us: make it again. */
		t->group_ready = 0;
		freeReplyObject(r);
		return send_group_create(t);
	}
	if (r->type == REDIS_REPLY_ERROR) {
		log_error(t, "XREADGROUP", r);
		t->next_read_ns = ipc_now_ns() + 100 * MS;
		freeReplyObject(r);
		return 0;
	}
	ents = read_entries(r);
	if (!ents || !ents->elements) {
		if (rescan)
			t->rescanning = 0; /* own pending list fully re-read */
		else
			/* With block_ms 0 an idle binding polls: gently. */
			t->next_read_ns = ipc_now_ns() +
					  (!t->block_ms && !t->w.held
						   ? IDLE_POLL_NS : EMPTY_READ_PAUSE_NS);
		freeReplyObject(r);
		return 0;
	}
	if (rescan) {
		const redisReply *last = ents->element[ents->elements - 1];
		if (last->type == REDIS_REPLY_ARRAY && last->elements == 2 &&
		    last->element[0]->type == REDIS_REPLY_STRING)
			snprintf(t->rescan_from, sizeof(t->rescan_from), "%.*s",
				 (int)last->element[0]->len,
				 last->element[0]->str);
		else
			t->rescanning = 0;
	}
	return add_batch(t, r, ents, rescan, 0);
}

static int on_claim(struct tracka *t, redisReply *r)
{
	t->claim_out = 0;
	if (r->type != REDIS_REPLY_ARRAY || r->elements < 2 ||
	    r->element[0]->type != REDIS_REPLY_STRING) {
		/* E.g. a Redis older than 6.2: try again next period, not in
		 * a loop. */
		log_error(t, "XAUTOCLAIM", r);
		t->next_claim_ns = ipc_now_ns() + (uint64_t)t->claim_idle_ms * MS / 2;
		freeReplyObject(r);
		return 0;
	}
	snprintf(t->claim_cursor, sizeof(t->claim_cursor), "%.*s",
		 (int)r->element[0]->len, r->element[0]->str);
	/* A finished sweep waits for the next period; an unfinished one
	 * goes on at once. */
	if (!strcmp(t->claim_cursor, "0-0"))
		t->next_claim_ns = ipc_now_ns() + (uint64_t)t->claim_idle_ms *
							  MS / 2;
	return add_batch(t, r, r->element[1], 1, 1);
}

static void on_check(struct tracka *t, const struct tag *tg, redisReply *r)
{
	struct batch *b = tg->b;
	uint32_t d = DELIV_SKIP;
	/* [[id, consumer, idle, deliveries]], or [] if no longer pending. */
	if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
	    r->element[0]->type == REDIS_REPLY_ARRAY &&
	    r->element[0]->elements == 4 &&
	    r->element[0]->element[3]->type == REDIS_REPLY_INTEGER)
		d = (uint32_t)r->element[0]->element[3]->integer;
	else if (r->type == REDIS_REPLY_ERROR)
		log_error(t, "XPENDING", r);
	b->deliv[tg->n] = d;
	b->checks--;
	freeReplyObject(r);
}

static int on_fetch(struct tracka *t, const struct tag *tg, redisReply *r)
{
	const redisReply *fields = NULL;
	char why[96];
	int rc;
	if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
	    r->element[0]->type == REDIS_REPLY_ARRAY &&
	    r->element[0]->elements == 2)
		fields = r->element[0]->element[1];
	snprintf(why, sizeof(why), "handler failed %u attempts",
		 win_ent(&t->w, tg->seq)->attempts);
	rc = send_dead_letter(t, tg->seq, why, fields);
	freeReplyObject(r);
	return rc;
}

/* The reply to a result group's or a dead letter's XADD: confirmed
 * entries queue for their XACK. */
static void on_written(struct tracka *t, const struct tag *tg, redisReply *r)
{
	int dlq = tg->kind == T_DLQ;
	uint32_t n = dlq ? 1 : tg->n;
	if (r->type == REDIS_REPLY_ERROR) {
		/* Not written, so not acknowledged: the entries stay pending
		 * and are claimed again once idle for claim_idle_ms. */
		STAT_ADD(t, write_errors, 1);
		if (t->st.write_errors < 10 || !(t->st.write_errors % 1000))
			log_error(t, dlq ? "XADD dead letter" : "XADD result", r);
	} else if (dlq) {
		STAT_ADD(t, dead_lettered, 1);
	} else {
		STAT_ADD(t, results, n);
	}
	for (uint32_t i = 0; i < n; i++) {
		uint64_t seq = dlq ? tg->seq : t->rq[t->rtail++ & t->w.mask].seq;
		if (r->type == REDIS_REPLY_ERROR)
			win_release(&t->w, seq);
		else
			t->ackq[t->atail++ & t->w.mask] = seq;
	}
	freeReplyObject(r);
}

static void on_xack(struct tracka *t, const struct tag *tg, redisReply *r)
{
	if (r->type == REDIS_REPLY_ERROR)
		log_error(t, "XACK", r); /* stays pending: delivered again */
	else
		STAT_ADD(t, acked, tg->n);
	for (uint32_t i = 0; i < tg->n; i++)
		win_release(&t->w, t->ackq[t->ahead++ & t->w.mask]);
	freeReplyObject(r);
}

static int on_setup(struct tracka *t, const struct tag *tg, redisReply *r)
{
	int ok = tg->kind == T_GROUP ? !is_error(r, NULL) || is_error(r, "BUSYGROUP")
				     : !is_error(r, NULL);
	if (!ok) {
		/* Said once, then now and then while it keeps failing. */
		if (!(t->connect_failures % 50))
			log_error(t, tg->kind == T_GROUP ? "XGROUP CREATE" : "AUTH",
				  r);
		freeReplyObject(r);
		return -EACCES; /* reconnect later, with backoff */
	}
	if (tg->kind == T_GROUP) {
		t->group_ready = 1;
		t->backoff_ns = 0;
		t->connect_failures = 0;
		if (t->ever_connected)
			STAT_ADD(t, reconnects, 1);
		t->ever_connected = 1;
		blog(0, "tracka %s: connected to Redis %s:%u (%s), stream %s "
			"group %s consumer %s",
		     t->q->conf.name, t->host, t->port, rconn_kind(t->rc),
		     t->stream, t->group, t->consumer);
	}
	freeReplyObject(r);
	return 0;
}

/* Dispatch one reply; r is owned by the callee. */
static int on_reply(struct tracka *t, const struct tag *tg, redisReply *r)
{
	switch (tg->kind) {
	case T_AUTH:
	case T_GROUP:
		return on_setup(t, tg, r);
	case T_READ:
	case T_RESCAN:
		return on_read(t, r, tg->kind == T_RESCAN);
	case T_CLAIM:
		return on_claim(t, r);
	case T_CHECK:
		on_check(t, tg, r);
		return 0;
	case T_FETCH:
		return on_fetch(t, tg, r);
	case T_RESULT:
	case T_DLQ:
		on_written(t, tg, r);
		return 0;
	case T_XACK:
		on_xack(t, tg, r);
		return 0;
	}
	freeReplyObject(r);
	return -EPROTO;
}

static int replies(struct tracka *t)
{
	redisReply *r;
	int rc;
	while ((rc = rconn_reply(t->rc, &r)) == 1) {
		struct tag tg;
		if (!t->tlen) {
			freeReplyObject(r);
			return -EPROTO; /* a reply nobody asked for */
		}
		tg = tag_pop(t);
		if ((rc = on_reply(t, &tg, r)))
			return rc;
	}
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Reading, claiming, connecting                                            */
/* ------------------------------------------------------------------------ */

static int draining(const struct tracka *t)
{
	return __atomic_load_n(&t->stop, __ATOMIC_ACQUIRE);
}

static int send_read(struct tracka *t, uint32_t count, int rescan)
{
	struct tag tg = { rescan ? T_RESCAN : T_READ, 0, 0, NULL };
	/* Block only when nothing is in flight here: a blocked read holds
	 * back every command pipelined after it, results included. */
	int block = !rescan && t->w.held == 0 && !t->tlen &&
		    !rconn_unsent(t->rc) && t->block_ms;
	int rc = args_reserve(&t->a, 12);
	if (rc)
		return rc;
	args_reset(&t->a);
	arg_str(&t->a, "XREADGROUP");
	arg_str(&t->a, "GROUP");
	arg_str(&t->a, t->group);
	arg_str(&t->a, t->consumer);
	arg_str(&t->a, "COUNT");
	arg_u64(&t->a, count);
	if (block) {
		arg_str(&t->a, "BLOCK");
		arg_u64(&t->a, t->block_ms);
	}
	arg_str(&t->a, "STREAMS");
	arg_str(&t->a, t->stream);
	arg_str(&t->a, rescan ? t->rescan_from : ">");
	t->read_out = 1;
	return send_cmd(t, &tg);
}

static int send_claim(struct tracka *t, uint32_t count)
{
	struct tag tg = { T_CLAIM, 0, 0, NULL };
	int rc = args_reserve(&t->a, 8);
	if (rc)
		return rc;
	args_reset(&t->a);
	arg_str(&t->a, "XAUTOCLAIM");
	arg_str(&t->a, t->stream);
	arg_str(&t->a, t->group);
	arg_str(&t->a, t->consumer);
	arg_u64(&t->a, t->claim_idle_ms);
	arg_str(&t->a, t->claim_cursor);
	arg_str(&t->a, "COUNT");
	arg_u64(&t->a, count);
	t->claim_out = 1;
	return send_cmd(t, &tg);
}

/* Ask for more entries when there is room for them. */
static int schedule_reads(struct tracka *t, uint64_t now)
{
	uint32_t room = win_room(&t->w), count;
	int rc;
	if (!t->group_ready || draining(t) || t->intake_closed || t->bhead ||
	    t->read_out || t->claim_out)
		return 0;
	/* Wait for room for a whole batch rather than read in dribs (the
	 * whole window when it is smaller than a batch). */
	if (!room || (room < t->batch && t->w.held))
		return 0;
	count = room < t->batch ? room : t->batch;
	/* A reply is held whole until fed: bound it to about READ_BYTES_MAX
	 * of payload even with huge slots. */
	if (count > READ_BYTES_MAX / t->r->hdr->slot_bytes)
		count = READ_BYTES_MAX / t->r->hdr->slot_bytes ?
			READ_BYTES_MAX / t->r->hdr->slot_bytes : 1;
	if (t->rescanning)
		return now < t->next_read_ns ? 0 : send_read(t, count, 1);
	if (now >= t->next_claim_ns && (rc = send_claim(t, count)))
		return rc;
	if (t->claim_out || now < t->next_read_ns)
		return 0;
	return send_read(t, count, 0);
}

/* Forget everything that depended on the lost connection.  Entries in the
 * ring stay (their results are written once connected again); entries
 * between the ring and their ack are let go: they are still pending in
 * Redis and come back when the own pending list is re-read. */
static void connection_lost(struct tracka *t, int err)
{
	/* A session that never got going (refused AUTH, a key of the wrong
	 * type) fails again at once: back off as for a failed connect, and
	 * say so only now and then. */
	if (!t->group_ready) {
		t->backoff_ns = t->backoff_ns ? t->backoff_ns * 2 : BACKOFF_MIN_NS;
		if (t->backoff_ns > BACKOFF_MAX_NS)
			t->backoff_ns = BACKOFF_MAX_NS;
	}
	if (t->group_ready || !t->connect_failures++ ||
	    !(t->connect_failures % 50))
		blog(0, "tracka %s: lost Redis %s:%u: %s; reconnecting",
		     t->q->conf.name, t->host, t->port, gpuq_strerror(err));
	while (t->bhead) {
		struct batch *b = t->bhead;
		t->bhead = b->nextb;
		batch_free(b);
	}
	t->btail = NULL;
	t->tlen = 0;
	t->thead = 0;
	for (uint64_t s = t->w.tail; s < t->w.head; s++) {
		struct ta_ent *e = win_ent(&t->w, s);
		if (e->state != E_FREE && e->state != E_RING)
			win_release(&t->w, s);
	}
	t->ahead = t->asent = t->atail = 0;
	t->rtail = t->rsent = t->rhead = 0;
	rconn_close(t->rc);
	t->next_connect_ns = ipc_now_ns() +
			     (t->group_ready ? BACKOFF_MIN_NS : t->backoff_ns);
	t->group_ready = t->read_out = t->claim_out = 0;
}

static int start_session(struct tracka *t)
{
	int rc = 0;
	if (t->password[0]) {
		const char *argv[] = { "AUTH", t->password };
		rc = simple_cmd(t, T_AUTH, 2, argv);
	}
	if (!rc)
		rc = send_group_create(t);
	/* Re-read our own pending entries first: what an earlier run (or
	 * connection) took and never acknowledged. */
	t->rescanning = 1;
	snprintf(t->rescan_from, sizeof(t->rescan_from), "0");
	snprintf(t->claim_cursor, sizeof(t->claim_cursor), "0-0");
	t->next_read_ns = 0;
	return rc;
}

static void sleep_ns(uint64_t ns)
{
	struct timespec ts = { (time_t)(ns / 1000000000ull),
			       (long)(ns % 1000000000ull) };
	nanosleep(&ts, NULL);
}

static void try_connect(struct tracka *t)
{
	uint64_t now = ipc_now_ns();
	int rc;
	if (now < t->next_connect_ns) {
		uint64_t d = t->next_connect_ns - now;
		sleep_ns(d < 10 * MS ? d : 10 * MS);
		return;
	}
	rc = rconn_connect(t->rc, t->host, t->port, CONNECT_TIMEOUT_MS);
	if (!rc)
		rc = start_session(t);
	if (rc) {
		if (!t->connect_failures++ || !(t->connect_failures % 50))
			blog(0, "tracka %s: Redis %s:%u: %s (attempt %" PRIu64 ")",
			     t->q->conf.name, t->host, t->port,
			     rc == -ENOENT ? "host name does not resolve"
					   : gpuq_strerror(rc),
			     t->connect_failures);
		rconn_close(t->rc);
		t->backoff_ns = t->backoff_ns ? t->backoff_ns * 2 : BACKOFF_MIN_NS;
		if (t->backoff_ns > BACKOFF_MAX_NS)
			t->backoff_ns = BACKOFF_MAX_NS;
		t->next_connect_ns = now + t->backoff_ns;
		return;
	}
}

/* ------------------------------------------------------------------------ */
/* The thread                                                               */
/* ------------------------------------------------------------------------ */

static void log_stats(struct tracka *t, int level, const char *what)
{
	const struct tracka_stats *s = &t->st;
	blog(level, "tracka %s: %s: read %" PRIu64 " enqueued %" PRIu64
		    " results %" PRIu64 " dead-lettered %" PRIu64 " acked %" PRIu64
		    " redelivered %" PRIu64 " claimed %" PRIu64
		    " skipped-held %" PRIu64 " reconnects %" PRIu64
		    " write-errors %" PRIu64 " full-waits %" PRIu64,
	     t->q->conf.name, what, s->read, s->enqueued, s->results,
	     s->dead_lettered, s->acked, s->redelivered, s->claimed,
	     s->skipped_held, s->reconnects, s->write_errors, s->full_waits);
}

static void maybe_log(struct tracka *t, uint64_t now)
{
	if (now - t->last_log_ns < STATS_LOG_NS)
		return;
	t->last_log_ns = now;
	if (memcmp(&t->st, &t->logged, sizeof(t->st))) {
		log_stats(t, 1, "progress");
		t->logged = t->st;
	}
}

/* 1 once a drain has nothing left to finish. */
static int drained(struct tracka *t)
{
	return !t->in_ring && !t->tlen && t->ahead == t->atail &&
	       !rconn_unsent(t->rc);
}

static uint64_t wait_us(const struct tracka *t)
{
	if (t->in_ring || (t->bhead && !t->bhead->checks))
		return WAIT_RING_US;
	return WAIT_IDLE_US;
}

/* One round: results out, entries in, commands sent, replies handled. */
static int step(struct tracka *t)
{
	uint64_t now = ipc_now_ns();
	int rc;
	if ((rc = harvest(t)) || (rc = feed(t)) ||
	    (rc = schedule_reads(t, now)) || (rc = flush_acks(t)))
		return rc;
	if ((rc = rconn_io(t->rc, wait_us(t))))
		return rc;
	if ((rc = replies(t)))
		return rc;
	/* Replies may have confirmed writes: ack them in this round. */
	if ((rc = flush_acks(t)))
		return rc;
	maybe_log(t, now);
	return 0;
}

static void drop_batches(struct tracka *t)
{
	/* Entries read but not yet in the ring stay pending in Redis. */
	while (t->bhead && !t->bhead->checks) {
		struct batch *b = t->bhead;
		t->bhead = b->nextb;
		if (!t->bhead)
			t->btail = NULL;
		batch_free(b);
	}
}

static void *tracka_main(void *arg)
{
	struct tracka *t = arg;
	for (;;) {
		int stop = draining(t);
		if (stop) {
			drop_batches(t);
			if (drained(t) || !rconn_connected(t->rc) ||
			    ipc_now_ns() >= __atomic_load_n(&t->deadline_ns,
							     __ATOMIC_ACQUIRE))
				break;
		}
		if (!rconn_connected(t->rc)) {
			try_connect(t);
			continue;
		}
		int rc = step(t);
		if (rc)
			connection_lost(t, rc);
	}
	log_stats(t, 0, "stopped");
	return NULL;
}

/* ------------------------------------------------------------------------ */
/* Lifecycle                                                                */
/* ------------------------------------------------------------------------ */

int tracka_bound(const struct bqueue *q)
{
	return q->conf.redis.stream[0] != 0;
}

static void resolve_config(struct tracka *t, const struct tracka_config *c,
			   const char *queue)
{
	char host[64] = "gpuqd";
	gethostname(host, sizeof(host) - 1);
	snprintf(t->host, sizeof(t->host), "%s", c->host[0] ? c->host : "127.0.0.1");
	t->port = (uint16_t)c->port;
	snprintf(t->password, sizeof(t->password), "%s", c->password);
	snprintf(t->stream, sizeof(t->stream), "%s", c->stream);
	snprintf(t->group, sizeof(t->group), "%s", c->group[0] ? c->group : "gpuq");
	if (c->consumer[0])
		snprintf(t->consumer, sizeof(t->consumer), "%s", c->consumer);
	else
		snprintf(t->consumer, sizeof(t->consumer), "%.60s-%.30s", host,
			 queue);
	if (c->result_stream[0])
		snprintf(t->result, sizeof(t->result), "%s", c->result_stream);
	else
		snprintf(t->result, sizeof(t->result), "%s:results", c->stream);
	if (c->dlq_stream[0])
		snprintf(t->dlq, sizeof(t->dlq), "%s", c->dlq_stream);
	else
		snprintf(t->dlq, sizeof(t->dlq), "%s:dlq", c->stream);
	t->batch = c->batch ? c->batch : 256;
	t->block_ms = c->block_ms;
	t->max_deliv = c->max_deliveries ? c->max_deliveries : 1;
	t->claim_idle_ms = c->claim_idle_ms ? c->claim_idle_ms : 30000;
	t->result_batch = c->result_batch ? c->result_batch : 1;
}

static void tracka_free(struct tracka *t)
{
	drop_batches(t);
	while (t->bhead) {
		struct batch *b = t->bhead;
		t->bhead = b->nextb;
		batch_free(b);
	}
	rconn_free(t->rc);
	win_fini(&t->w);
	free(t->tags);
	free(t->ackq);
	free(t->rq);
	free(t->rbuf);
	free(t->rfield);
	free(t->rnum);
	free(t->ids);
	free(t->a.v);
	free(t->a.l);
	free(t);
}

int tracka_start(struct bqueue *q, int force_epoll, struct tracka **out)
{
	struct tracka *t = calloc(1, sizeof(*t));
	int rc = -ENOMEM;
	if (!t)
		return -ENOMEM;
	t->q = q;
	t->r = &q->r;
	t->client = UINT32_MAX;
	t->deadline_ns = UINT64_MAX;
	resolve_config(t, &q->conf.redis, q->conf.name);
	if (!t->stream[0]) {
		rc = GPUQ_ECONFIG;
		goto fail;
	}
	if ((rc = win_init(&t->w, q->r.hdr->cq_capacity)))
		goto fail;
	rc = -ENOMEM;
	t->ackq = calloc(t->w.cap, sizeof(*t->ackq));
	t->ids = calloc(XACK_MAX_IDS, sizeof(*t->ids));
	t->rq = calloc(t->w.cap, sizeof(*t->rq));
	t->rfield = calloc(t->result_batch, sizeof(*t->rfield));
	t->rnum = calloc(t->result_batch, sizeof(*t->rnum));
	if (q->r.hdr->cq_stamped)
		t->rbuf = malloc((size_t)t->w.cap * q->r.hdr->result_bytes + 1);
	if (!t->ackq || !t->ids || !t->rq || !t->rfield || !t->rnum ||
	    (q->r.hdr->cq_stamped && !t->rbuf))
		goto fail;
	for (uint32_t i = 0; i < t->result_batch; i++) {
		snprintf(t->rfield[i][0], sizeof(t->rfield[i][0]), "src.%u", i);
		snprintf(t->rfield[i][1], sizeof(t->rfield[i][1]), "result.%u", i);
		snprintf(t->rfield[i][2], sizeof(t->rfield[i][2]), "attempts.%u", i);
	}
	if ((rc = rconn_new(&t->rc, force_epoll)))
		goto fail;
	if ((rc = bqueue_attach_internal(q, &t->client)))
		goto fail;
	t->me = &q->r.clients[t->client];
	rc = -pthread_create(&t->th, NULL, tracka_main, t);
	if (rc) {
		q->internal_client = -1;
		bqueue_detach(q, t->client);
		goto fail;
	}
	*out = t;
	return 0;
fail:
	tracka_free(t);
	return rc;
}

void tracka_stop(struct tracka *t, int timeout_ms)
{
	if (!t)
		return;
	__atomic_store_n(&t->deadline_ns,
			 ipc_now_ns() + (uint64_t)timeout_ms * MS,
			 __ATOMIC_RELEASE);
	__atomic_store_n(&t->stop, 1, __ATOMIC_RELEASE);
	pthread_join(t->th, NULL);
	t->q->internal_client = -1;
	bqueue_detach(t->q, t->client);
	tracka_free(t);
}

void tracka_stats_get(const struct tracka *t, struct tracka_stats *o)
{
	const uint64_t *src = (const uint64_t *)&t->st;
	uint64_t *dst = (uint64_t *)o;
	for (size_t i = 0; i < sizeof(*o) / sizeof(uint64_t); i++)
		dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
}

const char *tracka_consumer(const struct tracka *t)
{
	return t->consumer;
}
