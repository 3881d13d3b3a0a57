/*
 * sys_tracka.c - `gpuq-bench tracka`: Track A end to end next to Redis's
 * own ceiling, in one run on one machine (docs/benchmarking.md).
 *
 * Both measurements have the same shape and the same loader: one process
 * XADDs N entries of the same payloads (pipelined, 512 per round trip) while
 * the system under test consumes them; the clock runs from the loader's
 * start until the last entry is acknowledged.
 *   ceiling: one pipelined client in a consumer group; each round trip
 *            carries the XACK of the previous batch and the next
 *            XREADGROUP.  No handler, no result: what redis-server itself
 *            sustains for XADD + XREADGROUP + XACK.
 *   same-work client: the same client, also running the handler and
 *            XADDing each result before the XACK: Track A's Redis work
 *            done the plain way.
 *   tracka:  a gpuqd started for the run with a queue bound to the stream;
 *            it runs the handler and also XADDs every result before the
 *            XACK.  Done when the result stream holds N entries and nothing
 *            is pending; every result is then checked.
 * Figures are reported, never asserted.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "bench/bench.h"
#include "bench/sys_tracka.h"
#include "broker/tracka_window.h"
#include "libclient/gpuq.h"

#define LOAD_PIPELINE 512
#define PREDECESSOR_TRACKA 191000.0 /* msg/s, reference/predecessor-backlog.md */
#define SHARDS_MAX 16

struct topts {
	char addr[64]; /* this shard's Redis */
	/* Shards: independent streams on as many redis-servers, one bound
	 * queue each in the one gpuqd: how Track A grows past what one
	 * Redis sustains (docs/tracka.md). */
	int shards;
	char addrs[SHARDS_MAX][64];
	const char *redis_list; /* --redis, or NULL: spawn servers */
	char gpuqd[PATH_MAX];
	const char *handler, *backend;
	uint32_t handler_id;
	uint64_t n;
	uint32_t size, batch, workers, capacity;
	uint32_t result_batch; /* gpuqd's redis_result_batch, and the same-work
				  client's results per XADD */
	int json, skip_ceiling, force_epoll, repeat;
};

static double secs(uint64_t a, uint64_t b)
{
	return (double)(b - a) / 1e9;
}

static int ok_reply(redisContext *c, const char *fmt, ...)
{
	va_list ap;
	redisReply *r;
	int ok;
	va_start(ap, fmt);
	r = redisvCommand(c, fmt, ap);
	va_end(ap);
	ok = r && r->type != REDIS_REPLY_ERROR;
	if (!ok)
		fprintf(stderr, "gpuq-bench tracka: %s: %s\n", fmt,
			r ? r->str : c->errstr);
	freeReplyObject(r);
	return ok ? 0 : -EIO;
}

static long long int_reply(redisContext *c, const char *fmt, ...)
{
	va_list ap;
	redisReply *r;
	long long v = -1;
	va_start(ap, fmt);
	r = redisvCommand(c, fmt, ap);
	va_end(ap);
	if (r && r->type == REDIS_REPLY_INTEGER)
		v = r->integer;
	else if (r && r->type == REDIS_REPLY_ARRAY && r->elements &&
		 r->element[0]->type == REDIS_REPLY_INTEGER)
		v = r->element[0]->integer; /* XPENDING summary */
	freeReplyObject(r);
	return v;
}

/* ---- the loader (a child process) ---- */

static int load(const struct topts *o, const char *stream)
{
	struct payload pl;
	redisContext *c = bench_redis_connect(o->addr);
	uint8_t *buf = malloc(o->size);
	const char *argv[5] = { "XADD", stream, "*", "payload", (char *)buf };
	size_t lens[5] = { 4, strlen(stream), 1, 7, o->size };
	if (!c || !buf || payload_init(&pl, o->handler_id, o->size, 0))
		return 1;
	for (uint64_t done = 0; done < o->n;) {
		uint64_t k = o->n - done < LOAD_PIPELINE ? o->n - done : LOAD_PIPELINE;
		for (uint64_t i = 0; i < k; i++) {
			payload_fill(&pl, done + i, buf, o->size);
			redisAppendCommandArgv(c, 5, argv, lens);
		}
		for (uint64_t i = 0; i < k; i++) {
			redisReply *r;
			if (redisGetReply(c, (void **)&r) != REDIS_OK ||
			    r->type == REDIS_REPLY_ERROR)
				return 1;
			freeReplyObject(r);
		}
		done += k;
	}
	redisFree(c);
	return 0;
}

static pid_t spawn_loader(const struct topts *o, const char *stream)
{
	pid_t pid;
	fflush(NULL);
	pid = fork();
	if (pid == 0)
		_exit(load(o, stream));
	return pid;
}

static int reap(pid_t pid)
{
	int st;
	if (waitpid(pid, &st, 0) != pid)
		return -1;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

/* ---- Redis's ceiling ---- */

/* The ceiling client's state: its connection, and for the "with results"
 * variant a scratch area for the handler's results, room for one XADD's
 * (result_batch of them, res_cap bytes apart, 16-byte aligned). */
struct ceil {
	const struct topts *o;
	redisContext *c;
	const char *stream;
	char results[96];
	int with_results;
	uint8_t *res;
	uint32_t res_cap;
	/* One XADD's argv, kept for every group: room for result_batch
	 * results, with the field names of result i formatted once. */
	const char **av;
	size_t *al;
	char (*names)[3][24];
};

/* Append an XADD of the results of ents[from .. from + n) exactly as
 * Track A writes them (docs/tracka.md: one result per entry, or with
 * result_batch > 1 the grouped fields), running the handler for each. */
static void append_group(struct ceil *cl, const redisReply *ents,
			 size_t from, size_t n)
{
	int one = cl->o->result_batch <= 1, argc = 0;
	const char **av = cl->av;
	size_t *al = cl->al;
	char (*names)[3][24] = cl->names, count[24];
#define ARG(p, l) (av[argc] = (p), al[argc++] = (l))
	ARG("XADD", 4);
	ARG(cl->results, strlen(cl->results));
	ARG("*", 1);
	if (!one) {
		snprintf(count, sizeof(count), "%zu", n);
		ARG("n", 1);
		ARG(count, strlen(count));
		ARG("consumer", 8);
		ARG("bench", 5);
	}
	for (size_t i = 0; i < n; i++) {
		const redisReply *e = ents->element[from + i];
		const redisReply *p = e->element[1]->element[1];
		uint8_t *r = cl->res + i * cl->res_cap;
		uint32_t len = 0;
		payload_handle(cl->o->handler_id, p->str, (uint32_t)p->len, 0,
			       r, cl->res_cap, &len);
		ARG(names[i][0], strlen(names[i][0]));
		ARG(e->element[0]->str, e->element[0]->len);
		ARG(names[i][1], strlen(names[i][1]));
		ARG((const char *)r, len);
		ARG(names[i][2], strlen(names[i][2]));
		ARG("1", 1);
	}
	if (one) {
		ARG("consumer", 8);
		ARG("bench", 5);
	}
#undef ARG
	redisAppendCommandArgv(cl->c, argc, av, al);
}

/* Append the XADDs of the results of every entry of ents.  Returns how
 * many commands were appended. */
static size_t append_results(struct ceil *cl, const redisReply *ents)
{
	size_t per = cl->o->result_batch > 1 ? cl->o->result_batch : 1, cmds = 0;
	for (size_t i = 0; i < ents->elements; i += per, cmds++)
		append_group(cl, ents, i,
			     ents->elements - i < per ? ents->elements - i : per);
	return cmds;
}

static void append_xack(struct ceil *cl, const redisReply *e)
{
	size_t k = e->elements;
	const char **av = malloc((3 + k) * sizeof(*av));
	size_t *al = malloc((3 + k) * sizeof(*al));
	if (av && al) {
		av[0] = "XACK";
		av[1] = cl->stream;
		av[2] = "g";
		for (size_t i = 0; i < k; i++)
			av[3 + i] = e->element[i]->element[0]->str;
		for (size_t i = 0; i < 3 + k; i++)
			al[i] = strlen(av[i]);
		redisAppendCommandArgv(cl->c, (int)(3 + k), av, al);
	}
	free(av);
	free(al);
}

/* Read n replies of which none may be an error. */
static int replies_ok(redisContext *c, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		redisReply *r;
		int bad;
		if (redisGetReply(c, (void **)&r) != REDIS_OK)
			return -1;
		bad = r->type == REDIS_REPLY_ERROR;
		freeReplyObject(r);
		if (bad)
			return -1;
	}
	return 0;
}

/* One round trip: [results of ents,] XACK of ents (if any) and, unless
 * last, the next XREADGROUP.  Returns the entries read, or -1. */
static long long ceiling_round(struct ceil *cl, redisReply **ents, int last)
{
	const char *rd[] = { "XREADGROUP", "GROUP", "g", "c", "COUNT", NULL,
			     "BLOCK", "100", "STREAMS", cl->stream, ">" };
	char count[16];
	size_t pending = 0;
	redisReply *r;
	long long n = 0;
	snprintf(count, sizeof(count), "%u", cl->o->batch);
	rd[5] = count;
	if (*ents) {
		if (cl->with_results)
			pending += append_results(cl, *ents);
		append_xack(cl, *ents);
		pending++;
	}
	/* The last round only acknowledges: a read would BLOCK for nothing
	 * and count against the ceiling. */
	if (!last)
		redisAppendCommandArgv(cl->c, 11, rd, NULL);
	if (replies_ok(cl->c, pending))
		return -1;
	if (*ents) {
		freeReplyObject(*ents);
		*ents = NULL;
	}
	if (last)
		return 0;
	if (redisGetReply(cl->c, (void **)&r) != REDIS_OK ||
	    r->type == REDIS_REPLY_ERROR)
		return -1;
	if (r->type == REDIS_REPLY_ARRAY && r->elements == 1) {
		redisReply *e = r->element[0]->element[1];
		n = (long long)e->elements;
		/* Keep just the entries array for the next round. */
		r->element[0]->element[1] = NULL;
		*ents = n ? e : NULL;
		if (!n)
			freeReplyObject(e);
	}
	freeReplyObject(r);
	return n;
}

/* The scratch of append_group, for groups of up to result_batch. */
static int ceiling_scratch(struct ceil *cl)
{
	uint32_t per = cl->o->result_batch, one = per <= 1;
	cl->res_cap = (payload_result_bytes(cl->o->handler_id, cl->o->size) +
		       16 + 15) & ~15u;
	cl->res = aligned_alloc(16, (size_t)cl->res_cap * per);
	cl->av = malloc((7 + 6 * (size_t)per) * sizeof(*cl->av));
	cl->al = malloc((7 + 6 * (size_t)per) * sizeof(*cl->al));
	cl->names = malloc(per * sizeof(*cl->names));
	if (!cl->res || !cl->av || !cl->al || !cl->names)
		return -1;
	for (uint32_t i = 0; i < per; i++) {
		snprintf(cl->names[i][0], 24, one ? "src" : "src.%u", i);
		snprintf(cl->names[i][1], 24, one ? "result" : "result.%u", i);
		snprintf(cl->names[i][2], 24, one ? "attempts" : "attempts.%u", i);
	}
	return 0;
}

static int ceiling_consume(struct ceil *cl)
{
	redisReply *ents = NULL;
	uint64_t got = 0;
	cl->c = bench_redis_connect(cl->o->addr);
	if (!cl->c || ceiling_scratch(cl))
		return 1;
	while (got < cl->o->n || ents) {
		long long n = ceiling_round(cl, &ents, got >= cl->o->n);
		if (n < 0)
			return 1;
		got += (uint64_t)n;
	}
	redisFree(cl->c);
	free(cl->res);
	free(cl->av);
	free(cl->al);
	free(cl->names);
	return 0;
}

/*
 * One pipelined consumer-group client: XACK + XREADGROUP per round trip:
 * Redis's ceiling for that mix.  with_results: the client also runs the
 * handler and XADDs each entry's result (Track A's fields) before the
 * XACK, so Redis does exactly Track A's work: a reference for what a
 * plain pipelined client makes of it.
 */
static int run_ceiling(const struct topts *o, int with_results, double *rate)
{
	struct ceil cl = { .o = o, .stream = "gpuq-bench:ceiling",
			   .with_results = with_results };
	redisContext *c = bench_redis_connect(o->addr);
	uint64_t t0, t1;
	pid_t loader, consumer;
	int rc;
	snprintf(cl.results, sizeof(cl.results), "%s:results", cl.stream);
	if (!c || ok_reply(c, "DEL %s %s", cl.stream, cl.results) ||
	    ok_reply(c, "XGROUP CREATE %s g $ MKSTREAM", cl.stream))
		return -EIO;
	fflush(NULL);
	t0 = procs_now_ns();
	consumer = fork();
	if (consumer == 0)
		_exit(ceiling_consume(&cl));
	loader = spawn_loader(o, cl.stream);
	rc = reap(loader) | reap(consumer);
	t1 = procs_now_ns();
	if (!rc && int_reply(c, "XPENDING %s g", cl.stream) != 0)
		rc = -EIO;
	if (!rc && with_results && o->result_batch <= 1 &&
	    int_reply(c, "XLEN %s", cl.results) != (long long)o->n)
		rc = -EIO;
	ok_reply(c, "DEL %s %s", cl.stream, cl.results);
	redisFree(c);
	*rate = rc ? 0 : (double)o->n / secs(t0, t1);
	return rc ? -EIO : 0;
}

/* Shard i's share of the run: its Redis, and its part of the entries. */
static struct topts shard_of(const struct topts *o, int i)
{
	struct topts t = *o;
	snprintf(t.addr, sizeof(t.addr), "%s", o->addrs[i]);
	t.n = o->n / (uint64_t)o->shards + ((uint64_t)i < o->n % (uint64_t)o->shards);
	return t;
}

/* The ceiling on every shard at once: one child per shard runs the
 * single-Redis measurement on its part; the rate is all entries over the
 * time until the last shard is done. */
static int run_ceiling_all(const struct topts *o, int with_results,
			   double *rate)
{
	pid_t pid[SHARDS_MAX];
	uint64_t t0;
	int rc = 0;
	if (o->shards == 1)
		return run_ceiling(o, with_results, rate);
	fflush(NULL);
	t0 = procs_now_ns();
	for (int i = 0; i < o->shards; i++) {
		pid[i] = fork();
		if (pid[i] == 0) {
			struct topts t = shard_of(o, i);
			double r;
			_exit(run_ceiling(&t, with_results, &r) ? 1 : 0);
		}
	}
	for (int i = 0; i < o->shards; i++)
		rc |= pid[i] < 0 || reap(pid[i]);
	*rate = rc ? 0 : (double)o->n / secs(t0, procs_now_ns());
	return rc ? -EIO : 0;
}

/* ---- Track A ---- */

pid_t bench_exec_gpuqd(const char *log, const char *const *argv)
{
	pid_t pid;
	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		FILE *f = freopen(log, "w", stderr);
		(void)f;
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	return pid;
}

void bench_gpuqd_path(char *out, size_t cap)
{
	char self[PATH_MAX];
	ssize_t n;
	if (out[0])
		return;
	if (getenv("GPUQD") && *getenv("GPUQD")) {
		snprintf(out, cap, "%s", getenv("GPUQD"));
		return;
	}
	/* In the build tree: bench/gpuq-bench next to broker/gpuqd (libtool
	 * may run us from bench/.libs). */
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		char *slash;
		self[n] = 0;
		if ((slash = strrchr(self, '/')))
			*slash = 0;
		if (strstr(self, "/.libs") && (slash = strrchr(self, '/')))
			*slash = 0;
		if (strlen(self) + 20 < cap) {
			snprintf(out, cap, "%s/../broker/gpuqd", self);
			if (access(out, X_OK) == 0)
				return;
		}
	}
	snprintf(out, cap, "gpuqd");
}

/* One queue spec per shard, each bound to its shard's Redis. */
static void shard_spec(const struct topts *o, int i, const char *stream,
		       char *spec, size_t cap)
{
	const char *a = o->addrs[i], *colon = strrchr(a, ':');
	snprintf(spec, cap,
		 "ta%d,handler=%s,slot_bytes=%u,workers=%u,capacity=%u,"
		 "redis_host=%.*s,redis_port=%s,redis_stream=%s,"
		 "redis_consumer=bench,redis_batch=%u,redis_result_batch=%u",
		 i, o->handler, o->size, o->workers, o->capacity,
		 (int)(colon - a), a, colon + 1, stream, o->batch,
		 o->result_batch);
}

static pid_t start_gpuqd(const struct topts *o, const char *dir,
			 const char *stream)
{
	char sock[PATH_MAX], log[PATH_MAX], spec[SHARDS_MAX][512];
	const char *argv[8 + 2 * SHARDS_MAX];
	int argc = 0;
	snprintf(sock, sizeof(sock), "%s/gpuqd.sock", dir);
	snprintf(log, sizeof(log), "%s/gpuqd.log", dir);
	argv[argc++] = o->gpuqd;
	argv[argc++] = "-s";
	argv[argc++] = sock;
	argv[argc++] = "-b";
	argv[argc++] = o->backend;
	for (int i = 0; i < o->shards; i++) {
		shard_spec(o, i, stream, spec[i], sizeof(spec[i]));
		argv[argc++] = "-q";
		argv[argc++] = spec[i];
	}
	if (o->force_epoll)
		argv[argc++] = "--force-epoll";
	argv[argc] = NULL;
	return bench_exec_gpuqd(log, argv);
}

/* Until the binding has made its group (it is then reading). */
static int wait_group(redisContext *c, const char *stream, pid_t gpuqd)
{
	for (int i = 0; i < 1000; i++) {
		redisReply *r = redisCommand(c, "XINFO GROUPS %s", stream);
		int ok = r && r->type == REDIS_REPLY_ARRAY && r->elements;
		int st;
		freeReplyObject(r);
		if (ok)
			return 0;
		if (waitpid(gpuqd, &st, WNOHANG) == gpuqd)
			return -ECHILD;
		usleep(10000);
	}
	return -ETIMEDOUT;
}

/* A stream id is parsed by the broker's own parser (broker/tracka_window.c,
 * tested against brute force in check_tracka_window). */
static int sid_of(const char *s, struct sid *o)
{
	return sid_parse(s, strlen(s), o);
}

/* Call fn for every entry of key, in order. */
static int scan_stream(redisContext *c, const char *key,
		       int (*fn)(void *, const redisReply *), void *arg)
{
	char from[64] = "-";
	for (;;) {
		redisReply *r = redisCommand(c, "XRANGE %s %s + COUNT 10000",
					     key, from);
		int rc = 0;
		if (!r || r->type != REDIS_REPLY_ARRAY) {
			freeReplyObject(r);
			return -EIO;
		}
		if (!r->elements) {
			freeReplyObject(r);
			return 0;
		}
		for (size_t i = 0; i < r->elements && !rc; i++)
			rc = fn(arg, r->element[i]);
		snprintf(from, sizeof(from), "(%s",
			 r->element[r->elements - 1]->element[0]->str);
		freeReplyObject(r);
		if (rc)
			return rc;
	}
}

struct verify {
	struct sid *ids; /* the loaded entries, in load order */
	uint64_t n, cap, results, bad;
	uint8_t *seen;
	struct payload pl;
};

static int add_id(void *arg, const redisReply *e)
{
	struct verify *v = arg;
	if (v->n == v->cap || sid_of(e->element[0]->str, &v->ids[v->n]))
		return -EIO;
	v->n++;
	return 0;
}

static long long find_id(const struct verify *v, const struct sid *id)
{
	uint64_t lo = 0, hi = v->n;
	while (lo < hi) {
		uint64_t mid = (lo + hi) / 2;
		const struct sid *m = &v->ids[mid];
		if (m->ms == id->ms && m->seq == id->seq)
			return (long long)mid;
		if (m->ms < id->ms || (m->ms == id->ms && m->seq < id->seq))
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

/* One result: it names a loaded entry, once, and is right for it. */
static void check_result(struct verify *v, const redisReply *src,
			 const redisReply *res)
{
	struct sid id;
	long long i;
	v->results++;
	if (!src || !res || sid_of(src->str, &id) || (i = find_id(v, &id)) < 0 ||
	    v->seen[i]++ ||
	    !payload_check(&v->pl, (uint64_t)i, 0, res->str, res->len))
		v->bad++;
}

/* The value of field name in the fields f, or NULL. */
static const redisReply *field_of(const redisReply *f, const char *name)
{
	for (size_t k = 0; k + 1 < f->elements; k += 2)
		if (!strcmp(f->element[k]->str, name))
			return f->element[k + 1];
	return NULL;
}

/* A result entry (docs/tracka.md): src, result, ...; or with groups n,
 * then src.<i>, result.<i>, ... for i < n. */
static int check_one(void *arg, const redisReply *e)
{
	struct verify *v = arg;
	const redisReply *f = e->element[1], *n = field_of(f, "n");
	long long m = n ? atoll(n->str) : 0;
	if (!n) {
		check_result(v, field_of(f, "src"), field_of(f, "result"));
		return 0;
	}
	if (m < 1 || m > 1024)
		v->bad++;
	for (long long i = 0; i < m && i < 1024; i++) {
		char fs[32], fr[32];
		snprintf(fs, sizeof(fs), "src.%lld", i);
		snprintf(fr, sizeof(fr), "result.%lld", i);
		check_result(v, field_of(f, fs), field_of(f, fr));
	}
	return 0;
}

/* Every result names a loaded entry, once, and is right for its payload;
 * every entry has one. */
static int check_results(redisContext *c, const struct topts *o,
			 const char *stream, const char *results, uint64_t *bad)
{
	struct verify v = { .cap = o->n };
	int rc = -ENOMEM;
	v.ids = malloc(o->n * sizeof(*v.ids));
	v.seen = calloc(o->n, 1);
	if (!v.ids || !v.seen || payload_init(&v.pl, o->handler_id, o->size, 0))
		goto out;
	if ((rc = scan_stream(c, stream, add_id, &v)) ||
	    (rc = scan_stream(c, results, check_one, &v)))
		goto out;
	*bad = v.bad + (v.n != o->n) + (v.results != o->n);
out:
	payload_free(&v.pl);
	free(v.ids);
	free(v.seen);
	return rc;
}

/* Entries the group has been handed (XINFO GROUPS' entries-read), or -1. */
static long long entries_read(redisContext *c, const char *stream)
{
	redisReply *r = redisCommand(c, "XINFO GROUPS %s", stream);
	long long n = -1;
	if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 1) {
		const redisReply *g = r->element[0];
		for (size_t k = 0; k + 1 < g->elements; k += 2)
			if (g->element[k]->type == REDIS_REPLY_STRING &&
			    !strcmp(g->element[k]->str, "entries-read") &&
			    g->element[k + 1]->type == REDIS_REPLY_INTEGER)
				n = g->element[k + 1]->integer;
	}
	freeReplyObject(r);
	return n;
}

/* Is every shard's stream fully processed: all results in, nothing
 * pending?  With grouped results the result stream's length says nothing
 * about the count, so then: every entry handed out and none pending (an
 * entry is acknowledged only after its result is written). */
static int all_done(redisContext **c, const struct topts *o,
		    const char *stream, const char *results)
{
	for (int i = 0; i < o->shards; i++) {
		struct topts t = shard_of(o, i);
		long long in = o->result_batch > 1
				       ? entries_read(c[i], stream)
				       : int_reply(c[i], "XLEN %s", results);
		if (in < (long long)t.n ||
		    int_reply(c[i], "XPENDING %s gpuq", stream) != 0)
			return 0;
	}
	return 1;
}

static int run_tracka(struct topts *o, double *rate, uint64_t *bad)
{
	const char *stream = "gpuq-bench:tracka", *results = "gpuq-bench:tracka:results";
	char dir[64] = "/tmp/gpuq-bench-tracka-XXXXXX", cmd[128];
	redisContext *c[SHARDS_MAX] = { NULL };
	pid_t gpuqd = -1, loader[SHARDS_MAX];
	uint64_t t0, t1;
	int rc = -EIO, i;
	if (!mkdtemp(dir))
		return -EIO;
	for (i = 0; i < o->shards; i++)
		if (!(c[i] = bench_redis_connect(o->addrs[i])) ||
		    ok_reply(c[i], "DEL %s %s %s:dlq", stream, results, stream))
			goto out;
	bench_gpuqd_path(o->gpuqd, sizeof(o->gpuqd));
	gpuqd = start_gpuqd(o, dir, stream);
	for (i = 0, rc = gpuqd < 0 ? -ECHILD : 0; !rc && i < o->shards; i++)
		rc = wait_group(c[i], stream, gpuqd);
	if (rc) {
		fprintf(stderr, "gpuq-bench tracka: %s did not start (see %s/gpuqd.log)\n",
			o->gpuqd, dir);
		goto out;
	}
	t0 = procs_now_ns();
	for (i = 0; i < o->shards; i++) {
		struct topts t = shard_of(o, i);
		loader[i] = spawn_loader(&t, stream);
	}
	while (!all_done(c, o, stream, results)) {
		if (waitpid(gpuqd, NULL, WNOHANG) == gpuqd) {
			fprintf(stderr, "gpuq-bench tracka: gpuqd died (see %s/gpuqd.log)\n", dir);
			rc = -ECHILD;
			gpuqd = -1;
			goto out;
		}
		usleep(2000);
	}
	t1 = procs_now_ns();
	for (i = 0; i < o->shards; i++)
		rc |= reap(loader[i]);
	kill(gpuqd, SIGTERM);
	waitpid(gpuqd, NULL, 0);
	gpuqd = -1;
	for (i = 0; !rc && i < o->shards; i++) {
		struct topts t = shard_of(o, i);
		uint64_t b = 0;
		rc = check_results(c[i], &t, stream, results, &b);
		*bad += b;
	}
	*rate = (double)o->n / secs(t0, t1);
	for (i = 0; i < o->shards; i++)
		ok_reply(c[i], "DEL %s %s %s:dlq", stream, results, stream);
out:
	if (gpuqd > 0) {
		kill(gpuqd, SIGKILL);
		waitpid(gpuqd, NULL, 0);
	}
	for (i = 0; i < o->shards; i++)
		if (c[i])
			redisFree(c[i]);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (!getenv("GPUQ_BENCH_KEEP") && system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
	return rc;
}

/* ---- the mode ---- */

static void usage(FILE *f)
{
	fputs("usage: gpuq-bench tracka [options]\n"
	      "  -n, --messages N   entries per measurement (default 1000000)\n"
	      "  -z, --size BYTES   payload bytes (default 64)\n"
	      "      --handler H    echo | checksum | vector (default checksum)\n"
	      "      --batch N      XREADGROUP COUNT of both consumers (default 512)\n"
	      "      --result-batch N  results per result-stream entry, gpuqd's\n"
	      "                     redis_result_batch (default 1)\n"
	      "      --workers N    gpuqd's backend workers (default 1)\n"
	      "      --capacity N   gpuqd's ring slots (default 8192)\n"
	      "      --backend B    auto | cpu | cuda (default auto)\n"
	      "      --gpuqd PATH   the broker to start (default: $GPUQD, the\n"
	      "                     build tree's, or gpuqd on PATH)\n"
	      "      --redis HOST:PORT[,HOST:PORT...]  use these Redis servers, one\n"
	      "                     per shard (default: start private ones)\n"
	      "      --shards N     N streams on N redis-servers, one bound queue\n"
	      "                     each in one gpuqd (1-16, default 1)\n"
	      "      --no-ceiling   skip the Redis ceiling measurement\n"
	      "      --force-epoll  gpuqd's Redis socket through epoll, not io_uring\n"
	      "      --repeat N     N interleaved runs of each (1-9), medians reported\n"
	      "  -j, --json         one JSON object on stdout\n", f);
}

/* --redis A,B,...: one address per shard, as many as --shards. */
static int split_addrs(struct topts *o)
{
	char *save = NULL, buf[SHARDS_MAX * 64], *a;
	int n = 0;
	if (!o->redis_list)
		return 0;
	snprintf(buf, sizeof(buf), "%s", o->redis_list);
	for (a = strtok_r(buf, ",", &save); a; a = strtok_r(NULL, ",", &save)) {
		if (n == SHARDS_MAX || !strchr(a, ':'))
			return -1;
		snprintf(o->addrs[n++], sizeof(o->addrs[0]), "%s", a);
	}
	return n == o->shards ? 0 : -1;
}

static int parse(struct topts *o, int argc, char **argv)
{
	static const struct option lo[] = {
		{ "messages", required_argument, NULL, 'n' },
		{ "size", required_argument, NULL, 'z' },
		{ "handler", required_argument, NULL, 'H' },
		{ "batch", required_argument, NULL, 'B' },
		{ "result-batch", required_argument, NULL, 'T' },
		{ "workers", required_argument, NULL, 'W' },
		{ "capacity", required_argument, NULL, 'C' },
		{ "backend", required_argument, NULL, 'K' },
		{ "gpuqd", required_argument, NULL, 'G' },
		{ "redis", required_argument, NULL, 'R' },
		{ "no-ceiling", no_argument, NULL, 'X' },
		{ "force-epoll", no_argument, NULL, 'E' },
		{ "repeat", required_argument, NULL, 'P' },
		{ "shards", required_argument, NULL, 'S' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;
	memset(o, 0, sizeof(*o));
	o->n = 1000000;
	o->size = 64;
	o->handler = "checksum";
	o->backend = "auto";
	o->batch = 512;
	o->result_batch = 1;
	o->workers = 1;
	o->capacity = 8192;
	o->repeat = 1;
	o->shards = 1;
	optind = 1;
	while ((c = getopt_long(argc, argv, "n:z:jh", lo, NULL)) != -1) {
		switch (c) {
		case 'n': o->n = strtoull(optarg, NULL, 10); break;
		case 'z': o->size = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'H': o->handler = optarg; break;
		case 'B': o->batch = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'T': o->result_batch = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'W': o->workers = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'C': o->capacity = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'K': o->backend = optarg; break;
		case 'G': snprintf(o->gpuqd, sizeof(o->gpuqd), "%s", optarg); break;
		case 'R': o->redis_list = optarg; break;
		case 'S': o->shards = atoi(optarg); break;
		case 'X': o->skip_ceiling = 1; break;
		case 'E': o->force_epoll = 1; break;
		case 'P': o->repeat = atoi(optarg); break;
		case 'j': o->json = 1; break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); return -1;
		}
	}
	o->handler_id = payload_handler_id(o->handler);
	if (!o->handler_id || !o->n || !o->size || !o->batch || !o->workers ||
	    !o->result_batch || o->result_batch > 1024 ||
	    o->repeat < 1 || o->repeat > BENCH_MAX_REPEAT || o->shards < 1 ||
	    o->shards > SHARDS_MAX || o->n < (uint64_t)o->shards ||
	    split_addrs(o)) {
		usage(stderr);
		return -1;
	}
	return 0;
}

/* Median of n rates (sorts them: keep the run order elsewhere). */
static double median(double *v, int n)
{
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
			double x = v[j];
			v[j] = v[j - 1];
			v[j - 1] = x;
		}
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

struct rates {
	double ceiling[BENCH_MAX_REPEAT], same[BENCH_MAX_REPEAT];
	double tracka[BENCH_MAX_REPEAT];
	int n;
	uint64_t bad;
};

static void list(const char *name, const double *v, int n, int json)
{
	printf(json ? ",\"%s\":[" : "    %s runs:", name);
	for (int i = 0; i < n; i++)
		printf(json ? "%s%.0f" : "%s %.0f", json && i ? "," : "", v[i]);
	printf(json ? "]" : "\n");
}

static void report(const struct topts *o, const struct rates *r)
{
	double c[BENCH_MAX_REPEAT], m[BENCH_MAX_REPEAT], t[BENCH_MAX_REPEAT];
	double ceiling, same, tracka, ratio, ratio_same;
	memcpy(c, r->ceiling, sizeof(c));
	memcpy(m, r->same, sizeof(m));
	memcpy(t, r->tracka, sizeof(t));
	ceiling = o->skip_ceiling ? 0 : median(c, r->n);
	same = o->skip_ceiling ? 0 : median(m, r->n);
	tracka = median(t, r->n);
	ratio = ceiling > 0 ? tracka / ceiling : 0;
	ratio_same = same > 0 ? tracka / same : 0;
	if (o->json) {
		printf("{\"mode\":\"tracka\",\"shards\":%d,\"messages\":%llu,\"size\":%u,"
		       "\"handler\":\"%s\",\"backend\":\"%s\",\"batch\":%u,"
		       "\"result_batch\":%u,\"io\":\"%s\",\"runs\":%d,"
		       "\"redis_ceiling_msgs\":%.0f,"
		       "\"same_work_client_msgs\":%.0f,"
		       "\"tracka_msgs\":%.0f,"
		       "\"ratio_to_ceiling\":%.3f,"
		       "\"ratio_to_same_work_client\":%.3f,"
		       "\"vs_predecessor\":%.2f,\"bad_results\":%llu",
		       o->shards, (unsigned long long)o->n, o->size, o->handler,
		       o->backend, o->batch, o->result_batch,
		       o->force_epoll ? "epoll" : "io_uring", r->n,
		       ceiling, same, tracka, ratio, ratio_same,
		       tracka / PREDECESSOR_TRACKA, (unsigned long long)r->bad);
		list("ceiling_runs", r->ceiling, o->skip_ceiling ? 0 : r->n, 1);
		list("same_work_client_runs", r->same,
		     o->skip_ceiling ? 0 : r->n, 1);
		list("tracka_runs", r->tracka, r->n, 1);
		printf("}\n");
		return;
	}
	printf("Track A: %llu entries of %u B, handler %s, backend %s, batch %u, "
	       "results per entry %u, %d shard%s, %s%s\n",
	       (unsigned long long)o->n, o->size, o->handler, o->backend, o->batch,
	       o->result_batch,
	       o->shards, o->shards > 1 ? "s (streams on as many redis-servers)" : "",
	       o->force_epoll ? "epoll" : "io_uring",
	       r->n > 1 ? ", medians of interleaved runs" : "");
	if (ceiling > 0)
		printf("  redis ceiling (XADD + XREADGROUP + XACK, pipelined): %10.0f msg/s\n",
		       ceiling);
	if (ceiling > 0 && r->n > 1)
		list("ceiling", r->ceiling, r->n, 0);
	if (same > 0)
		printf("  one pipelined client doing Track A's Redis work:      %10.0f msg/s\n",
		       same);
	if (same > 0 && r->n > 1)
		list("same-work client", r->same, r->n, 0);
	printf("  tracka end to end (XADD .. result XADD + XACK):       %10.0f msg/s\n",
	       tracka);
	if (r->n > 1)
		list("tracka", r->tracka, r->n, 0);
	if (ceiling > 0)
		printf("  ratio to the ceiling: %.1f %%; to the same-work "
		       "client: %.1f %%\n", 100 * ratio, 100 * ratio_same);
	printf("  vs the predecessor's 191k msg/s: %.2fx\n",
	       tracka / PREDECESSOR_TRACKA);
	printf("  results checked: %llu bad\n", (unsigned long long)r->bad);
}

int tracka_bench_main(int argc, char **argv)
{
	struct topts o;
	struct rates r = { .n = 0 };
	char err[160];
	int spawned = 0, rc = 0;
	if (parse(&o, argc, argv))
		return 2;
	signal(SIGPIPE, SIG_IGN);
	for (int i = 0; !o.redis_list && i < o.shards; i++) {
		if (redis_spawn(o.addrs[i], sizeof(o.addrs[i]), err, sizeof(err))) {
			fprintf(stderr, "gpuq-bench tracka: %s\n", err);
			redis_spawn_stop();
			return 1;
		}
		spawned = 1;
	}
	snprintf(o.addr, sizeof(o.addr), "%s", o.addrs[0]);
	/* Interleaved, so slow phases of a shared machine hit both. */
	for (r.n = 0; r.n < o.repeat && !rc; r.n++) {
		uint64_t bad = 0;
		rc = o.skip_ceiling ? 0 : run_ceiling_all(&o, 0, &r.ceiling[r.n]);
		if (!rc && !o.skip_ceiling)
			rc = run_ceiling_all(&o, 1, &r.same[r.n]);
		if (!rc)
			rc = run_tracka(&o, &r.tracka[r.n], &bad);
		r.bad += bad;
	}
	if (spawned)
		redis_spawn_stop();
	if (rc) {
		fprintf(stderr, "gpuq-bench tracka: failed (%s)\n", gpuq_strerror(rc));
		return 1;
	}
	report(&o, &r);
	return r.bad ? 1 : 0;
}
