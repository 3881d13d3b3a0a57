/* sys_gpuq.c - gpuq itself, through libgpuqclient and bench/drive.c. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "bench/bench.h"
#include "bench/drive.h"
#include "libclient/gpuq.h"

struct gctx {
	const struct workload *w;
	gpuq_client *c;
	gpuq_queue *q;
	struct payload pl;
};

/* A queue's client entries are quarantined for a moment after their
 * producers detach (design.md §6.3), so back-to-back runs can briefly see
 * GPUQ_ETOOMANY: wait for entries instead of failing the run. */
static int open_retry(gpuq_client *c, const char *name, gpuq_queue **q)
{
	struct timespec ts = { 0, 10 * 1000000L };
	int rc = 0;
	for (int i = 0; i < 500; i++) {
		rc = gpuq_open(c, name, q);
		if (rc != GPUQ_ETOOMANY)
			break;
		nanosleep(&ts, NULL);
	}
	return rc;
}

static int g_attach(struct gctx *g, struct proc_result *o)
{
	gpuq_queue_info info;
	int rc = gpuq_connect(g->w->socket, &g->c);
	if (rc) {
		snprintf(o->what, sizeof(o->what), "connect");
		return rc;
	}
	rc = open_retry(g->c, g->w->queue, &g->q);
	if (rc) {
		snprintf(o->what, sizeof(o->what), "open %s", g->w->queue);
		return rc;
	}
	gpuq_queue_info_get(g->q, &info);
	if (g->w->size > info.slot_bytes) {
		snprintf(o->what, sizeof(o->what),
			 "-z %u is larger than the queue's %u-byte slots",
			 g->w->size, info.slot_bytes);
		return GPUQ_ETOOBIG;
	}
	return 0;
}

static int g_open(const struct run_env *e, int idx, void **out,
		  struct proc_result *o)
{
	struct gctx *g = calloc(1, sizeof(*g));
	if (!g)
		return -ENOMEM;
	*out = g;
	g->w = e->w;
	if (payload_init(&g->pl, e->w->handler, e->w->size, idx))
		return -ENOMEM;
	return g_attach(g, o);
}

static int g_run(void *ctx, const struct loop_spec *ls, struct proc_result *o,
		 uint64_t *end_ns)
{
	struct gctx *g = ctx;
	struct drive_spec s = {
		.count = ls->count, .batch = ls->batch, .window = ls->window,
		.zero_copy = g->w->zero_copy, .fill = payload_fill,
		.check = g->w->verify ? payload_check : NULL, .ctx = &g->pl,
		.lat = ls->lat, .rate = ls->rate, .start_ns = ls->start_ns,
		.stop_ns = ls->stop_ns, .progress = ls->progress,
		.spin = ls->spin,
	};
	return drive_until(g->q, &s, o, end_ns);
}

static void g_close(void *ctx)
{
	struct gctx *g = ctx;
	gpuq_close(g->q);
	gpuq_disconnect(g->c);
	payload_free(&g->pl);
	free(g);
}

static const struct sys_ops gpuq_ops = {
	.open = g_open, .run = g_run, .close = g_close,
};

int sys_gpuq_run(const struct workload *w, struct sys_result *r,
		 const char *label)
{
	return run_system(SYS_GPUQ, w, &gpuq_ops, NULL, 0, r, label);
}
