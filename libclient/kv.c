/*
 * kv.c - gpuq_kv_*: key-value operations on the broker's hash table, sent
 * as ordinary messages to a queue whose handler is kv.  Operations are
 * packed into messages (ipc/kvwire.h) as tightly as the slot and the
 * result room allow, a group of messages is enqueued one by one as each
 * is packed, and the replies are unpacked into the items.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "broker/kvtable.h" /* gpuq_kvt_hash */
#include "ipc/kvwire.h"
#include "libclient/gpuq.h"

/* Messages in flight per group: bounded by the handle's unread results. */
#define KV_GROUP_MAX 64
/* Most keys a group of puts or deletes remembers (see struct kv_seen). */
#define KV_SEEN_MAX 16384u

struct kv_msg {
	size_t first, n;  /* items [first, first + n) */
	size_t len;       /* request bytes */
	uint64_t id;
};

/*
 * The keys of the current group of a put or delete call, by hash, with
 * the message each went into.  A group's messages run in parallel, so a
 * key that comes again in a later message of the group ends the group:
 * its second operation goes out only after the first is done, and one
 * key's operations keep item order.  (Within a message the handler keeps
 * it.)  A hash shared by two keys only ends a group early.  Entries of
 * older groups are told apart by gen, so nothing is cleared between
 * groups.
 */
struct kv_seen {
	uint64_t hash;
	uint32_t gen, msg;
};

struct kv_call {
	gpuq_queue *q;
	enum gpuq_kvw_op op;
	gpuq_kv_item *items;
	size_t n;
	int timeout_ms;
	gpuq_queue_info info;
	uint32_t get_room; /* value bytes one reply can carry */
	uint8_t *req, *reply; /* one request, one reply */
	uint16_t *offs;       /* a message's offset table, being built */
	uint32_t req_max;     /* request bytes: the slot, as u16 offsets reach */
	struct kv_seen *seen; /* puts and deletes: seen_mask + 1 entries */
	uint32_t seen_mask, seen_n, gen;
	struct kv_msg msg[KV_GROUP_MAX];
};

/* Remember item it as going into message mi of this group; false (and
 * nothing remembered) if a key with its hash went into an earlier
 * message, or the group has remembered all it can. */
static int seen_add(struct kv_call *k, const gpuq_kv_item *it, uint32_t mi)
{
	uint64_t h;
	uint32_t i;
	if (!k->seen)
		return 1; /* gets: no hash on their hot path */
	if (k->seen_n >= (k->seen_mask + 1) / 2)
		return 0;
	h = gpuq_kvt_hash(it->key, it->klen);
	i = (uint32_t)h & k->seen_mask;
	for (; k->seen[i].gen == k->gen; i = (i + 1) & k->seen_mask)
		if (k->seen[i].hash == h && k->seen[i].msg != mi)
			return 0;
	k->seen[i] = (struct kv_seen){ h, k->gen, mi };
	k->seen_n++;
	return 1;
}

/* Room for the keys of one group of n items. */
static int seen_alloc(struct kv_call *k)
{
	uint32_t cap = 64;
	if (k->op == GPUQ_KVW_GET || k->n < 2)
		return 0; /* reads need no order; one item, no repeat */
	while (cap < 2 * KV_SEEN_MAX && cap < 2 * k->n)
		cap *= 2;
	k->seen = calloc(cap, sizeof(*k->seen));
	k->seen_mask = cap - 1;
	return k->seen ? 0 : -ENOMEM;
}

/* The op's vlen on the wire: a put's value length; for a get, the most
 * value bytes wanted back, no more than one reply can carry (the item's
 * vlen out still tells the value's full length); 0 for a delete. */
static uint16_t wire_vlen(const struct kv_call *k, const gpuq_kv_item *it)
{
	if (k->op == GPUQ_KVW_DEL)
		return 0;
	if (k->op == GPUQ_KVW_GET && it->vlen > k->get_room)
		return (uint16_t)k->get_room;
	return (uint16_t)it->vlen;
}

/* Pack items from *next into message mi of the group: 0; 1 when the
 * group must end before the next item (seen_add), with nothing packed; or
 * GPUQ_ETOOBIG when not even one item fits. */
static int pack(struct kv_call *k, size_t *next, uint32_t mi, uint8_t *buf)
{
	struct kv_msg *m = &k->msg[mi];
	size_t len = GPUQ_KVW_HDR, res = GPUQ_KVW_HDR;
	uint16_t nops = 0;
	m->first = *next;
	while (*next < k->n && nops < UINT16_MAX) {
		gpuq_kv_item *it = &k->items[*next];
		struct gpuq_kvw_op_hdr o = { (uint8_t)k->op, (uint8_t)it->klen,
					     wire_vlen(k, it) };
		size_t ob = gpuq_kvw_op_bytes(o.op, o.klen, o.vlen);
		size_t rb = gpuq_kvw_res_bytes(o.op, o.vlen);
		/* the op, and its offset and every earlier one's */
		if (len + ob + 2 * ((size_t)nops + 1) > k->req_max ||
		    res + rb > k->info.result_bytes)
			break;
		if (!seen_add(k, it, mi)) {
			if (!nops)
				return 1;
			break;
		}
		k->offs[nops] = (uint16_t)len;
		memcpy(buf + len, &o, sizeof(o));
		memcpy(buf + len + GPUQ_KVW_OP_HDR, it->key, it->klen);
		if (k->op == GPUQ_KVW_PUT && o.vlen)
			memcpy(buf + len + GPUQ_KVW_OP_HDR + it->klen, it->val,
			       o.vlen);
		len += ob;
		res += rb;
		nops++;
		(*next)++;
	}
	if (!nops)
		return GPUQ_ETOOBIG;
	buf[0] = GPUQ_KVW_VERSION;
	buf[1] = 0;
	memcpy(buf + 2, &nops, 2);
	memcpy(buf + len, k->offs, 2 * (size_t)nops); /* little-endian host */
	m->n = nops;
	m->len = len + 2 * (size_t)nops;
	return 0;
}

/* Unpack a reply of `len` bytes into the message's items: one record of
 * gpuq_kvw_res_bytes per item, in order. */
static int unpack(struct kv_call *k, const struct kv_msg *m, size_t len)
{
	const uint8_t *p = k->reply, *end = k->reply + len;
	uint16_t nops;
	if (len < GPUQ_KVW_HDR)
		return GPUQ_EPROTO;
	memcpy(&nops, p, 2);
	if (nops != m->n)
		return GPUQ_EPROTO;
	p += GPUQ_KVW_HDR;
	for (size_t i = 0; i < m->n; i++) {
		gpuq_kv_item *it = &k->items[m->first + i];
		struct gpuq_kvw_res_hdr r;
		uint16_t room = k->op == GPUQ_KVW_GET ? wire_vlen(k, it) : 0;
		if (end - p < GPUQ_KVW_RES_HDR + room)
			return GPUQ_EPROTO;
		memcpy(&r, p, sizeof(r));
		p += GPUQ_KVW_RES_HDR;
		if (r.n > room)
			return GPUQ_EPROTO;
		it->status = r.status;
		if (k->op == GPUQ_KVW_GET) {
			if (r.n)
				memcpy(it->val, p, r.n);
			it->vlen = r.status ? 0 : r.len;
		}
		p += room;
	}
	return 0;
}

/* Read the replies of the group's first nm messages into their items. */
static int read_group(struct kv_call *k, const uint64_t *ids, size_t nm)
{
	for (size_t i = 0; i < nm; i++) {
		size_t len = 0;
		int rc = gpuq_wait(k->q, ids[i], k->reply, k->info.result_bytes,
				   &len, k->timeout_ms);
		if (!rc)
			rc = unpack(k, &k->msg[i], len);
		if (rc)
			return rc; /* the rest stay unread on the handle */
	}
	return 0;
}

/* One group: up to KV_GROUP_MAX messages in flight, then their replies.
 * Each message is enqueued as soon as it is packed, so the broker works
 * on the first while the client packs the rest. */
static int run_group(struct kv_call *k, size_t *next)
{
	uint64_t ids[KV_GROUP_MAX];
	size_t nm = 0, cap = k->info.cq_capacity < KV_GROUP_MAX
				     ? k->info.cq_capacity
				     : KV_GROUP_MAX;
	int rc = 0, prc = 0;
	k->gen++;
	k->seen_n = 0;
	while (*next < k->n && nm < cap) {
		prc = pack(k, next, (uint32_t)nm, k->req);
		if (prc)
			break; /* 1: a repeated key, the rest in the next group */
		rc = gpuq_enqueue(k->q, k->req, k->msg[nm].len, &ids[nm],
				  k->timeout_ms);
		if (rc)
			return rc; /* those sent stay unread on the handle */
		nm++;
	}
	/* a pack error still reads what went out, so their items have
	 * their statuses and the handle holds no unread results */
	rc = read_group(k, ids, nm);
	return prc < 0 && !rc ? prc : rc;
}

static int kv_run(gpuq_queue *q, enum gpuq_kvw_op op, gpuq_kv_item *items,
		  size_t n, int timeout_ms)
{
	struct kv_call *k;
	size_t next = 0;
	int rc;
	if (!q || (!items && n))
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if (!items[i].key || items[i].klen > UINT8_MAX ||
		    (op != GPUQ_KVW_DEL && items[i].vlen > GPUQ_KVW_VALUE_MAX) ||
		    (op != GPUQ_KVW_DEL && items[i].vlen && !items[i].val))
			return -EINVAL;
	k = calloc(1, sizeof(*k));
	if (!k)
		return -ENOMEM;
	*k = (struct kv_call){ .q = q, .op = op, .items = items, .n = n,
			       .timeout_ms = timeout_ms };
	rc = gpuq_queue_info_get(q, &k->info);
	if (!rc && strcmp(k->info.handler, "kv"))
		rc = -EINVAL;
	if (rc)
		goto out;
	if (k->info.result_bytes > GPUQ_KVW_HDR + GPUQ_KVW_RES_HDR)
		k->get_room = k->info.result_bytes - GPUQ_KVW_HDR - GPUQ_KVW_RES_HDR;
	if (k->get_room > GPUQ_KVW_VALUE_MAX)
		k->get_room = GPUQ_KVW_VALUE_MAX;
	k->req = malloc(k->info.slot_bytes); /* one message, being packed */
	k->reply = malloc(k->info.result_bytes);
	/* offsets are u16: a request stays below 64 KiB */
	k->req_max = k->info.slot_bytes < UINT16_MAX ? k->info.slot_bytes
						      : UINT16_MAX;
	k->offs = malloc(k->req_max / (GPUQ_KVW_OP_HDR + 2) * sizeof(*k->offs));
	if (!k->req || !k->reply || !k->offs || seen_alloc(k)) {
		rc = -ENOMEM;
		goto out;
	}
	while (!rc && next < n)
		rc = run_group(k, &next);
out:
	free(k->seen);
	free(k->offs);
	free(k->req);
	free(k->reply);
	free(k);
	return rc;
}

int gpuq_kv_mget(gpuq_queue *q, gpuq_kv_item *items, size_t n, int timeout_ms)
{
	return kv_run(q, GPUQ_KVW_GET, items, n, timeout_ms);
}

int gpuq_kv_mput(gpuq_queue *q, gpuq_kv_item *items, size_t n, int timeout_ms)
{
	return kv_run(q, GPUQ_KVW_PUT, items, n, timeout_ms);
}

int gpuq_kv_mdelete(gpuq_queue *q, gpuq_kv_item *items, size_t n,
		    int timeout_ms)
{
	return kv_run(q, GPUQ_KVW_DEL, items, n, timeout_ms);
}

/* One item through kv_run; its status, or the call's error. */
static int kv_one(gpuq_queue *q, enum gpuq_kvw_op op, gpuq_kv_item *it,
		  int timeout_ms)
{
	int rc = kv_run(q, op, it, 1, timeout_ms);
	return rc ? rc : it->status;
}

int gpuq_kv_get(gpuq_queue *q, const void *key, size_t klen, void *val,
		size_t cap, size_t *vlen, int timeout_ms)
{
	gpuq_kv_item it = { key, (uint32_t)klen, 0, val, 0 };
	int rc;
	if (klen > UINT8_MAX || (cap && !val))
		return -EINVAL;
	it.vlen = cap > GPUQ_KVW_VALUE_MAX ? GPUQ_KVW_VALUE_MAX : (uint32_t)cap;
	rc = kv_one(q, GPUQ_KVW_GET, &it, timeout_ms);
	if (!rc && vlen)
		*vlen = it.vlen;
	return rc;
}

int gpuq_kv_put(gpuq_queue *q, const void *key, size_t klen, const void *val,
		size_t vlen, int timeout_ms)
{
	gpuq_kv_item it = { key, (uint32_t)klen, (uint32_t)vlen, (void *)val, 0 };
	if (klen > UINT8_MAX || vlen > GPUQ_KVW_VALUE_MAX)
		return -EINVAL;
	return kv_one(q, GPUQ_KVW_PUT, &it, timeout_ms);
}

int gpuq_kv_delete(gpuq_queue *q, const void *key, size_t klen,
		   int timeout_ms)
{
	gpuq_kv_item it = { key, (uint32_t)klen, 0, NULL, 0 };
	if (klen > UINT8_MAX)
		return -EINVAL;
	return kv_one(q, GPUQ_KVW_DEL, &it, timeout_ms);
}
