/*
 * sys_cuda.c - baseline (b), the predecessor's per-message cudaMemcpyAsync
 * design (baseline_cuda.cu), as a system for run_system().  Without CUDA
 * in the build, or without a GPU at run time, it reports "not available".
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>

#include "bench/bench.h"

#ifdef HAVE_CUDA
#include "bench/baseline_cuda.h"

struct cctx {
	const struct workload *w;
	struct cudabase *b;
	struct payload pl;
};

/* The CUDA context is created here, in the child: CUDA is not fork-safe,
 * and the parent never touches it. */
static int c_open(const struct run_env *e, int idx, void **out,
		  struct proc_result *o)
{
	struct cctx *c = calloc(1, sizeof(*c));
	struct cudabase_conf conf;
	if (!c)
		return -ENOMEM;
	*out = c;
	c->w = e->w;
	if (payload_init(&c->pl, e->w->handler, e->w->size, idx))
		return -ENOMEM;
	conf.handler = e->w->handler;
	conf.size = e->w->size;
	conf.window = e->w->window;
	conf.fill = payload_fill;
	conf.fill_ctx = &c->pl;
	return cudabase_open(&conf, &c->b, o->what, sizeof(o->what));
}

static int c_run(void *ctx, const struct loop_spec *ls, struct proc_result *o,
		 uint64_t *end_ns)
{
	struct cctx *c = ctx;
	struct loop_port port = { cudabase_send, cudabase_poll, c->b };
	struct loop_spec s = *ls;
	if (c->w->verify) {
		s.check = payload_check;
		s.check_ctx = &c->pl;
	}
	return loop_run(&port, &s, o, end_ns);
}

static void c_close(void *ctx)
{
	struct cctx *c = ctx;
	cudabase_close(c->b);
	payload_free(&c->pl);
	free(c);
}

static const struct sys_ops cuda_ops = {
	.open = c_open, .run = c_run, .close = c_close,
};

int sys_cuda_run(const struct workload *w, struct sys_result *r,
		 const char *label)
{
	return run_system(SYS_CUDA, w, &cuda_ops, NULL, 0, r, label);
}
#else
int sys_cuda_run(const struct workload *w, struct sys_result *r,
		 const char *label)
{
	(void)w;
	(void)label;
	sys_result_none(r, SYS_CUDA, ST_NA, "built without CUDA");
	return 0;
}
#endif
