/*
 * queue_table.c - a queue's hash tables (design.md §15): the handler-state
 * table (table_slots) and the exactly-once records (exactly_once), and the
 * sweep that expires those records once their window has passed.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "broker/broker.h"
#include "broker/handlers.h"

/* Default dedupe table: room for the keys of four rings' worth of
 * messages, and never tiny. */
#define DEDUPE_MIN_SLOTS 65536u

uint64_t bqueue_table_bytes(const struct gpuq_kvt *t)
{
	return gpuq_kvt_slot_bytes(t->nbuckets, t->value_bytes) +
	       gpuq_kvt_lock_bytes(t->nbuckets);
}

static double table_mib(const struct gpuq_kvt *t)
{
	return (double)bqueue_table_bytes(t) / (1024.0 * 1024.0);
}

int bqueue_tables_create(struct bqueue *q, uint32_t result_bytes, uint32_t kind)
{
	const struct queue_config *c = &q->conf;
	int rc;
	if ((c->table_slots || c->exactly_once) && kind != IPC_BACKEND_CPU) {
		blog(0, "queue %s: hash tables (table_slots, exactly_once) are not "
			"available on the %s backend yet; use backend = cpu",
		     c->name, kind == IPC_BACKEND_CUDA ? "cuda" : "this");
		return GPUQ_EBACKEND;
	}
	if (c->table_slots) {
		rc = gpuq_kvt_alloc(&q->table, c->table_slots,
				    c->table_value_bytes);
		if (rc)
			return rc;
		blog(1, "queue %s: handler table of %llu slots x %u value bytes "
			"(%.1f MiB)",
		     c->name,
		     (unsigned long long)(q->table.nbuckets * GPUQ_KVT_BUCKET),
		     c->table_value_bytes, table_mib(&q->table));
	}
	if (c->exactly_once) {
		uint64_t n = c->dedupe_slots ? c->dedupe_slots
					     : 4ull * c->capacity;
		if (!c->dedupe_slots && n < DEDUPE_MIN_SLOTS)
			n = DEDUPE_MIN_SLOTS;
		rc = gpuq_kvt_alloc(&q->once, n,
				    gpuq_once_value_bytes(result_bytes));
		if (rc)
			return rc;
		q->once_window_ns = (uint64_t)c->dedupe_window_ms * 1000000ull;
		blog(1, "queue %s: exactly-once records: %llu slots, window %u ms "
			"(%.1f MiB)",
		     c->name,
		     (unsigned long long)(q->once.nbuckets * GPUQ_KVT_BUCKET),
		     c->dedupe_window_ms, table_mib(&q->once));
	}
	return 0;
}

void bqueue_tables_destroy(struct bqueue *q)
{
	gpuq_kvt_free(&q->table);
	gpuq_kvt_free(&q->once);
}

/* Expire the record in slot i if its window has passed.  The key is taken
 * (and its lock) like any writer's, so a record being used is never
 * pulled out from under a worker. */
static int expire_slot(struct bqueue *q, uint64_t i, uint64_t now_ns)
{
	struct gpuq_kvt_hold h;
	struct gpuq_once_rec rec;
	uint8_t key[GPUQ_KVT_KEY_MAX], *val;
	uint32_t klen, vlen;
	int created;
	if (gpuq_kvt_slot_key(&q->once, i, key, &klen) ||
	    gpuq_kvt_acquire(&q->once, key, klen, 0, 0, &h, &val, &vlen,
			     &created))
		return 0;
	memcpy(&rec, val, sizeof(rec));
	/* done_ns 0: a run in progress holds the lock, so this is one that
	 * left nothing behind; it is free to go as well. */
	if (!gpuq_once_live(&rec, now_ns, q->once_window_ns)) {
		gpuq_kvt_release_delete(&q->once, &h);
		return 1;
	}
	gpuq_kvt_release(&q->once, &h, vlen);
	return 0;
}

/* A slice of the dedupe table per tick, so that a full pass over a large
 * table never stalls the loop. */
#define SWEEP_SLOTS 8192u

uint64_t bqueue_tables_sweep(struct bqueue *q, uint64_t now_ns)
{
	uint64_t slots = q->once.nbuckets * GPUQ_KVT_BUCKET, n = 0;
	if (!q->once.slots || !q->once_window_ns)
		return 0;
	for (uint32_t k = 0; k < SWEEP_SLOTS && k < slots; k++) {
		n += (uint64_t)expire_slot(q, q->sweep_pos, now_ns);
		q->sweep_pos = (q->sweep_pos + 1) % slots;
	}
	return n;
}
