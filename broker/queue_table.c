/*
 * queue_table.c - a queue's hash tables (design.md §15): the handler-state
 * table (table_slots) and the exactly-once records (exactly_once), and the
 * sweep that expires those records once their window has passed.  On the
 * CUDA backend the tables live in VRAM: here they only get their geometry,
 * and gpu/tables_cuda.cu allocates, sweeps and counts them.
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

/* Size one table: in host memory here, or only its geometry where the
 * backend keeps it in device memory (gpu/tables_cuda.cu allocates it). */
static int table_make(struct bqueue *q, struct gpuq_kvt *t, uint64_t slots,
		      uint32_t value_bytes)
{
	if (!q->tables_dev)
		return gpuq_kvt_alloc(t, slots, value_bytes);
	gpuq_kvt_geometry(t, slots, value_bytes);
	return 0;
}

int bqueue_tables_create(struct bqueue *q, uint32_t result_bytes, uint32_t kind)
{
	const struct queue_config *c = &q->conf;
	const char *where = kind == IPC_BACKEND_CUDA ? "VRAM" : "host memory";
	int rc;
	q->tables_dev = kind == IPC_BACKEND_CUDA;
	if (c->table_slots) {
		rc = table_make(q, &q->table, c->table_slots,
				c->table_value_bytes);
		if (rc)
			return rc;
		blog(1, "queue %s: handler table of %llu slots x %u value bytes "
			"(%.1f MiB of %s)",
		     c->name,
		     (unsigned long long)(q->table.nbuckets * GPUQ_KVT_BUCKET),
		     c->table_value_bytes, table_mib(&q->table), where);
	}
	if (c->exactly_once) {
		uint64_t n = c->dedupe_slots ? c->dedupe_slots
					     : 4ull * c->capacity;
		if (!c->dedupe_slots && n < DEDUPE_MIN_SLOTS)
			n = DEDUPE_MIN_SLOTS;
		rc = table_make(q, &q->once, n,
				gpuq_once_value_bytes(result_bytes));
		if (rc)
			return rc;
		q->once_window_ns = (uint64_t)c->dedupe_window_ms * 1000000ull;
		blog(1, "queue %s: exactly-once records: %llu slots, window %u ms "
			"(%.1f MiB of %s)",
		     c->name,
		     (unsigned long long)(q->once.nbuckets * GPUQ_KVT_BUCKET),
		     c->dedupe_window_ms, table_mib(&q->once), where);
	}
	return 0;
}

void bqueue_tables_destroy(struct bqueue *q)
{
	/* Device tables are the backend's, freed by its stop. */
	if (!q->tables_dev) {
		gpuq_kvt_free(&q->table);
		gpuq_kvt_free(&q->once);
	}
}

uint64_t bqueue_table_used(const struct bqueue *q, int once)
{
	if (q->tables_dev)
		return __atomic_load_n(&q->dev_used[once ? 1 : 0],
				       __ATOMIC_RELAXED);
	return gpuq_kvt_count(once ? &q->once : &q->table);
}

/* A slice of the dedupe table per tick, so that a full pass over a large
 * table never stalls the loop. */
#define SWEEP_SLOTS 8192u

uint64_t bqueue_tables_sweep(struct bqueue *q, uint64_t now_ns)
{
	uint64_t slots = q->once.nbuckets * GPUQ_KVT_BUCKET, n = 0;
	/* Device tables are swept on the device (backend tick). */
	if (q->tables_dev || !q->once.slots || !q->once_window_ns)
		return 0;
	for (uint32_t k = 0; k < SWEEP_SLOTS && k < slots; k++) {
		n += (uint64_t)gpuq_once_expire(&q->once, q->sweep_pos, now_ns,
						 q->once_window_ns);
		q->sweep_pos = (q->sweep_pos + 1) % slots;
	}
	return n;
}
