/*
 * run.c - one system, one workload point: fork the processes, gate them,
 * time them, gather their figures.  The orchestration lives here and in
 * procs.c; the timed loop is loop.c; nothing here runs inside it.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "bench/bench.h"
#include "libclient/gpuq.h"

/* Long enough for a few CUDA contexts to be created side by side. */
#define GATE_MS 60000

const char *const sys_names[SYS_COUNT] = { "gpuq", "uds", "redis", "cuda" };
int bench_progress;

void sys_result_none(struct sys_result *r, int sys, int status,
		     const char *fmt, ...)
{
	va_list ap;
	memset(r, 0, sizeof(*r));
	r->sys = sys;
	r->status = status;
	va_start(ap, fmt);
	vsnprintf(r->reason, sizeof(r->reason), fmt, ap);
	va_end(ap);
}

void sys_result_free(struct sys_result *r)
{
	free(r->proc);
	free(r->lat);
	r->proc = NULL;
	r->lat = NULL;
}

/* Untimed: gets caches, page tables and connections warm.  Always closed
 * loop and short (w->warmup messages, at most w->warmup_s). */
static int warm_up(const struct run_env *e, void *ctx, struct proc_result *o)
{
	const struct workload *w = e->w;
	struct proc_result scratch;
	struct loop_spec ls = { .count = w->warmup, .batch = w->batch,
				.window = w->window, .spin = w->spin };
	int rc;
	if (!w->warmup)
		return 0;
	memset(&scratch, 0, sizeof(scratch));
	ls.stop_ns = procs_now_ns() + (uint64_t)(w->warmup_s * 1e9);
	rc = e->ops->run(ctx, &ls, &scratch, NULL);
	if (rc)
		snprintf(o->what, sizeof(o->what), "warm-up: %.80s", scratch.what);
	return rc;
}

static int timed(const struct run_env *e, void *ctx, int idx, uint64_t t_go,
		 struct proc_result *o)
{
	const struct workload *w = e->w;
	struct bench_slot *slot = &e->sh->slot[idx];
	struct loop_spec ls = { .count = w->count, .batch = w->batch,
				.window = w->window, .start_ns = t_go,
				.progress = &slot->progress, .spin = w->spin };
	uint64_t end = t_go, stop = 0;
	int rc;
	if (w->latency && !e->ops->lat_by_helper)
		ls.lat = &slot->lat;
	if (w->rate > 0) {
		/* Producers share the offered rate, their schedules
		 * interleaved. */
		ls.rate = w->rate / w->producers;
		ls.start_ns += (uint64_t)((double)idx * 1e9 / w->rate);
	}
	if (w->duration_s > 0)
		stop = t_go + (uint64_t)(w->duration_s * 1e9);
	if (e->sys != SYS_GPUQ && w->max_s > 0) {
		uint64_t cap = t_go + (uint64_t)(w->max_s * 1e9);
		stop = stop && stop < cap ? stop : cap;
	}
	ls.stop_ns = stop;
	rc = e->ops->run(ctx, &ls, o, &end);
	/* Every producer counts from the common start. */
	o->seconds = end > t_go ? (double)(end - t_go) / 1e9 : 0;
	return rc;
}

static int producer_main(const struct run_env *e, int idx, struct proc_result *o)
{
	void *ctx = NULL;
	uint64_t t = procs_now_ns(), t_go;
	int rc = e->ops->open(e, idx, &ctx, o);
	o->attach_us = (double)(procs_now_ns() - t) / 1e3;
	procs_gate_wait(&e->sh->ready, GATE_MS);
	if (!rc)
		rc = warm_up(e, ctx, o);
	t_go = procs_gate_wait(&e->sh->go, GATE_MS);
	if (!rc && !t_go) {
		snprintf(o->what, sizeof(o->what), "start gate timed out");
		rc = GPUQ_ETIMEDOUT;
	}
	if (!rc)
		rc = timed(e, ctx, idx, t_go, o);
	if (ctx)
		e->ops->close(ctx);
	__atomic_sub_fetch(&e->sh->producers_left, 1, __ATOMIC_ACQ_REL);
	return rc;
}

static int child_main(int idx, void *arg, struct proc_result *o)
{
	const struct run_env *e = arg;
	if (idx >= e->w->producers)
		return e->ops->helper(e, idx, o);
	return producer_main(e, idx, o);
}

struct tick_arg {
	const struct bench_shared *sh;
	int producers;
	const char *label;
};

static void tick(void *arg)
{
	const struct tick_arg *t = arg;
	uint64_t done = 0, go = procs_gate_opened(&t->sh->go);
	double el = go ? (double)(procs_now_ns() - go) / 1e9 : 0;
	for (int i = 0; i < t->producers; i++)
		done += __atomic_load_n(&t->sh->slot[i].progress, __ATOMIC_RELAXED);
	if (!go)
		fprintf(stderr, "\r\033[K%s: setting up", t->label);
	else
		fprintf(stderr, "\r\033[K%s: %.1f s, %llu done, %.3g msg/s",
			t->label, el, (unsigned long long)done,
			el > 0 ? (double)done / el : 0);
}

/* First problem of a process, for the report. */
static void proc_reason(char *buf, size_t cap, const char *role, int i,
			const struct proc_result *p)
{
	if (p->rc == -1 && !p->what[0] && WIFSIGNALED(p->exit_status))
		snprintf(buf, cap, "%s %d killed by signal %d", role, i,
			 WTERMSIG(p->exit_status));
	else if (p->rc == -1 && !p->what[0])
		snprintf(buf, cap, "%s %d exited without a result (status %d)",
			 role, i, WEXITSTATUS(p->exit_status));
	else if (p->what[0])
		snprintf(buf, cap, "%s %d: %s: %s", role, i,
			 gpuq_strerror(p->rc), p->what);
	else
		snprintf(buf, cap, "%s %d: %s", role, i, gpuq_strerror(p->rc));
}

static void fail(struct sys_result *r, const char *role, int i,
		 const struct proc_result *p)
{
	int na = p->rc == -ENODEV;
	if (r->status == ST_ERROR)
		return;
	if (na && r->status == ST_NA)
		return;
	r->status = na ? ST_NA : ST_ERROR;
	if (na)
		snprintf(r->reason, sizeof(r->reason), "%s", p->what);
	else
		proc_reason(r->reason, sizeof(r->reason), role, i, p);
}

static void aggregate(struct sys_result *r, const struct bench_shared *sh,
		      int latency)
{
	int n = r->producers + r->helpers;
	r->status = ST_OK;
	for (int i = 0; i < r->producers; i++) {
		const struct proc_result *p = &r->proc[i];
		r->messages += p->verified + p->bad;
		r->failed += p->failed;
		r->bad += p->bad;
		if (p->seconds > r->seconds)
			r->seconds = p->seconds;
		if (p->attach_us > r->setup_us_max)
			r->setup_us_max = p->attach_us;
		if (p->rc || !WIFEXITED(p->exit_status) || WEXITSTATUS(p->exit_status))
			fail(r, "producer", i, p);
	}
	for (int i = r->producers; i < n; i++)
		if (r->proc[i].rc || !WIFEXITED(r->proc[i].exit_status))
			fail(r, "helper", i - r->producers, &r->proc[i]);
	if (r->status == ST_OK && r->bad) {
		r->status = ST_ERROR;
		snprintf(r->reason, sizeof(r->reason), "%llu wrong results",
			 (unsigned long long)r->bad);
	}
	/* A duration run against a system that never moved ends "cleanly"
	 * with nothing done: that is a failure, not a rate of 0. */
	if (r->status == ST_OK && !r->messages) {
		r->status = ST_ERROR;
		snprintf(r->reason, sizeof(r->reason), "no message completed");
	}
	r->rate = r->seconds > 0 ? (double)r->messages / r->seconds : 0;
	if (!latency || !(r->lat = malloc(sizeof(*r->lat))))
		return;
	hist_init(r->lat);
	for (int i = 0; i < n; i++)
		hist_merge(r->lat, &sh->slot[i].lat);
}

int run_system(int sys, const struct workload *w, const struct sys_ops *ops,
	       void *arg, int helpers, struct sys_result *r, const char *label)
{
	int n = w->producers + helpers;
	size_t bytes = sizeof(struct bench_shared) + (size_t)n * sizeof(struct bench_slot);
	struct run_env e = { w, NULL, ops, arg, sys };
	struct tick_arg ta = { NULL, w->producers, label };
	memset(r, 0, sizeof(*r));
	r->sys = sys;
	r->producers = w->producers;
	r->helpers = helpers;
	r->proc = calloc((size_t)n, sizeof(*r->proc));
	e.sh = procs_shared(bytes);
	if (!r->proc || !e.sh) {
		procs_shared_free(e.sh, bytes);
		sys_result_free(r);
		sys_result_none(r, sys, ST_ERROR, "out of memory");
		return -ENOMEM;
	}
	procs_gate_init(&e.sh->ready, (uint32_t)n);
	procs_gate_init(&e.sh->go, (uint32_t)w->producers);
	e.sh->producers_left = (uint32_t)w->producers;
	e.sh->nprocs = (uint32_t)n;
	for (int i = 0; i < n; i++)
		hist_init(&e.sh->slot[i].lat);
	ta.sh = e.sh;
	procs_run_tick(n, child_main, &e, r->proc, bench_progress ? tick : NULL,
		       &ta, 250);
	if (bench_progress)
		fprintf(stderr, "\r\033[K");
	aggregate(r, e.sh, w->latency);
	procs_shared_free(e.sh, bytes);
	return r->status == ST_OK ? 0 : -1;
}
