/*
 * gpuq-bench - the benchmark harness: gpuq against baselines, in one run.
 *
 *   gpuq-bench [-s SOCKET] [-q QUEUE] [-p PRODUCERS] [-n MESSAGES | -d SECONDS]
 *              [-z BYTES] [-b BATCH] [-w WINDOW] [-Z] [-r RATE]
 *              [--baseline LIST] [--redis HOST:PORT | --redis-spawn]
 *              [--sweep] [--svg FILE] [--json] ...     (--help for all)
 *
 * One point (the default): N producer processes start together on a gate
 * and send through QUEUE, then each requested baseline runs the same
 * workload.  --sweep runs the workload matrix instead (payload sizes,
 * producer counts, batch sizes, an open-loop latency point, failure rates).
 * See docs/benchmarking.md for the method.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/bench.h"
#include "bench/sys_tracka.h"
#include "bench/report.h"
#include "broker/handlers.h"
#include "libclient/gpuq.h"

#define MAX_LIST 16
#define MAX_FAIL 8
#define MAX_POINTS 64

struct opts {
	struct workload w;     /* the flags' workload */
	int count_set, duration_set;
	long long warmup;      /* -1: automatic */
	int json, sweep, repeat;
	unsigned baselines;    /* 1 << SYS_* */
	int baselines_set;
	const char *redis, *svg, *json_file;
	int redis_spawn, readers, servers;
	uint32_t sizes[MAX_LIST], batches[MAX_LIST];
	int scale[MAX_LIST], nsizes, nbatches, nscale;
	double lat_rate;
	double fail_rate[MAX_FAIL];
	const char *fail_queue[MAX_FAIL];
	int nfail;
};

struct plan {
	struct point pts[MAX_POINTS];
	int n;
};

enum {
	O_JSON = 'j', O_BASE = 1000, O_REDIS, O_RSPAWN, O_READERS, O_SERVERS,
	O_MAXS, O_SWEEP, O_SIZES, O_SCALE, O_BATCHES, O_LATRATE, O_FAILQ,
	O_FAILRATE, O_VERIFY, O_SPIN, O_NOLAT, O_WARMUP, O_SVG, O_JSONFILE, O_REPEAT,
};

static const struct option long_opts[] = {
	{ "json", no_argument, NULL, O_JSON },
	{ "help", no_argument, NULL, 'h' },
	{ "duration", required_argument, NULL, 'd' },
	{ "rate", required_argument, NULL, 'r' },
	{ "baseline", required_argument, NULL, O_BASE },
	{ "redis", required_argument, NULL, O_REDIS },
	{ "redis-spawn", no_argument, NULL, O_RSPAWN },
	{ "redis-readers", required_argument, NULL, O_READERS },
	{ "uds-servers", required_argument, NULL, O_SERVERS },
	{ "baseline-max-s", required_argument, NULL, O_MAXS },
	{ "sweep", no_argument, NULL, O_SWEEP },
	{ "sizes", required_argument, NULL, O_SIZES },
	{ "scale", required_argument, NULL, O_SCALE },
	{ "batches", required_argument, NULL, O_BATCHES },
	{ "lat-rate", required_argument, NULL, O_LATRATE },
	{ "fail-queue", required_argument, NULL, O_FAILQ },
	{ "fail-rate", required_argument, NULL, O_FAILRATE },
	{ "verify", no_argument, NULL, O_VERIFY },
	{ "spin", no_argument, NULL, O_SPIN },
	{ "no-latency", no_argument, NULL, O_NOLAT },
	{ "warmup", required_argument, NULL, O_WARMUP },
	{ "svg", required_argument, NULL, O_SVG },
	{ "json-file", required_argument, NULL, O_JSONFILE },
	{ "repeat", required_argument, NULL, O_REPEAT },
	{ NULL, 0, NULL, 0 },
};

static void usage(FILE *f)
{
	fprintf(f,
"usage: gpuq-bench [options]\n"
"       gpuq-bench tracka [options]   Track A next to Redis's ceiling\n"
"                                     (gpuq-bench tracka --help)\n"
"       gpuq-bench kv [options]       the KV API next to Redis MSET/MGET\n"
"                                     (gpuq-bench kv --help)\n"
"       gpuq-bench table [options]    the hash table's inserts and lookups\n"
"                                     (gpuq-bench table --help)\n"
"       gpuq-bench floor [options]    one message's round trip to a GPU\n"
"                                     with no gpuq around it, the floor\n"
"                                     (gpuq-bench floor --help)\n"
"  -s SOCKET            gpuqd socket (default: $GPUQ_SOCKET or the default path)\n"
"  -q QUEUE             queue to send through (default echo); its handler is\n"
"                       what every baseline computes too\n"
"  -p N                 producer processes (1-256, default 1)\n"
"  -n MSGS              messages per producer (default 1000000)\n"
"  -d SECONDS           run for a duration instead of a count\n"
"  -z BYTES             payload size (default 256)\n"
"  -b BATCH             messages per enqueue call (default 256)\n"
"  -w WINDOW            most messages in flight per producer (default 4096)\n"
"  -Z                   zero-copy enqueue (gpuq_reserve/gpuq_commit)\n"
"  -r, --rate R         open loop: R messages/s offered in total (default:\n"
"                       closed loop); latency counts from the intended send time\n"
"  --warmup N           untimed messages per producer first (default: auto)\n"
"  --repeat N           run every system N times (interleaved) and report the\n"
"                       median rate, with latency merged over the runs (1-9)\n"
"  --verify             check every result against a reference\n"
"  --spin               busy-poll for results (no sched_yield between polls),\n"
"                       as a producer that owns its core would\n"
"  --no-latency         do not record latency\n"
"  --fail-rate R        the queue injects handler failures at rate R (0.01 =\n"
"                       1%%): report the measured failure fraction against it\n"
"baselines, same run, same payloads, reported as gpuq's rate over theirs:\n"
"  --baseline LIST      uds,redis,cuda | all | none (default: none for one\n"
"                       point, all for --sweep)\n"
"  --redis HOST:PORT    Redis for the streams baseline\n"
"  --redis-spawn        start a private redis-server on a loopback port\n"
"  --redis-readers N    XREADGROUP reader processes (default: producers)\n"
"  --uds-servers N      Unix-socket server processes (default 1)\n"
"  --baseline-max-s S   stop a baseline's producers after S s (default 10)\n"
"the matrix:\n"
"  --sweep              payload sizes, producers, batches, latency, failures\n"
"  --sizes LIST         payload bytes (default 256,512,1024,2048,4096)\n"
"  --scale LIST         producer counts (default 1,2,4,8,16)\n"
"  --batches LIST       batch sizes (default 1,256,1024,4096)\n"
"  --lat-rate R         open-loop rate of the latency point (default 10000)\n"
"  --fail-queue R:QUEUE a queue configured to fail rate R of its messages\n"
"                       (repeatable)\n"
"output:\n"
"  --json, -j           one JSON document with every figure, instead of text\n"
"  --json-file FILE     write that document to FILE as well as the text\n"
"  --svg FILE           plots: throughput/payload, latency CDF, scaling\n");
}

static int parse_list(const char *s, long *out, int max)
{
	int n = 0;
	char *end;
	while (*s && n < max) {
		out[n++] = strtol(s, &end, 10);
		if (end == s || (*end && *end != ','))
			return -1;
		s = *end ? end + 1 : end;
	}
	return *s ? -1 : n;
}

static int parse_baselines(struct opts *o, const char *s)
{
	char buf[64], *tok, *save = NULL;
	o->baselines = 0;
	o->baselines_set = 1;
	snprintf(buf, sizeof(buf), "%s", s);
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (!strcmp(tok, "all"))
			o->baselines |= 1u << SYS_UDS | 1u << SYS_REDIS | 1u << SYS_CUDA;
		else if (!strcmp(tok, "uds"))
			o->baselines |= 1u << SYS_UDS;
		else if (!strcmp(tok, "redis"))
			o->baselines |= 1u << SYS_REDIS;
		else if (!strcmp(tok, "cuda"))
			o->baselines |= 1u << SYS_CUDA;
		else if (strcmp(tok, "none"))
			return -1;
	}
	return 0;
}

static int parse_fail(struct opts *o, const char *s)
{
	const char *colon = strchr(s, ':');
	if (!colon || !colon[1] || o->nfail >= MAX_FAIL)
		return -1;
	o->fail_rate[o->nfail] = atof(s); /* stops at the colon */
	o->fail_queue[o->nfail] = colon + 1;
	return o->fail_rate[o->nfail++] > 0 ? 0 : -1;
}

static int parse_u32_list(const char *s, uint32_t *out, int *n)
{
	long v[MAX_LIST];
	int k = parse_list(s, v, MAX_LIST);
	for (int i = 0; i < k; i++) {
		if (v[i] < 1 || v[i] > (1l << 30))
			return -1;
		out[i] = (uint32_t)v[i];
	}
	*n = k;
	return k > 0 ? 0 : -1;
}

static int parse_int_list(const char *s, int *out, int *n)
{
	long v[MAX_LIST];
	int k = parse_list(s, v, MAX_LIST);
	for (int i = 0; i < k; i++) {
		if (v[i] < 1 || v[i] > 256)
			return -1;
		out[i] = (int)v[i];
	}
	*n = k;
	return k > 0 ? 0 : -1;
}

static int parse_long(struct opts *o, int c, const char *arg)
{
	switch (c) {
	case O_BASE: return parse_baselines(o, arg);
	case O_REDIS: o->redis = arg; return 0;
	case O_RSPAWN: o->redis_spawn = 1; return 0;
	case O_READERS: o->readers = atoi(arg); return o->readers > 0 && o->readers <= 64 ? 0 : -1;
	case O_SERVERS: o->servers = atoi(arg); return o->servers > 0 && o->servers <= 64 ? 0 : -1;
	case O_MAXS: o->w.max_s = atof(arg); return o->w.max_s > 0 ? 0 : -1;
	case O_SWEEP: o->sweep = 1; return 0;
	case O_SIZES: return parse_u32_list(arg, o->sizes, &o->nsizes);
	case O_SCALE: return parse_int_list(arg, o->scale, &o->nscale);
	case O_BATCHES: return parse_u32_list(arg, o->batches, &o->nbatches);
	case O_LATRATE: o->lat_rate = atof(arg); return o->lat_rate > 0 ? 0 : -1;
	case O_FAILQ: return parse_fail(o, arg);
	case O_FAILRATE: o->w.fail_rate = atof(arg); return o->w.fail_rate >= 0 ? 0 : -1;
	case O_VERIFY: o->w.verify = 1; return 0;
	case O_SPIN: o->w.spin = 1; return 0;
	case O_NOLAT: o->w.latency = 0; return 0;
	case O_WARMUP: o->warmup = atoll(arg); return o->warmup >= 0 ? 0 : -1;
	case O_SVG: o->svg = arg; return 0;
	case O_JSONFILE: o->json_file = arg; return 0;
	case O_REPEAT:
		o->repeat = atoi(arg);
		return o->repeat > 0 && o->repeat <= BENCH_MAX_REPEAT ? 0 : -1;
	}
	return -1;
}

static int parse_short(struct opts *o, int c, const char *arg)
{
	switch (c) {
	case 's': o->w.socket = arg; return 0;
	case 'q': o->w.queue = arg; return 0;
	case 'p': o->w.producers = atoi(arg); return 0;
	case 'n': o->w.count = strtoull(arg, NULL, 10); o->count_set = 1; return 0;
	case 'd': o->w.duration_s = atof(arg); o->duration_set = 1; return 0;
	case 'z': o->w.size = (uint32_t)atoi(arg); return 0;
	case 'b': o->w.batch = (uint32_t)atoi(arg); return 0;
	case 'w': o->w.window = (uint32_t)atoi(arg); return 0;
	case 'Z': o->w.zero_copy = 1; return 0;
	case 'r': o->w.rate = atof(arg); return o->w.rate > 0 ? 0 : -1;
	case O_JSON: o->json = 1; return 0;
	}
	return parse_long(o, c, arg);
}

static void defaults(struct opts *o)
{
	memset(o, 0, sizeof(*o));
	o->w.queue = "echo";
	o->w.producers = 1;
	o->w.count = 1000000;
	o->w.size = 256;
	o->w.batch = 256;
	o->w.window = 4096;
	o->w.latency = 1;
	o->w.max_s = 10;
	o->w.warmup_s = 0.25;
	o->warmup = -1;
	o->servers = 1;
	o->repeat = 1;
	o->lat_rate = 10000;
}

/* Counts or durations: what the user gave, else the mode's default. */
static void run_length(struct opts *o)
{
	static const uint32_t sizes[] = { 256, 512, 1024, 2048, 4096 };
	static const uint32_t batches[] = { 1, 256, 1024, 4096 };
	static const int scale[] = { 1, 2, 4, 8, 16 };
	if (o->count_set && !o->duration_set)
		o->w.duration_s = 0;
	if (!o->count_set && (o->duration_set || o->sweep || o->w.rate > 0)) {
		o->w.count = 0;
		if (!o->duration_set)
			o->w.duration_s = o->sweep ? 1 : 2;
	}
	if (!o->baselines_set && o->sweep)
		o->baselines = 1u << SYS_UDS | 1u << SYS_REDIS | 1u << SYS_CUDA;
	if (!o->nsizes) {
		memcpy(o->sizes, sizes, sizeof(sizes));
		o->nsizes = 5;
	}
	if (!o->nbatches) {
		memcpy(o->batches, batches, sizeof(batches));
		o->nbatches = 4;
	}
	if (!o->nscale) {
		memcpy(o->scale, scale, sizeof(scale));
		o->nscale = 5;
	}
}

static int parse_args(struct opts *o, int argc, char **argv)
{
	int c;
	defaults(o);
	while ((c = getopt_long(argc, argv, "s:q:p:n:d:z:b:w:r:Zjh", long_opts,
				NULL)) != -1) {
		if (c == 'h') {
			usage(stdout);
			exit(0);
		}
		if (c == '?' || parse_short(o, c, optarg)) {
			if (c != '?')
				fprintf(stderr, "gpuq-bench: bad value for option %s\n",
					argv[optind - 1]);
			usage(stderr);
			return -1;
		}
	}
	run_length(o);
	if (optind < argc || o->w.producers < 1 || o->w.producers > 256 ||
	    !o->w.size || !o->w.batch || !o->w.window ||
	    (!o->w.count && o->w.duration_s <= 0)) {
		fprintf(stderr, "gpuq-bench: bad arguments\n");
		return -1;
	}
	return 0;
}

/* ---- the broker's queue ---- */

/* Attach once, in the parent, to learn the queue's geometry and handler.
 * The parent detaches before it forks anybody. */
static int queue_info(const char *socket, const char *name, gpuq_queue_info *qi)
{
	gpuq_client *c;
	gpuq_queue *q;
	int rc = gpuq_connect(socket, &c);
	if (!rc) {
		rc = gpuq_open(c, name, &q);
		if (!rc) {
			gpuq_queue_info_get(q, qi);
			gpuq_close(q);
		}
		gpuq_disconnect(c);
	}
	if (rc)
		fprintf(stderr, "gpuq-bench: queue %s: %s\n", name, gpuq_strerror(rc));
	else if (!payload_handler_id(qi->handler))
		fprintf(stderr, "gpuq-bench: queue %s: unknown handler %s\n", name,
			qi->handler);
	return rc ? rc : payload_handler_id(qi->handler) ? 0 : -EINVAL;
}

static int probe(const struct opts *o, struct bench_info *bi,
		 gpuq_queue_info *qi)
{
	int rc = queue_info(o->w.socket, o->w.queue, qi);
	if (rc)
		return rc;
	bi->queue = o->w.queue;
	bi->handler = qi->handler;
	bi->backend = qi->backend;
	bi->slot_bytes = qi->slot_bytes;
	bi->capacity = qi->capacity;
	bi->cq_capacity = qi->cq_capacity;
	return 0;
}

/* Window and batch as the loop will use them, the same for every system:
 * a window above cq_capacity is refused by the library, a batch is at most
 * a window, and a loan at most a ring. */
static void clip(struct workload *w, const gpuq_queue_info *qi)
{
	if (w->batch > w->window)
		w->window = w->batch;
	if (w->window > qi->cq_capacity)
		w->window = qi->cq_capacity;
	if (w->batch > w->window)
		w->batch = w->window;
	if (w->zero_copy && w->batch > qi->capacity)
		w->batch = qi->capacity;
}

static struct point *add_point(struct plan *pl, const struct opts *o,
			       const char *section, double x)
{
	struct point *p;
	if (pl->n >= MAX_POINTS)
		return NULL;
	p = &pl->pts[pl->n++];
	memset(p, 0, sizeof(*p));
	p->section = section;
	p->x = x;
	p->w = o->w;
	return p;
}

static void plan_sweep(struct plan *pl, const struct opts *o,
		       const gpuq_queue_info *qi)
{
	struct point *p;
	for (int i = 0; i < o->nsizes; i++) {
		if (o->sizes[i] > qi->slot_bytes) {
			fprintf(stderr, "gpuq-bench: payload %u skipped: queue %s has "
				"%u-byte slots\n", o->sizes[i], o->w.queue, qi->slot_bytes);
			continue;
		}
		if ((p = add_point(pl, o, "payload", o->sizes[i])))
			p->w.size = o->sizes[i];
	}
	for (int i = 0; i < o->nscale; i++)
		if ((p = add_point(pl, o, "producers", o->scale[i])))
			p->w.producers = o->scale[i];
	for (int i = 0; i < o->nbatches; i++)
		if ((p = add_point(pl, o, "batch", o->batches[i])))
			p->w.batch = o->batches[i];
	/* Latency at a rate every system sustains, one message per send, so
	 * the figure is the system's and not the batching's. */
	if ((p = add_point(pl, o, "latency", o->lat_rate))) {
		p->w.rate = o->lat_rate;
		p->w.batch = 1;
	}
	if (o->nfail && (p = add_point(pl, o, "failure", 0)))
		p->w.fail_rate = 0;
	for (int i = 0; i < o->nfail; i++)
		if ((p = add_point(pl, o, "failure", o->fail_rate[i]))) {
			p->w.queue = o->fail_queue[i];
			p->w.fail_rate = o->fail_rate[i];
		}
}

static int finish_workload(struct workload *w, const struct opts *o,
			   const gpuq_queue_info *main_qi)
{
	gpuq_queue_info qi = *main_qi;
	/* A failure-rate queue is another queue: its own geometry. */
	if (strcmp(w->queue, o->w.queue) && queue_info(w->socket, w->queue, &qi))
		return -1;
	clip(w, &qi);
	w->handler = payload_handler_id(qi.handler);
	if (o->warmup >= 0)
		w->warmup = (uint64_t)o->warmup;
	else if (w->count)
		w->warmup = w->count / 10 < 10000 ? w->count / 10 : 10000;
	else
		w->warmup = 10000;
	return 0;
}

/* ---- running ---- */

static void on_signal(int sig)
{
	redis_spawn_kill();
	/* The children share our process group and got the signal too. */
	_exit(128 + sig);
}

static double lat_ratio(const struct hist *a, const struct hist *g,
			uint32_t ppm)
{
	uint64_t gv = g ? hist_value_at_ppm(g, ppm) : 0;
	return a && gv ? (double)hist_value_at_ppm(a, ppm) / (double)gv : 0;
}

/* Every baseline as a ratio to gpuq: its throughput below gpuq's, and its
 * latency above. */
static void ratios(struct point *p)
{
	const struct sys_result *g = &p->res[SYS_GPUQ];
	for (int s = 1; s < SYS_COUNT; s++) {
		struct sys_result *r = &p->res[s];
		if (g->status != ST_OK || r->status != ST_OK)
			continue;
		if (r->rate > 0)
			r->ratio = g->rate / r->rate;
		r->p50_ratio = lat_ratio(r->lat, g->lat, 500000);
		r->p99_ratio = lat_ratio(r->lat, g->lat, 990000);
	}
}

static void run_one(int sys, struct point *p, const struct opts *o,
		    struct sys_result *r, const char *label)
{
	const struct workload *w = &p->w;
	switch (sys) {
	case SYS_GPUQ:
		sys_gpuq_run(w, r, label);
		break;
	case SYS_UDS:
		sys_uds_run(w, o->servers, r, label);
		break;
	case SYS_REDIS:
		sys_redis_run(w, o->redis, o->readers ? o->readers : w->producers,
			      r, label);
		break;
	case SYS_CUDA:
		sys_cuda_run(w, r, label);
		break;
	}
}

static int by_rate(const void *a, const void *b)
{
	const struct sys_result *x = a, *y = b;
	return x->rate < y->rate ? -1 : x->rate > y->rate;
}

/* Keep the median-rate run of n, with every run's latency merged into it
 * (more samples for the tail) and every run's rate listed. */
static void keep_median(struct sys_result *runs, int n, struct sys_result *out)
{
	double rates[BENCH_MAX_REPEAT];
	int m = (n - 1) / 2;
	for (int i = 0; i < n; i++)
		rates[i] = runs[i].rate;
	for (int i = 0; i < n; i++)
		if (runs[i].status != ST_OK) {
			m = i; /* a failed run is the result */
			break;
		}
	if (runs[m].status == ST_OK)
		qsort(runs, (size_t)n, sizeof(*runs), by_rate);
	for (int i = 0; runs[m].lat && i < n; i++)
		if (i != m && runs[i].lat)
			hist_merge(runs[m].lat, runs[i].lat);
	for (int i = 0; i < n; i++)
		if (i != m)
			sys_result_free(&runs[i]);
	*out = runs[m];
	out->runs = n;
	memcpy(out->run_rates, rates, sizeof(rates[0]) * (size_t)n);
}

/* Systems interleaved within each repeat, so drift hits them alike. */
static void run_point(struct point *p, const struct opts *o)
{
	static struct sys_result runs[SYS_COUNT][BENCH_MAX_REPEAT];
	char label[96];
	int at = 0, want[SYS_COUNT] = { 1 };
	if (strcmp(p->section, "failure"))
		for (int s = 1; s < SYS_COUNT; s++)
			want[s] = !!(o->baselines & 1u << s);
	if (strcmp(p->section, "single"))
		at = snprintf(label, sizeof(label), "[%s %g] ", p->section, p->x);
	for (int r = 0; r < o->repeat; r++)
		for (int s = 0; s < SYS_COUNT; s++) {
			if (!want[s])
				continue;
			snprintf(label + at, sizeof(label) - (size_t)at, "%s %d/%d",
				 sys_names[s], r + 1, o->repeat);
			run_one(s, p, o, &runs[s][r], label);
		}
	for (int s = 0; s < SYS_COUNT; s++)
		if (want[s])
			keep_median(runs[s], o->repeat, &p->res[s]);
	ratios(p);
}

static int start_redis(struct opts *o, struct bench_info *bi, char *addr,
		       size_t cap)
{
	char err[160];
	if (!(o->baselines & 1u << SYS_REDIS))
		return 0;
	if (o->redis_spawn) {
		if (redis_spawn(addr, cap, err, sizeof(err))) {
			fprintf(stderr, "gpuq-bench: redis baseline skipped: %s\n", err);
			o->redis = NULL;
			return 0;
		}
		o->redis = addr;
	} else if (o->redis && redis_ping(o->redis, err, sizeof(err))) {
		fprintf(stderr, "gpuq-bench: redis %s: %s\n", o->redis, err);
		return -1;
	}
	bi->redis = o->redis;
	return 0;
}

static void cmdline(struct bench_info *bi, int argc, char **argv)
{
	size_t at = 0;
	for (int i = 0; i < argc && at < sizeof(bi->cmdline) - 1; i++)
		at += (size_t)snprintf(bi->cmdline + at, sizeof(bi->cmdline) - at,
				       "%s%s", i ? " " : "", argv[i]);
}

static void json_file(const char *path, const struct bench_info *bi,
		      const struct plan *pl)
{
	FILE *f = fopen(path, "w");
	if (f)
		report_json(f, bi, pl->pts, pl->n);
	if (!f || fclose(f))
		fprintf(stderr, "gpuq-bench: cannot write %s\n", path);
}

static void report(const struct opts *o, const struct bench_info *bi,
		   const struct plan *pl)
{
	static const char *const sections[] = { "payload", "producers", "batch",
						"latency", "failure" };
	if (o->json_file)
		json_file(o->json_file, bi, pl);
	if (o->json)
		report_json(stdout, bi, pl->pts, pl->n);
	else if (!o->sweep)
		report_text_single(stdout, bi, &pl->pts[0]);
	else
		for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]); i++)
			report_text_section(stdout, bi, pl->pts, pl->n, sections[i]);
	if (o->svg && report_svg(o->svg, bi, pl->pts, pl->n))
		fprintf(stderr, "gpuq-bench: cannot write %s\n", o->svg);
}

static int run_all(struct plan *pl, const struct opts *o)
{
	int bad = 0;
	for (int i = 0; i < pl->n; i++) {
		run_point(&pl->pts[i], o);
		for (int s = 0; s < SYS_COUNT; s++)
			bad |= pl->pts[i].res[s].status == ST_ERROR;
	}
	return bad;
}

int main(int argc, char **argv)
{
	static struct plan pl;
	struct opts o;
	struct bench_info bi;
	gpuq_queue_info qi;
	char addr[64];
	int bad;
	memset(&bi, 0, sizeof(bi));
	/* A mode of its own: Track A next to Redis's ceiling. */
	if (argc > 1 && !strcmp(argv[1], "tracka"))
		return tracka_bench_main(argc - 1, argv + 1);
	if (argc > 1 && !strcmp(argv[1], "kv"))
		return kv_bench_main(argc - 1, argv + 1);
	if (argc > 1 && !strcmp(argv[1], "table"))
		return table_bench_main(argc - 1, argv + 1);
	if (argc > 1 && !strcmp(argv[1], "floor"))
		return floor_bench_main(argc - 1, argv + 1);
	if (parse_args(&o, argc, argv))
		return 2;
	if (probe(&o, &bi, &qi))
		return 1;
	if (payload_handler_id(qi.handler) == GPUQ_H_USER &&
	    (o.baselines || o.w.verify)) {
		fprintf(stderr, "gpuq-bench: queue %s runs a handler module: "
				"--verify and baselines need a built-in handler\n",
			o.w.queue);
		return 2;
	}
	report_machine(&bi);
	cmdline(&bi, argc, argv);
	bi.single = !o.sweep;
	bi.duration_s = o.w.duration_s;
	bench_progress = isatty(2);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	/* A baseline's server dying must read as an error, not kill us. */
	signal(SIGPIPE, SIG_IGN);
	if (o.sweep)
		plan_sweep(&pl, &o, &qi);
	else
		add_point(&pl, &o, "single", 0);
	for (int i = 0; i < pl.n; i++)
		if (finish_workload(&pl.pts[i].w, &o, &qi))
			return 1;
	if (start_redis(&o, &bi, addr, sizeof(addr)))
		return 1;
	bad = run_all(&pl, &o);
	report(&o, &bi, &pl);
	redis_spawn_stop();
	for (int i = 0; i < pl.n; i++)
		for (int s = 0; s < SYS_COUNT; s++)
			sys_result_free(&pl.pts[i].res[s]);
	return bad ? 1 : 0;
}
