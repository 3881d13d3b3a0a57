/* drive.c - gpuq as a port of the timed loop. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bench/drive.h"

struct gport {
	gpuq_queue *q;
	const struct drive_spec *s;
	gpuq_queue_info info;
	uint64_t id0;  /* id of seq 0: a handle's ids are consecutive */
	int have_id0;
	uint8_t *stage;
	gpuq_iov *iov;
	uint32_t *lens;
	uint64_t *ids;
	gpuq_completion comp[LOOP_POLL_MAX];
};

/* A full ring or completion area is "not now", not an error. */
static int soft(int rc)
{
	return rc == GPUQ_EFULL || rc == GPUQ_ECQFULL ? 0 : rc;
}

static int note_ids(struct gport *g, uint64_t seq, uint64_t first_id)
{
	if (!g->have_id0) {
		g->id0 = first_id - seq;
		g->have_id0 = 1;
	}
	return first_id - g->id0 == seq ? 0 : -EPROTO;
}

/* Copying path: fill a staging area, one enqueue_batch call. */
static int send_copy(struct gport *g, uint64_t seq, uint32_t k)
{
	uint32_t slot = g->info.slot_bytes;
	int n;
	for (uint32_t i = 0; i < k; i++) {
		uint8_t *buf = g->stage + (size_t)i * slot;
		g->iov[i].data = buf;
		g->iov[i].len = g->s->fill(g->s->ctx, seq + i, buf, slot);
	}
	n = gpuq_enqueue_batch(g->q, g->iov, k, g->ids, 0);
	if (n > 0 && note_ids(g, seq, g->ids[0]))
		return -EPROTO;
	return n;
}

/* Zero-copy path: fill the loaned slots in place. */
static int send_loan(struct gport *g, uint64_t seq, uint32_t k)
{
	gpuq_loan loan;
	int rc = gpuq_reserve(g->q, k, &loan, 0);
	if (rc)
		return rc;
	for (uint32_t i = 0; i < k; i++)
		g->lens[i] = (uint32_t)g->s->fill(g->s->ctx, seq + i,
						  gpuq_loan_slot(g->q, &loan, i),
						  loan.slot_bytes);
	rc = gpuq_commit(g->q, &loan, g->lens);
	if (rc)
		return rc;
	return note_ids(g, seq, loan.first_id) ? -EPROTO : (int)k;
}

static int gsend(void *ctx, uint64_t seq, uint32_t k, const uint64_t *stamp,
		 struct proc_result *o)
{
	struct gport *g = ctx;
	int n;
	(void)stamp;
	n = soft(g->s->zero_copy ? send_loan(g, seq, k) : send_copy(g, seq, k));
	if (n < 0)
		loop_note(o, n == -EPROTO ? "message ids not consecutive"
					  : gpuq_strerror(n), seq);
	return n;
}

static int gpoll(void *ctx, struct loop_done *d, uint32_t max,
		 struct proc_result *o)
{
	struct gport *g = ctx;
	int n = gpuq_poll(g->q, g->comp, max < LOOP_POLL_MAX ? max : LOOP_POLL_MAX);
	if (n < 0) {
		loop_note(o, gpuq_strerror(n), 0);
		return n;
	}
	for (int i = 0; i < n; i++) {
		d[i].seq = g->comp[i].id - g->id0;
		d[i].status = g->comp[i].status;
		d[i].len = g->comp[i].len;
		d[i].res = g->comp[i].result;
	}
	return n;
}

static int gport_init(struct gport *g, gpuq_queue *q,
		      const struct drive_spec *s, uint32_t batch)
{
	memset(g, 0, sizeof(*g));
	g->q = q;
	g->s = s;
	gpuq_queue_info_get(q, &g->info);
	g->stage = malloc((size_t)batch * g->info.slot_bytes);
	g->iov = calloc(batch, sizeof(*g->iov));
	g->lens = calloc(batch, sizeof(*g->lens));
	g->ids = calloc(batch, sizeof(*g->ids));
	return g->stage && g->iov && g->lens && g->ids ? 0 : -ENOMEM;
}

static void gport_free(struct gport *g)
{
	free(g->stage);
	free(g->iov);
	free(g->lens);
	free(g->ids);
}

int drive_until(gpuq_queue *q, const struct drive_spec *s,
		struct proc_result *o, uint64_t *end_ns)
{
	struct gport *g = malloc(sizeof(*g));
	struct loop_port port = { gsend, gpoll, g };
	struct loop_spec ls = {
		.count = s->count, .start_ns = s->start_ns, .stop_ns = s->stop_ns,
		.rate = s->rate, .batch = s->batch ? s->batch : 1,
		.window = s->window, .stall_ms = s->stall_ms, .spin = s->spin,
		.check = s->check,
		.check_ctx = s->ctx, .lat = s->lat, .progress = s->progress,
	};
	gpuq_queue_info info;
	int rc;
	if (!g)
		return -ENOMEM;
	gpuq_queue_info_get(q, &info);
	/* The library refuses more than cq_capacity unread results. */
	if (!ls.window || ls.window > info.cq_capacity)
		ls.window = info.cq_capacity;
	if (ls.batch > ls.window)
		ls.batch = ls.window;
	if (s->zero_copy && ls.batch > info.capacity)
		ls.batch = info.capacity;
	rc = gport_init(g, q, s, ls.batch);
	if (!rc)
		rc = loop_run(&port, &ls, o, end_ns);
	gport_free(g);
	free(g);
	return rc;
}

int drive(gpuq_queue *q, const struct drive_spec *s, struct proc_result *o)
{
	return drive_until(q, s, o, NULL);
}
