/*
 * check_tracka.c - Track A (docs/tracka.md) against a real redis-server on a
 * private loopback port: a loader XADDs entries, real gpuqd processes bind
 * a queue to the stream, and the result, dead-letter and pending lists are
 * checked entry by entry (every checksum is recomputed here).
 *
 * Skips (77) when configure found no redis-server ($REDIS_SERVER).
 * $GPUQ_TRACKA_MESSAGES sets the size of the big run (default 1000000;
 * 200000 when built with AddressSanitizer, which is several times slower).
 */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "broker/handlers.h"
#include "broker/tracka_window.h"
#include "tests/harness.h"
#include "tests/runner.h"

#define PAYLOAD 64
#define STREAM "in"
#define RESULTS "in:results"
#define DLQ "in:dlq"
#define GROUP "gpuq"

/* ------------------------------------------------------------------------ */
/* redis-server                                                             */
/* ------------------------------------------------------------------------ */

struct redis_proc {
	pid_t pid;
	int port;
	char dir[64];
	const char *password; /* requirepass, or NULL */
};

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A port nothing listens on right now (the kernel's choice). */
static int free_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	int s = socket(AF_INET, SOCK_STREAM, 0), port;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_ge(s, 0);
	ck_assert_int_eq(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(getsockname(s, (struct sockaddr *)&sa, &len), 0);
	port = ntohs(sa.sin_port);
	close(s);
	return port;
}

static redisContext *rconnect(int port)
{
	struct timeval tv = { 2, 0 };
	redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
	if (c && c->err) {
		redisFree(c);
		return NULL;
	}
	return c;
}

static void redis_spawn(struct redis_proc *r)
{
	char port[16], log[128];
	snprintf(port, sizeof(port), "%d", r->port);
	snprintf(log, sizeof(log), "%s/redis.log", r->dir);
	r->pid = fork();
	ck_assert_int_ge(r->pid, 0);
	if (r->pid == 0) {
		/* appendonly with fsync on every write: the stream, its
		 * group and pending list survive a restart exactly. */
		execl(getenv("REDIS_SERVER"), "redis-server", "--port", port,
		      "--bind", "127.0.0.1", "--dir", r->dir, "--save", "",
		      "--appendonly", "yes", "--appendfsync", "always",
		      "--logfile", log,
		      r->password ? "--requirepass" : (char *)NULL,
		      r->password, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 500; i++) {
		redisContext *c = rconnect(r->port);
		if (c) {
			redisReply *rep;
			if (r->password)
				freeReplyObject(redisCommand(c, "AUTH %s", r->password));
			rep = redisCommand(c, "PING");
			int ok = rep && rep->type == REDIS_REPLY_STATUS;
			freeReplyObject(rep);
			redisFree(c);
			if (ok)
				return;
		}
		sleep_ms(10);
	}
	ck_abort_msg("redis-server did not come up on port %d", r->port);
}

static void redis_start(struct redis_proc *r)
{
	snprintf(r->dir, sizeof(r->dir), "/tmp/gpuq-redis-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(r->dir));
	r->port = free_port();
	redis_spawn(r);
}

static void redis_stop(struct redis_proc *r)
{
	int st;
	if (r->pid <= 0)
		return;
	kill(r->pid, SIGTERM);
	waitpid(r->pid, &st, 0);
	r->pid = 0;
}

static void redis_cleanup(struct redis_proc *r)
{
	char cmd[128];
	redis_stop(r);
	if (r->dir[0] && !getenv("GPUQ_TEST_KEEP")) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", r->dir);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", r->dir);
	}
}

static redisContext *rc_ok(const struct redis_proc *r)
{
	redisContext *c = rconnect(r->port);
	ck_assert_msg(c != NULL, "connect to redis on %d", r->port);
	if (r->password) {
		redisReply *rep = redisCommand(c, "AUTH %s", r->password);
		ck_assert(rep && rep->type == REDIS_REPLY_STATUS);
		freeReplyObject(rep);
	}
	return c;
}

static long long cmd_int(redisContext *c, const char *fmt, ...)
{
	va_list ap;
	redisReply *rep;
	long long v;
	va_start(ap, fmt);
	rep = redisvCommand(c, fmt, ap);
	va_end(ap);
	ck_assert_msg(rep && rep->type == REDIS_REPLY_INTEGER, "%s: %s", fmt,
		      rep && rep->str ? rep->str : "no integer reply");
	v = rep->integer;
	freeReplyObject(rep);
	return v;
}

/* Entries pending in the group (XPENDING summary), for one consumer or
 * (consumer NULL) all of them. */
static long long pending(redisContext *c, const char *consumer)
{
	redisReply *rep;
	long long n = 0;
	if (!consumer) {
		rep = redisCommand(c, "XPENDING %s %s", STREAM, GROUP);
		ck_assert(rep != NULL);
		/* No group yet: gpuqd has not got that far.  Nothing of it
		 * can count as done. */
		if (rep->type == REDIS_REPLY_ERROR &&
		    !strncmp(rep->str, "NOGROUP", 7)) {
			freeReplyObject(rep);
			return LLONG_MAX;
		}
		ck_assert_msg(rep->type == REDIS_REPLY_ARRAY && rep->elements >= 1,
			      "XPENDING summary: %s",
			      rep->type == REDIS_REPLY_ERROR ? rep->str : "?");
		n = rep->element[0]->integer;
	} else {
		rep = redisCommand(c, "XPENDING %s %s - + 10000000 %s", STREAM,
				   GROUP, consumer);
		ck_assert_msg(rep && rep->type == REDIS_REPLY_ARRAY, "XPENDING");
		n = (long long)rep->elements;
	}
	freeReplyObject(rep);
	return n;
}

/* ------------------------------------------------------------------------ */
/* Loader and checker                                                       */
/* ------------------------------------------------------------------------ */

/* A stream id is parsed by the broker's own parser (broker/tracka_window.c,
 * tested against brute force in check_tracka_window). */
static int sid_of(const char *s, struct sid *o)
{
	return sid_parse(s, strlen(s), o);
}

static int sid_cmp(const struct sid *a, const struct sid *b)
{
	if (a->ms != b->ms)
		return a->ms < b->ms ? -1 : 1;
	return a->seq < b->seq ? -1 : a->seq > b->seq;
}

/* Message i's payload: i, then a pseudo-random fill. */
static void payload_of(uint64_t i, uint8_t *p)
{
	uint64_t x = i * 0x9e3779b97f4a7c15ull + 1;
	memcpy(p, &i, 8);
	for (int k = 8; k < PAYLOAD; k++) {
		x ^= x >> 12;
		x ^= x << 25;
		x ^= x >> 27;
		p[k] = (uint8_t)((x * 0x2545f4914f6cdd1dull) >> 56);
	}
}

/* A load: what was XADDed, in order (stream ids only grow). */
struct load {
	size_t n, cap;
	struct sid *ids;
};

static void load_more(redisContext *c, struct load *l, size_t n)
{
	uint8_t p[PAYLOAD];
	const char *argv[5] = { "XADD", STREAM, "*", "payload", (char *)p };
	size_t lens[5] = { 4, strlen(STREAM), 1, 7, PAYLOAD };
	if (l->n + n > l->cap) {
		l->cap = l->n + n;
		l->ids = realloc(l->ids, l->cap * sizeof(*l->ids));
		ck_assert_ptr_nonnull(l->ids);
	}
	for (size_t done = 0; done < n;) {
		size_t k = n - done < 1000 ? n - done : 1000;
		for (size_t i = 0; i < k; i++) {
			payload_of(l->n + i, p);
			ck_assert_int_eq(redisAppendCommandArgv(c, 5, argv, lens),
					 REDIS_OK);
		}
		for (size_t i = 0; i < k; i++) {
			redisReply *rep;
			ck_assert_int_eq(redisGetReply(c, (void **)&rep), REDIS_OK);
			ck_assert_int_eq(rep->type, REDIS_REPLY_STRING);
			ck_assert_int_eq(sid_of(rep->str, &l->ids[l->n]), 0);
			l->n++;
			freeReplyObject(rep);
		}
		done += k;
	}
}

static long long index_of(const struct load *l, const char *src)
{
	struct sid id;
	size_t lo = 0, hi = l->n;
	if (sid_of(src, &id))
		return -1;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = sid_cmp(&l->ids[mid], &id);
		if (!c)
			return (long long)mid;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

static const redisReply *fieldv(const redisReply *fields, const char *name)
{
	for (size_t i = 0; i + 1 < fields->elements; i += 2)
		if (!strcmp(fields->element[i]->str, name))
			return fields->element[i + 1];
	return NULL;
}

/* A test of redis_result_batch > 1 sets this to the batch: result
 * entries then hold up to that many results each (docs/tracka.md). */
static long long grouped;

/* Results in the result stream.  With groups, the entries' n fields are
 * added up, reading on from where the last call stopped. */
static long long results_in(redisContext *c)
{
	static char from[64] = "-";
	static long long total;
	if (!grouped)
		return cmd_int(c, "XLEN %s", RESULTS);
	for (;;) {
		redisReply *rep = redisCommand(c, "XRANGE %s %s + COUNT 10000",
					       RESULTS, from);
		size_t k;
		ck_assert(rep && rep->type == REDIS_REPLY_ARRAY);
		k = rep->elements;
		for (size_t i = 0; i < k; i++) {
			const redisReply *n =
				fieldv(rep->element[i]->element[1], "n");
			ck_assert(n);
			total += atoll(n->str);
		}
		if (k)
			snprintf(from, sizeof(from), "(%s",
				 rep->element[k - 1]->element[0]->str);
		freeReplyObject(rep);
		if (!k)
			return total;
	}
}

/* Wait until `want` results are in and nothing is pending (or fail). */
static void wait_done(redisContext *c, long long want, int timeout_s)
{
	uint64_t end = now_ms() + (uint64_t)timeout_s * 1000;
	long long got = 0, pend = 0;
	while (now_ms() < end) {
		got = results_in(c) + cmd_int(c, "XLEN %s", DLQ);
		pend = pending(c, NULL);
		if (got >= want && pend == 0)
			return;
		sleep_ms(50);
	}
	ck_abort_msg("after %d s: %lld of %lld results, %lld pending",
		     timeout_s, got, want, pend);
}

static void wait_results(redisContext *c, long long want, int timeout_s)
{
	uint64_t end = now_ms() + (uint64_t)timeout_s * 1000;
	while (now_ms() < end) {
		if (results_in(c) >= want)
			return;
		sleep_ms(5);
	}
	ck_abort_msg("fewer than %lld results after %d s", want, timeout_s);
}

/* Call fn with the fields of every entry of the result stream, in order,
 * a page of XRANGE at a time (fn may use c: the page is already read). */
static void each_result(redisContext *c,
			void (*fn)(void *arg, const redisReply *fields),
			void *arg)
{
	char from[64] = "-";
	for (;;) {
		redisReply *rep = redisCommand(c, "XRANGE %s %s + COUNT 10000",
					       RESULTS, from);
		ck_assert(rep && rep->type == REDIS_REPLY_ARRAY);
		if (!rep->elements) {
			freeReplyObject(rep);
			return;
		}
		for (size_t i = 0; i < rep->elements; i++)
			fn(arg, rep->element[i]->element[1]);
		snprintf(from, sizeof(from), "(%s",
			 rep->element[rep->elements - 1]->element[0]->str);
		freeReplyObject(rep);
	}
}

struct tally {
	size_t results, dups;
	size_t entries; /* of the result stream */
	size_t by_consumer[2];
};

struct result_check {
	const struct load *l;
	const char *const *consumers;
	uint32_t *seen;
	struct tally *t;
};

/* One result: src names a loaded entry, res is its CRC32C. */
static void check_result(struct result_check *k, const redisReply *src,
			 const redisReply *res, const redisReply *attempts,
			 const redisReply *who)
{
	uint8_t p[PAYLOAD];
	uint32_t crc, want;
	long long idx;
	ck_assert(src && res && attempts && who);
	ck_assert_int_ge(atoll(attempts->str), 1);
	idx = index_of(k->l, src->str);
	ck_assert_msg(idx >= 0, "result for unknown entry %s", src->str);
	ck_assert_uint_eq(res->len, 4);
	payload_of((uint64_t)idx, p);
	want = gpuq_crc32c(p, PAYLOAD);
	memcpy(&crc, res->str, 4);
	ck_assert_msg(crc == want, "entry %lld: crc %08x, want %08x", idx, crc,
		      want);
	if (k->seen[idx]++)
		k->t->dups++;
	k->t->results++;
	for (int j = 0; k->consumers && j < 2; j++)
		if (k->consumers[j] && !strcmp(who->str, k->consumers[j]))
			k->t->by_consumer[j]++;
}

/* A result entry: one result (src, result, attempts, consumer), or with
 * groups n results (n, consumer, then src.<i>, result.<i>, attempts.<i>),
 * and no other field. */
static void check_one(void *arg, const redisReply *f)
{
	struct result_check *k = arg;
	const redisReply *n = fieldv(f, "n"), *who = fieldv(f, "consumer");
	long long m;
	k->t->entries++;
	if (!grouped) {
		ck_assert_ptr_null(n);
		ck_assert_uint_eq(f->elements, 8);
		check_result(k, fieldv(f, "src"), fieldv(f, "result"),
			     fieldv(f, "attempts"), who);
		return;
	}
	ck_assert(n);
	m = atoll(n->str);
	ck_assert_msg(m >= 1 && m <= grouped, "a group of %lld", m);
	ck_assert_uint_eq(f->elements, (size_t)(2 * (2 + 3 * m)));
	for (long long i = 0; i < m; i++) {
		char fs[32], fr[32], fa[32];
		snprintf(fs, sizeof(fs), "src.%lld", i);
		snprintf(fr, sizeof(fr), "result.%lld", i);
		snprintf(fa, sizeof(fa), "attempts.%lld", i);
		check_result(k, fieldv(f, fs), fieldv(f, fr), fieldv(f, fa),
			     who);
	}
}

/*
 * Read the whole result stream: every result names a loaded entry and
 * carries its correct CRC32C; every loaded entry has at least one result.
 * Duplicates (at-least-once) are counted, not refused.
 */
static void check_results(redisContext *c, const struct load *l, size_t first,
			  const char *const consumers[2], struct tally *t)
{
	struct result_check k = { l, consumers,
				  calloc(l->n ? l->n : 1, sizeof(uint32_t)), t };
	ck_assert_ptr_nonnull(k.seen);
	memset(t, 0, sizeof(*t));
	each_result(c, check_one, &k);
	for (size_t i = first; i < l->n; i++)
		ck_assert_msg(k.seen[i], "entry %zu has no result", i);
	free(k.seen);
}

/* ------------------------------------------------------------------------ */
/* gpuqd                                                                    */
/* ------------------------------------------------------------------------ */

static void start_gpuqd_m(struct broker_proc *b, const struct redis_proc *r,
			  const char *consumer, const char *extra, int epoll,
			  int restart, int metrics_port)
{
	char spec[512], metrics[64];
	const char *argv[6] = { "-q", spec };
	int n = 2;
	if (epoll)
		argv[n++] = "--force-epoll";
	if (metrics_port) {
		snprintf(metrics, sizeof(metrics), "metrics=127.0.0.1:%d",
			 metrics_port);
		argv[n++] = "--set";
		argv[n++] = metrics;
	}
	argv[n] = NULL;
	snprintf(spec, sizeof(spec),
		 "tq,handler=checksum,slot_bytes=%d,workers=2,redis_port=%d,"
		 "redis_stream=%s,redis_consumer=%s%s%s",
		 PAYLOAD, r->port, STREAM, consumer, extra ? "," : "",
		 extra ? extra : "");
	if (restart)
		ck_assert_int_eq(broker_restart(b, argv), 0);
	else
		ck_assert_int_eq(broker_start(b, argv), 0);
}

static void start_gpuqd(struct broker_proc *b, const struct redis_proc *r,
			const char *consumer, const char *extra, int epoll,
			int restart)
{
	start_gpuqd_m(b, r, consumer, extra, epoll, restart, 0);
}

/* GET /metrics; returns the body in buf. */
static void get_metrics(int port, char *buf, size_t cap)
{
	static const char req[] = "GET /metrics HTTP/1.0\r\n\r\n";
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_port = htons((uint16_t)port) };
	size_t got = 0;
	int s = socket(AF_INET, SOCK_STREAM, 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_ge(s, 0);
	ck_assert_int_eq(connect(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(send(s, req, sizeof(req) - 1, 0), (ssize_t)sizeof(req) - 1);
	for (;;) {
		ssize_t n = recv(s, buf + got, cap - 1 - got, 0);
		if (n <= 0)
			break;
		got += (size_t)n;
		if (got == cap - 1)
			break;
	}
	buf[got] = 0;
	close(s);
}

/* Until /metrics shows line (the binding counts an ack when its reply
 * arrives, a moment after Redis has applied it). */
static void wait_metric(int port, const char *line)
{
	static char buf[1 << 16];
	for (int i = 0; i < 500; i++) {
		get_metrics(port, buf, sizeof(buf));
		if (strstr(buf, line))
			return;
		sleep_ms(10);
	}
	ck_abort_msg("'%s' not in /metrics:\n%s", line, buf);
}

/* The counter `name` from the binding's last "stopped:" log line. */
static long long stopped_counter(const struct broker_proc *b, const char *name)
{
	static char buf[1 << 20];
	char pat[64];
	const char *p, *last = NULL;
	size_t n;
	FILE *f = fopen(b->log, "r");
	ck_assert_ptr_nonnull(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	for (p = buf; (p = strstr(p, "tracka tq: stopped:")); p++)
		last = p;
	ck_assert_msg(last != NULL, "no stop line in %s", b->log);
	snprintf(pat, sizeof(pat), " %s ", name);
	p = strstr(last, pat);
	ck_assert_msg(p != NULL, "no %s in the stop line", name);
	return strtoll(p + strlen(pat), NULL, 10);
}

static void wait_log(const struct broker_proc *b, const char *needle)
{
	for (int i = 0; i < 500; i++) {
		if (broker_log_contains(b, needle))
			return;
		sleep_ms(10);
	}
	ck_abort_msg("'%s' not in %s", needle, b->log);
}

static void stop_gpuqd(struct broker_proc *b)
{
	int st = broker_stop(b, SIGTERM, 20000);
	ck_assert_msg(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
		      "gpuqd did not exit cleanly (status %d)", st);
}

/* ------------------------------------------------------------------------ */
/* Tests                                                                    */
/* ------------------------------------------------------------------------ */

static size_t big_run(void)
{
	const char *e = getenv("GPUQ_TRACKA_MESSAGES");
	if (e && *e)
		return (size_t)strtoull(e, NULL, 10);
#if defined(__SANITIZE_ADDRESS__)
	return 200000;
#else
	return 1000000;
#endif
}

/* The loader XADDs while gpuqd runs; every entry gets exactly one correct
 * result (nothing failed, so nothing may be delivered twice), all acked. */
START_TEST(test_million)
{
	struct redis_proc r = { 0 };
	struct broker_proc b;
	struct load l = { 0 };
	struct tally t;
	size_t n = big_run();
	redisContext *c;
	redis_start(&r);
	start_gpuqd(&b, &r, "c1", "capacity=8192,redis_batch=512", 0, 0);
	c = rc_ok(&r);
	load_more(c, &l, n);
	wait_done(c, (long long)n, 900);
	stop_gpuqd(&b);
	check_results(c, &l, 0, NULL, &t);
	ck_assert_uint_eq(t.results, n);
	ck_assert_uint_eq(t.dups, 0);
	ck_assert_int_eq(cmd_int(c, "XLEN %s", DLQ), 0);
	ck_assert_int_eq(stopped_counter(&b, "acked"), (long long)n);
	ck_assert_int_eq(stopped_counter(&b, "redelivered"), 0);
	redisFree(c);
	free(l.ids);
	broker_cleanup(&b);
	redis_cleanup(&r);
}
END_TEST

/* redis_result_batch: results written in groups of up to 64 per entry.
 * Every entry still gets exactly one correct result, all are acked, and
 * the stream holds fewer entries than results.  The entries are loaded
 * before gpuqd starts, so harvests find many results done at once.  The
 * queue's results are stamped (ipc/cq.h), so each waits for its group
 * gathered out of its entry rather than in place. */
START_TEST(test_result_groups)
{
	struct redis_proc r = { 0 };
	struct broker_proc b;
	struct load l = { 0 };
	struct tally t;
	const size_t n = 50000;
	redisContext *c;
	grouped = 64;
	redis_start(&r);
	c = rc_ok(&r);
	load_more(c, &l, n);
	start_gpuqd(&b, &r, "c1", "capacity=8192,redis_batch=512,"
				  "redis_result_batch=64,stamped_results=1", 0, 0);
	wait_done(c, (long long)n, 300);
	stop_gpuqd(&b);
	check_results(c, &l, 0, NULL, &t);
	ck_assert_uint_eq(t.results, n);
	ck_assert_uint_eq(t.dups, 0);
	ck_assert_uint_lt(t.entries, n / 2);
	ck_assert_int_eq(cmd_int(c, "XLEN %s", RESULTS), (long long)t.entries);
	ck_assert_int_eq(stopped_counter(&b, "results"), (long long)n);
	ck_assert_int_eq(stopped_counter(&b, "acked"), (long long)n);
	redisFree(c);
	free(l.ids);
	broker_cleanup(&b);
	redis_cleanup(&r);
}
END_TEST

/* Both I/O paths: a plain run (loop index 0: io_uring, 1: epoll). */
START_TEST(test_paths)
{
	struct redis_proc r = { 0 };
	struct broker_proc b;
	struct load l = { 0 };
	struct tally t;
	redisContext *c;
	redis_start(&r);
	start_gpuqd(&b, &r, "c1", NULL, _i, 0);
	wait_log(&b, _i ? "(epoll)" : "(io_uring)");
	c = rc_ok(&r);
	load_more(c, &l, 20000);
	wait_done(c, 20000, 120);
	stop_gpuqd(&b);
	check_results(c, &l, 0, NULL, &t);
	ck_assert_uint_eq(t.results, 20000);
	ck_assert_uint_eq(t.dups, 0);
	redisFree(c);
	free(l.ids);
	broker_cleanup(&b);
	redis_cleanup(&r);
}
END_TEST

/* kill -9 mid-stream, restart: nothing lost; duplicates only among the
 * entries left pending (unacked) by the killed broker, and counted. */
START_TEST(test_kill9)
{
	struct redis_proc r = { 0 };
	struct broker_proc b;
	struct load l = { 0 };
	struct tally t;
	long long pend, redeliv;
	const size_t n = 100000;
	redisContext *c;
	redis_start(&r);
	c = rc_ok(&r);
	load_more(c, &l, n);
	start_gpuqd(&b, &r, "c1", "redis_claim_idle_ms=600000", 0, 0);
	wait_results(c, (long long)n / 4, 120);
	broker_stop(&b, SIGKILL, 5000);
	sleep_ms(200); /* whatever it had sent is in by now */
	pend = pending(c, NULL);
	start_gpuqd(&b, &r, "c1", "redis_claim_idle_ms=600000", 0, 1);
	wait_done(c, (long long)n, 300);
	stop_gpuqd(&b);
	check_results(c, &l, 0, NULL, &t);
	redeliv = stopped_counter(&b, "redelivered");
	fprintf(stderr, "kill -9: %lld pending at the kill, %lld redelivered, "
			"%zu duplicate results\n", pend, redeliv, t.dups);
	ck_assert_int_le(redeliv, pend);
	ck_assert_int_le((long long)t.dups, redeliv);
	ck_assert_uint_eq(t.results, n + t.dups);
	ck_assert_int_eq(cmd_int(c, "XLEN %s", DLQ), 0);
	redisFree(c);
	free(l.ids);
	broker_cleanup(&b);
	redis_cleanup(&r);
}
END_TEST

/* n entries consumed by one gpuqd (queue options opts, the epoll loop if
 * epoll) while redis-server restarts: three quarters are loaded first, and
 * Redis restarts once a quarter of the results are in; the last quarter is
 * loaded only after the restart, so gpuqd must reconnect to finish even
 * where it ran the rest before the restart (a GPU can, in a fraction of a
 * second).  Returns a connection to the restarted server, after every
 * entry is done and gpuqd has stopped. */
static redisContext *across_restart(struct redis_proc *r,
				    struct broker_proc *b, struct load *l,
				    size_t n, const char *opts, int epoll)
{
	redisContext *c;
	redis_start(r);
	c = rc_ok(r);
	load_more(c, l, n - n / 4);
	start_gpuqd(b, r, "c1", opts, epoll, 0);
	wait_results(c, (long long)n / 4, 120);
	redisFree(c);
	redis_stop(r);
	sleep_ms(300);
	redis_spawn(r);
	c = rc_ok(r);
	load_more(c, l, n / 4);
	wait_done(c, (long long)n, 300);
	stop_gpuqd(b);
	return c;
}

/* redis-server restarts mid-stream (appendonly): gpuqd reconnects and
 * nothing is lost.  Loop index 0: io_uring, 1: epoll, 2: io_uring with
 * results in groups of 16 (what was harvested but not confirmed when the
 * connection went is written again, not lost). */
START_TEST(test_redis_restart)
{
	struct redis_proc r = { 0 };
	struct broker_proc b;
	struct load l = { 0 };
	struct tally t;
	const size_t n = 60000;
	redisContext *c;
	if (_i == 2)
		grouped = 16;
	c = across_restart(&r, &b, &l, n,
			   _i == 2 ? "redis_result_batch=16" : NULL, _i == 1);
	check_results(c, &l, 0, NULL, &t);
	ck_assert_int_ge(stopped_counter(&b, "reconnects"), 1);
	ck_assert_int_le((long long)t.dups, stopped_counter(&b, "redelivered"));
	ck_assert_int_eq(cmd_int(c, "XLEN %s", DLQ), 0);
	redisFree(c);
	free(l.ids);
	broker_cleanup(&b);
	redis_cleanup(&r);
}
END_TEST

/* exactly_once on a bound queue: entries redelivered after a Redis
 * restart get their first run's result.  keysum proves no entry ran
 * twice: each payload's first 8 bytes are its own state key, so every
 * result must count one payload's 14 values, never 28. */
struct once_check {
	const struct load *l;
	uint32_t *seen;
	size_t results, dups;
};

/* A keysum result of an entry that ran once: one payload's 14 values. */
static void once_one(void *arg, const redisReply *f)
{
	struct once_check *k = arg;
	const redisReply *src = fieldv(f, "src"), *res = fieldv(f, "result");
	uint64_t count;
	long long idx;
	ck_assert(src && res && res->len == 16);
	idx = index_of(k->l, src->str);
	ck_assert_int_ge(idx, 0);
	memcpy(&count, res->str, 8);
	ck_assert_msg(count == (PAYLOAD - 8) / 4,
		      "entry %lld: count %llu: its handler ran more than once",
		      idx, (unsigned long long)count);
	k->dups += k->seen[idx]++ > 0;
	k->results++;
}

START_TEST(test_exactly_once_restart)
{
	struct redis_proc r = { 0 };
	struct broker_proc b;
	struct load l = { 0 };
	const size_t n = 40000;
	struct once_check k = { &l, calloc(n, sizeof(uint32_t)), 0, 0 };
	redisContext *c;
	ck_assert_ptr_nonnull(k.seen);
	c = across_restart(&r, &b, &l, n,
			   "handler=keysum,table_slots=128k,exactly_once=yes,"
			   "dedupe_slots=256k",
			   0);
	each_result(c, once_one, &k);
	for (size_t i = 0; i < n; i++)
		ck_assert_msg(k.seen[i] > 0, "entry %zu has no result", i);
	printf("exactly-once restart: %zu results, %zu duplicate results "
	       "(recorded ones), %lld redelivered\n",
	       k.results, k.dups, stopped_counter(&b, "redelivered"));
	ck_assert_int_eq(cmd_int(c, "XLEN %s", DLQ), 0);
	redisFree(c);
	free(k.seen);
	free(l.ids);
	broker_cleanup(&b);
	redis_cleanup(&r);
}
END_TEST

static void xadd_raw(redisContext *c, int argc, const char **argv,
		     const size_t *lens, char *id, size_t cap)
{
	redisReply *rep = redisCommandArgv(c, argc, argv, lens);
	ck_assert(rep && rep->type == REDIS_REPLY_STRING);
	snprintf(id, cap, "%s", rep->str);
	freeReplyObject(rep);
}

/* The dead letter whose src is id, or NULL; *all is the XRANGE reply. */
static const redisReply *dead_letter(const redisReply *all, const char *id)
{
	for (size_t i = 0; i < all->elements; i++) {
		const redisReply *f = all->element[i]->element[1];
		const redisReply *src = fieldv(f, "src");
		if (src && !strcmp(src->str, id))
			return f;
	}
	return NULL;
}

static void assert_reason(const redisReply *all, const char *id,
			  const char *reason)
{
	const redisReply *f = dead_letter(all, id), *why;
	ck_assert_msg(f != NULL, "no dead letter for %s", id);
	why = fieldv(f, "reason");
	ck_assert_msg(why && strstr(why->str, reason), "%s: reason '%s', want '%s'",
		      id, why ? why->str : "(none)", reason);
}

/* Garbled entries and entries larger than a slot go to the dead-letter
 * stream with a clear reason and their fields; good ones around them are
 * processed.  Loop index 0: io_uring, 1: epoll. */
START_TEST(test_bad_entries)
{
	struct redis_proc r = { 0 };
	struct broker_proc b;
	char id_nopay[64], id_empty[64], id_key[64], id_big[64], id_ok[64];
	char big[PAYLOAD + 1];
	int mport;
	redisReply *all;
	const redisReply *f;
	redisContext *c;
	redis_start(&r);
	c = rc_ok(&r);
	memset(big, 'x', sizeof(big));
	{
		const char *a1[] = { "XADD", STREAM, "*", "foo", "bar" };
		const char *a2[] = { "XADD", STREAM, "*", "payload", "" };
		const char *a3[] = { "XADD", STREAM, "*", "payload", "abc", "key", "12x" };
		const char *a4[] = { "XADD", STREAM, "*", "payload", big };
		const char *a5[] = { "XADD", STREAM, "*", "payload", "good", "key", "7" };
		size_t l1[] = { 4, 2, 1, 3, 3 }, l2[] = { 4, 2, 1, 7, 0 };
		size_t l3[] = { 4, 2, 1, 7, 3, 3, 3 }, l4[] = { 4, 2, 1, 7, sizeof(big) };
		size_t l5[] = { 4, 2, 1, 7, 4, 3, 1 };
		xadd_raw(c, 5, a1, l1, id_nopay, sizeof(id_nopay));
		xadd_raw(c, 5, a2, l2, id_empty, sizeof(id_empty));
		xadd_raw(c, 7, a3, l3, id_key, sizeof(id_key));
		xadd_raw(c, 5, a4, l4, id_big, sizeof(id_big));
		xadd_raw(c, 7, a5, l5, id_ok, sizeof(id_ok));
	}
	mport = free_port();
	start_gpuqd_m(&b, &r, "c1", NULL, _i, 0, mport);
	wait_done(c, 5, 60);
	wait_metric(mport, "gpuq_tracka_dead_lettered_total{queue=\"tq\"} 4\n");
	wait_metric(mport, "gpuq_tracka_results_total{queue=\"tq\"} 1\n");
	wait_metric(mport, "gpuq_tracka_acked_total{queue=\"tq\"} 5\n");
	stop_gpuqd(&b);
	ck_assert_int_eq(cmd_int(c, "XLEN %s", RESULTS), 1);
	ck_assert_int_eq(cmd_int(c, "XLEN %s", DLQ), 4);
	all = redisCommand(c, "XRANGE %s - +", DLQ);
	ck_assert(all && all->type == REDIS_REPLY_ARRAY);
	assert_reason(all, id_nopay, "missing field 'payload'");
	assert_reason(all, id_empty, "empty payload");
	assert_reason(all, id_key, "bad field 'key'");
	assert_reason(all, id_big, "larger than the slot (slot_bytes 64)");
	/* The entry's own fields travel with it, unchanged. */
	f = dead_letter(all, id_big);
	ck_assert_uint_eq(fieldv(f, "orig:payload")->len, sizeof(big));
	ck_assert_int_eq(memcmp(fieldv(f, "orig:payload")->str, big, sizeof(big)), 0);
	f = dead_letter(all, id_nopay);
	ck_assert_str_eq(fieldv(f, "orig:foo")->str, "bar");
	ck_assert_ptr_null(dead_letter(all, id_ok));
	freeReplyObject(all);
	ck_assert_int_eq(stopped_counter(&b, "dead-lettered"), 4);
	ck_assert_int_eq(stopped_counter(&b, "acked"), 5);
	redisFree(c);
	broker_cleanup(&b);
	redis_cleanup(&r);
}
END_TEST

/* UC-5 over Redis: fault injection makes every handler run fail; each
 * message goes to the dead-letter stream after max_attempts runs, with its
 * payload, and is acked.  Far more of them than the queue's dead-letter
 * ring holds (16): their copies there must be freed, or the worker would
 * stop for good once it is full. */
START_TEST(test_handler_failures)
{
	struct redis_proc r = { 0 };
	struct broker_proc b;
	struct load l = { 0 };
	redisReply *all;
	redisContext *c;
	redis_start(&r);
	c = rc_ok(&r);
	load_more(c, &l, 200);
	start_gpuqd(&b, &r, "c1", "fail_ppm=1000000,max_attempts=2,dlq_capacity=16",
		    0, 0);
	wait_done(c, 200, 60);
	stop_gpuqd(&b);
	ck_assert_int_eq(cmd_int(c, "XLEN %s", RESULTS), 0);
	all = redisCommand(c, "XRANGE %s - +", DLQ);
	ck_assert(all && all->type == REDIS_REPLY_ARRAY);
	ck_assert_uint_eq(all->elements, 200);
	for (size_t i = 0; i < all->elements; i++) {
		const redisReply *f = all->element[i]->element[1];
		const redisReply *p = fieldv(f, "orig:payload");
		long long idx = index_of(&l, fieldv(f, "src")->str);
		uint8_t want[PAYLOAD];
		ck_assert_int_ge(idx, 0);
		ck_assert_str_eq(fieldv(f, "reason")->str,
				 "handler failed 2 attempts");
		ck_assert_str_eq(fieldv(f, "attempts")->str, "2");
		payload_of((uint64_t)idx, want);
		ck_assert(p && p->len == PAYLOAD && !memcmp(p->str, want, PAYLOAD));
	}
	freeReplyObject(all);
	redisFree(c);
	free(l.ids);
	broker_cleanup(&b);
	redis_cleanup(&r);
}
END_TEST

/* A dead consumer's pending entries are taken over with XAUTOCLAIM; those
 * delivered more than max_deliveries times go to the dead-letter stream. */
START_TEST(test_claim_dead_consumer)
{
	struct redis_proc r = { 0 };
	struct broker_proc b;
	struct load l = { 0 };
	struct tally t;
	redisReply *rep, *all;
	char ids[3][64];
	redisContext *c;
	redis_start(&r);
	c = rc_ok(&r);
	rep = redisCommand(c, "XGROUP CREATE %s %s 0 MKSTREAM", STREAM, GROUP);
	ck_assert(rep && rep->type == REDIS_REPLY_STATUS);
	freeReplyObject(rep);
	load_more(c, &l, 10);
	/* "ghost" takes all ten and dies; three of them have been
	 * delivered 9 times already. */
	rep = redisCommand(c, "XREADGROUP GROUP %s ghost COUNT 10 STREAMS %s >",
			   GROUP, STREAM);
	ck_assert(rep && rep->type == REDIS_REPLY_ARRAY);
	freeReplyObject(rep);
	for (int i = 0; i < 3; i++) {
		snprintf(ids[i], sizeof(ids[i]), "%llu-%llu",
			 (unsigned long long)l.ids[i].ms,
			 (unsigned long long)l.ids[i].seq);
		rep = redisCommand(c, "XCLAIM %s %s ghost 0 %s RETRYCOUNT 9",
				   STREAM, GROUP, ids[i]);
		ck_assert(rep && rep->type == REDIS_REPLY_ARRAY);
		freeReplyObject(rep);
	}
	ck_assert_int_eq(pending(c, "ghost"), 10);
	sleep_ms(200);
	start_gpuqd(&b, &r, "c1", "redis_claim_idle_ms=100,redis_max_deliveries=5",
		    0, 0);
	wait_done(c, 10, 60);
	stop_gpuqd(&b);
	ck_assert_int_eq(pending(c, "ghost"), 0);
	ck_assert_int_eq(cmd_int(c, "XLEN %s", RESULTS), 7);
	all = redisCommand(c, "XRANGE %s - +", DLQ);
	ck_assert(all && all->type == REDIS_REPLY_ARRAY);
	ck_assert_uint_eq(all->elements, 3);
	for (int i = 0; i < 3; i++)
		assert_reason(all, ids[i],
			      "delivered 10 times, more than redis_max_deliveries 5");
	freeReplyObject(all);
	ck_assert_int_eq(stopped_counter(&b, "claimed"), 10);
	/* The seven others have a correct result each. */
	check_results(c, &l, 3, NULL, &t);
	ck_assert_uint_eq(t.results, 7);
	redisFree(c);
	free(l.ids);
	broker_cleanup(&b);
	redis_cleanup(&r);
}
END_TEST

/* Own pending entries from an earlier run are processed first after a
 * start; one deleted from the stream meanwhile goes to the dead-letter
 * stream with its reason instead of vanishing from view. */
START_TEST(test_deleted_pending)
{
	struct redis_proc r = { 0 };
	struct broker_proc b;
	struct load l = { 0 };
	struct tally t;
	redisReply *rep, *all;
	char gone[64];
	redisContext *c;
	redis_start(&r);
	c = rc_ok(&r);
	rep = redisCommand(c, "XGROUP CREATE %s %s 0 MKSTREAM", STREAM, GROUP);
	ck_assert(rep && rep->type == REDIS_REPLY_STATUS);
	freeReplyObject(rep);
	load_more(c, &l, 5);
	/* "An earlier run of c1" took all five and died. */
	rep = redisCommand(c, "XREADGROUP GROUP %s c1 COUNT 10 STREAMS %s >",
			   GROUP, STREAM);
	ck_assert(rep && rep->type == REDIS_REPLY_ARRAY);
	freeReplyObject(rep);
	snprintf(gone, sizeof(gone), "%llu-%llu", (unsigned long long)l.ids[0].ms,
		 (unsigned long long)l.ids[0].seq);
	ck_assert_int_eq(cmd_int(c, "XDEL %s %s", STREAM, gone), 1);
	start_gpuqd(&b, &r, "c1", "redis_claim_idle_ms=600000", 0, 0);
	wait_done(c, 5, 60);
	stop_gpuqd(&b);
	all = redisCommand(c, "XRANGE %s - +", DLQ);
	ck_assert(all && all->type == REDIS_REPLY_ARRAY);
	ck_assert_uint_eq(all->elements, 1);
	assert_reason(all, gone, "entry deleted from the stream");
	freeReplyObject(all);
	check_results(c, &l, 1, NULL, &t);
	ck_assert_uint_eq(t.results, 4);
	ck_assert_int_eq(stopped_counter(&b, "redelivered"), 5);
	redisFree(c);
	free(l.ids);
	broker_cleanup(&b);
	redis_cleanup(&r);
}
END_TEST

/* Two gpuqd in one group share the stream: first both alive (each entry
 * exactly once), then one is killed and the other takes over its pending
 * entries: nothing lost. */
START_TEST(test_two_brokers)
{
	static const char *const names[2] = { "b1", "b2" };
	struct redis_proc r = { 0 };
	struct broker_proc b1, b2;
	struct load l = { 0 };
	struct tally t;
	const size_t n = 40000;
	const char *extra = "redis_claim_idle_ms=500,redis_batch=64";
	long long pend_b1;
	redisContext *c;
	redis_start(&r);
	start_gpuqd(&b1, &r, "b1", extra, 0, 0);
	start_gpuqd(&b2, &r, "b2", extra, 1, 0);
	c = rc_ok(&r);
	load_more(c, &l, n);
	wait_done(c, (long long)n, 300);
	check_results(c, &l, 0, names, &t);
	ck_assert_uint_eq(t.results, n);
	ck_assert_uint_eq(t.dups, 0);
	ck_assert_uint_eq(t.by_consumer[0] + t.by_consumer[1], n);
	fprintf(stderr, "two brokers: b1 %zu, b2 %zu results\n",
		t.by_consumer[0], t.by_consumer[1]);
	/* Second half: b1 dies mid-stream. */
	load_more(c, &l, n);
	wait_results(c, (long long)(n + n / 4), 120);
	broker_stop(&b1, SIGKILL, 5000);
	sleep_ms(200);
	pend_b1 = pending(c, "b1");
	wait_done(c, (long long)(2 * n), 300);
	stop_gpuqd(&b2);
	check_results(c, &l, 0, names, &t);
	fprintf(stderr, "after kill: b1 had %lld pending; b2 claimed %lld; "
			"%zu duplicates\n",
		pend_b1, stopped_counter(&b2, "claimed"), t.dups);
	ck_assert_int_eq(pending(c, "b1"), 0);
	ck_assert_int_ge(stopped_counter(&b2, "claimed"), pend_b1);
	ck_assert_int_le((long long)t.dups, pend_b1);
	ck_assert_uint_eq(t.results, 2 * n + t.dups);
	redisFree(c);
	free(l.ids);
	broker_cleanup(&b1);
	broker_cleanup(&b2);
	redis_cleanup(&r);
}
END_TEST

/* Run gpuqctl against b; returns its exit status. */
static int ctl(const struct broker_proc *b, const char *cmd, const char *arg)
{
	char out[4096];
	const char *argv[] = { tool_path("GPUQCTL", "broker/gpuqctl"), "-s",
			       b->socket, cmd, arg, NULL };
	int st = run_capture(argv, out, sizeof(out));
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* A paused queue fills its ring; the binding waits (never drops), keeps
 * the rest in Redis, and finishes everything once resumed.  The ring is
 * smaller than the binding's window, so the wait is on the ring. */
START_TEST(test_backpressure)
{
	struct redis_proc r = { 0 };
	struct broker_proc b;
	struct load l = { 0 };
	struct tally t;
	redisContext *c;
	redis_start(&r);
	start_gpuqd(&b, &r, "c1", "capacity=64,cq_capacity=1024", 0, 0);
	ck_assert_int_eq(ctl(&b, "pause", "tq"), 0);
	c = rc_ok(&r);
	load_more(c, &l, 5000);
	sleep_ms(500);
	ck_assert_int_eq(cmd_int(c, "XLEN %s", RESULTS), 0);
	ck_assert_int_eq(ctl(&b, "resume", "tq"), 0);
	wait_done(c, 5000, 120);
	stop_gpuqd(&b);
	check_results(c, &l, 0, NULL, &t);
	ck_assert_uint_eq(t.results, 5000);
	ck_assert_uint_eq(t.dups, 0);
	ck_assert_int_ge(stopped_counter(&b, "full-waits"), 1);
	redisFree(c);
	free(l.ids);
	broker_cleanup(&b);
	redis_cleanup(&r);
}
END_TEST

/* SIGTERM mid-stream: gpuqd drains (exit 0), writing the results of what
 * its ring held; a restart finishes the rest. */
START_TEST(test_drain_restart)
{
	struct redis_proc r = { 0 };
	struct broker_proc b;
	struct load l = { 0 };
	struct tally t;
	const size_t n = 50000;
	redisContext *c;
	redis_start(&r);
	c = rc_ok(&r);
	load_more(c, &l, n);
	start_gpuqd(&b, &r, "c1", NULL, 0, 0);
	wait_results(c, (long long)n / 5, 120);
	stop_gpuqd(&b);
	ck_assert_int_lt(cmd_int(c, "XLEN %s", RESULTS), (long long)n);
	start_gpuqd(&b, &r, "c1", NULL, 0, 1);
	wait_done(c, (long long)n, 300);
	stop_gpuqd(&b);
	check_results(c, &l, 0, NULL, &t);
	ck_assert_int_le((long long)t.dups, stopped_counter(&b, "redelivered"));
	ck_assert_uint_eq(t.results, n + t.dups);
	redisFree(c);
	free(l.ids);
	broker_cleanup(&b);
	redis_cleanup(&r);
}
END_TEST

/* UC-3 over Redis: an ordered queue, entries with keys; for each key the
 * results appear in the order of the entries. */
struct order_check {
	redisContext *c;
	struct sid last[8];
	size_t seen;
};

static void order_one(void *arg, const redisReply *f)
{
	struct order_check *k = arg;
	const redisReply *src = fieldv(f, "src"), *pay;
	redisReply *e = redisCommand(k->c, "XRANGE %s %s %s", STREAM, src->str,
				     src->str);
	struct sid id;
	size_t key;
	ck_assert(e && e->type == REDIS_REPLY_ARRAY && e->elements == 1);
	pay = fieldv(e->element[0]->element[1], "payload");
	key = strtoull(pay->str + 1, NULL, 10) % 8;
	ck_assert_int_eq(sid_of(src->str, &id), 0);
	ck_assert_msg(sid_cmp(&k->last[key], &id) < 0,
		      "key %zu: %s after a later entry", key, src->str);
	k->last[key] = id;
	freeReplyObject(e);
	k->seen++;
}

START_TEST(test_key_order)
{
	struct redis_proc r = { 0 };
	struct broker_proc b;
	struct order_check k;
	const size_t n = 4000;
	redisContext *c;
	redis_start(&r);
	c = rc_ok(&r);
	memset(&k, 0, sizeof(k));
	k.c = c;
	for (size_t i = 0; i < n; i++) {
		char key[8], pay[32];
		snprintf(key, sizeof(key), "%zu", i % 8);
		snprintf(pay, sizeof(pay), "m%zu", i);
		redisAppendCommand(c, "XADD %s * payload %s key %s", STREAM, pay, key);
	}
	for (size_t i = 0; i < n; i++) {
		redisReply *rep;
		ck_assert_int_eq(redisGetReply(c, (void **)&rep), REDIS_OK);
		ck_assert_int_eq(rep->type, REDIS_REPLY_STRING);
		freeReplyObject(rep);
	}
	start_gpuqd(&b, &r, "c1", "ordered=yes,workers=4", 0, 0);
	wait_done(c, (long long)n, 120);
	stop_gpuqd(&b);
	/* Walk the results in stream order: per key, src ids only grow.
	 * Key of an entry: its payload "m<i>" says i, and i % 8 its key. */
	each_result(c, order_one, &k);
	ck_assert_uint_eq(k.seen, n);
	redisFree(c);
	broker_cleanup(&b);
	redis_cleanup(&r);
}
END_TEST

/* A password-protected Redis: the right password works; a wrong one is
 * refused, logged, and nothing is read (or lost). */
START_TEST(test_auth)
{
	struct redis_proc r = { .password = "pa55:word" };
	struct broker_proc b;
	struct load l = { 0 };
	redisContext *c;
	redis_start(&r);
	c = rc_ok(&r);
	load_more(c, &l, 100);
	start_gpuqd(&b, &r, "c1", "redis_password=wrong", 0, 0);
	wait_log(&b, "AUTH");
	ck_assert_int_eq(cmd_int(c, "XLEN %s", RESULTS), 0);
	stop_gpuqd(&b);
	start_gpuqd(&b, &r, "c1", "redis_password=pa55:word", 0, 1);
	wait_done(c, 100, 60);
	stop_gpuqd(&b);
	ck_assert_int_eq(cmd_int(c, "XLEN %s", RESULTS), 100);
	redisFree(c);
	free(l.ids);
	broker_cleanup(&b);
	redis_cleanup(&r);
}
END_TEST

static Suite *suite_tracka(void)
{
	Suite *s = suite_create("tracka");
	TCase *tc = tcase_create("redis");
	tcase_set_timeout(tc, 1800);
	tcase_add_loop_test(tc, test_bad_entries, 0, 2);
	tcase_add_loop_test(tc, test_paths, 0, 2);
	tcase_add_test(tc, test_handler_failures);
	tcase_add_test(tc, test_auth);
	tcase_add_test(tc, test_backpressure);
	tcase_add_test(tc, test_key_order);
	tcase_add_test(tc, test_drain_restart);
	tcase_add_test(tc, test_claim_dead_consumer);
	tcase_add_test(tc, test_deleted_pending);
	tcase_add_test(tc, test_kill9);
	tcase_add_loop_test(tc, test_redis_restart, 0, 3);
	tcase_add_test(tc, test_result_groups);
	tcase_add_test(tc, test_exactly_once_restart);
	tcase_add_test(tc, test_two_brokers);
	tcase_add_test(tc, test_million);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	const char *rs = getenv("REDIS_SERVER");
	SRunner *sr;
	int failed;
	if (!rs || !*rs || access(rs, X_OK) != 0) {
		fprintf(stderr, "check_tracka: no redis-server: skipped\n");
		return 77;
	}
	sr = srunner_create(suite_tracka());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
