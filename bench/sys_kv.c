/*
 * sys_kv.c - gpuq-bench kv: the client key-value API (gpuq_kv_mput /
 * gpuq_kv_mget on a queue with handler kv) against Redis MSET / MGET on the
 * same machine, in the same run, with the same keys, values, batch sizes
 * and process count.  It starts its own gpuqd and redis-server.
 *
 * Each of P processes writes its own K keys in batches of B (put phase),
 * then reads R x K keys chosen at random over all P x K in batches of B
 * (get phase), checking every value.  Redis gets the same work as MSET and
 * MGET commands of B keys, PIPELINE of them in flight per connection.
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
#include "bench/procs.h"
#include "libclient/gpuq.h"

#define KEY_LEN 10 /* "k:%08u" */
#define PIPELINE 4

struct kopts {
	char gpuqd[PATH_MAX];
	char addr[64];     /* redis host:port */
	char sock[PATH_MAX];
	const char *backend;
	uint32_t procs, keys, batch, vsize, rounds, workers;
	int json;
};

enum phase { PUT, GET };

struct kv_job {
	const struct kopts *o;
	enum phase ph;
	int redis;
	struct procs_gate *gate;
};

static void key_of(uint32_t i, char *k)
{
	char tmp[16];
	snprintf(tmp, sizeof(tmp), "k:%08u", i);
	memcpy(k, tmp, KEY_LEN);
}

static void value_of(uint32_t i, uint32_t n, uint8_t *v)
{
	for (uint32_t j = 0; j < n; j++)
		v[j] = (uint8_t)(i * 131u + j * 7u);
}

static int value_ok(uint32_t i, const void *v, size_t n, uint32_t want)
{
	uint8_t ref[256];
	value_of(i, want, ref);
	return n == want && !memcmp(v, ref, want);
}

/* Keys of batch b of this process: its own (put) or random ones (get). */
static uint32_t pick(const struct kopts *o, enum phase ph, int idx,
		     uint64_t *rng, uint32_t k)
{
	if (ph == PUT)
		return (uint32_t)idx * o->keys + k;
	*rng = *rng * 6364136223846793005ull + 1442695040888963407ull;
	return (uint32_t)((*rng >> 33) % ((uint64_t)o->procs * o->keys));
}

static uint64_t ops_of(const struct kopts *o, enum phase ph)
{
	return (uint64_t)o->keys * (ph == PUT ? 1 : o->rounds);
}

/* ---- gpuq ---- */

static int gpuq_child(int idx, void *arg, struct proc_result *out)
{
	const struct kv_job *j = arg;
	const struct kopts *o = j->o;
	gpuq_client *c = NULL;
	gpuq_queue *q = NULL;
	gpuq_kv_item *it = calloc(o->batch, sizeof(*it));
	char *keys = calloc(o->batch, KEY_LEN);
	uint8_t *vals = calloc(o->batch, 256);
	uint32_t *which = calloc(o->batch, sizeof(*which));
	uint64_t rng = 0x9e3779b97f4a7c15ull * (uint64_t)(idx + 1), t0, total;
	int rc = -ENOMEM;
	if (it && keys && vals && which)
		rc = gpuq_connect(o->sock, &c);
	if (!rc)
		rc = gpuq_open(c, "kv", &q);
	t0 = procs_gate_wait(j->gate, 30000);
	total = ops_of(o, j->ph);
	for (uint64_t done = 0; !rc && done < total;) {
		uint32_t n = total - done < o->batch ? (uint32_t)(total - done)
						     : o->batch;
		for (uint32_t i = 0; i < n; i++) {
			which[i] = pick(o, j->ph, idx, &rng, (uint32_t)(done + i));
			key_of(which[i], keys + (size_t)i * KEY_LEN);
			/* a get asks for the value size it knows: the reply
			 * room each get takes is what it asks for */
			it[i] = (gpuq_kv_item){ keys + (size_t)i * KEY_LEN, KEY_LEN,
						o->vsize, vals + (size_t)i * 256,
						0 };
			if (j->ph == PUT)
				value_of(which[i], o->vsize, it[i].val);
		}
		rc = j->ph == PUT ? gpuq_kv_mput(q, it, n, 30000)
				  : gpuq_kv_mget(q, it, n, 30000);
		for (uint32_t i = 0; !rc && i < n; i++) {
			if (it[i].status)
				out->failed++;
			else if (j->ph == GET &&
				 !value_ok(which[i], it[i].val, it[i].vlen, o->vsize))
				out->bad++;
			else
				out->verified++;
		}
		done += n;
		out->sent = done;
	}
	out->seconds = (double)(procs_now_ns() - t0) / 1e9;
	out->rc = rc;
	if (rc)
		fprintf(stderr, "gpuq-bench kv: process %d: %s\n", idx,
			gpuq_strerror(rc));
	if (c)
		gpuq_disconnect(c);
	free(it);
	free(keys);
	free(vals);
	free(which);
	return rc;
}

/* ---- Redis ---- */

/* Send one MSET or MGET of n keys (keys and values as in gpuq's run). */
static int redis_send(redisContext *c, const struct kopts *o, enum phase ph,
		      const uint32_t *which, uint32_t n, char *keys,
		      uint8_t *vals)
{
	const char **argv = malloc((1 + 2 * (size_t)n) * sizeof(*argv));
	size_t *lens = malloc((1 + 2 * (size_t)n) * sizeof(*lens));
	int argc = 1, rc;
	if (!argv || !lens) {
		free(argv);
		free(lens);
		return -ENOMEM;
	}
	argv[0] = ph == PUT ? "MSET" : "MGET";
	lens[0] = 4;
	for (uint32_t i = 0; i < n; i++) {
		key_of(which[i], keys + (size_t)i * KEY_LEN);
		argv[argc] = keys + (size_t)i * KEY_LEN;
		lens[argc++] = KEY_LEN;
		if (ph == PUT) {
			value_of(which[i], o->vsize, vals + (size_t)i * 256);
			argv[argc] = (const char *)vals + (size_t)i * 256;
			lens[argc++] = o->vsize;
		}
	}
	rc = redisAppendCommandArgv(c, argc, argv, lens) == REDIS_OK ? 0 : -EIO;
	free(argv);
	free(lens);
	return rc;
}

static int redis_check(redisContext *c, const struct kopts *o, enum phase ph,
		       const uint32_t *which, uint32_t n, struct proc_result *out)
{
	redisReply *r;
	if (redisGetReply(c, (void **)&r) != REDIS_OK || !r)
		return -EIO;
	if (ph == PUT) {
		int ok = r->type == REDIS_REPLY_STATUS;
		out->verified += ok ? n : 0;
		out->failed += ok ? 0 : n;
	} else if (r->type == REDIS_REPLY_ARRAY && r->elements == n) {
		for (uint32_t i = 0; i < n; i++) {
			const redisReply *e = r->element[i];
			if (e->type != REDIS_REPLY_STRING)
				out->failed++;
			else if (!value_ok(which[i], e->str, e->len, o->vsize))
				out->bad++;
			else
				out->verified++;
		}
	} else {
		out->failed += n;
	}
	freeReplyObject(r);
	return 0;
}

static int redis_child(int idx, void *arg, struct proc_result *out)
{
	const struct kv_job *j = arg;
	const struct kopts *o = j->o;
	redisContext *c = bench_redis_connect(o->addr);
	uint32_t *which = calloc((size_t)o->batch * PIPELINE, sizeof(*which));
	char *keys = calloc((size_t)o->batch * PIPELINE, KEY_LEN);
	uint8_t *vals = calloc((size_t)o->batch * PIPELINE, 256);
	uint32_t nb[PIPELINE];
	uint64_t rng = 0x9e3779b97f4a7c15ull * (uint64_t)(idx + 1), t0, total;
	int rc = c && which && keys && vals ? 0 : -EIO;
	t0 = procs_gate_wait(j->gate, 30000);
	total = ops_of(o, j->ph);
	for (uint64_t done = 0; !rc && done < total;) {
		int inflight = 0;
		for (; inflight < PIPELINE && done < total; inflight++) {
			uint32_t n = total - done < o->batch
					     ? (uint32_t)(total - done)
					     : o->batch;
			uint32_t *w = which + (size_t)inflight * o->batch;
			for (uint32_t i = 0; i < n; i++)
				w[i] = pick(o, j->ph, idx, &rng, (uint32_t)(done + i));
			rc = redis_send(c, o, j->ph, w, n,
					keys + (size_t)inflight * o->batch * KEY_LEN,
					vals + (size_t)inflight * o->batch * 256);
			if (rc)
				break;
			nb[inflight] = n;
			done += n;
		}
		for (int k = 0; !rc && k < inflight; k++)
			rc = redis_check(c, o, j->ph, which + (size_t)k * o->batch,
					 nb[k], out);
		out->sent = done;
	}
	out->seconds = (double)(procs_now_ns() - t0) / 1e9;
	out->rc = rc;
	if (c)
		redisFree(c);
	free(which);
	free(keys);
	free(vals);
	return rc;
}

/* ---- orchestration ---- */

/* One phase of one system: ops/s over all processes, or < 0. */
static double run_phase(const struct kopts *o, int redis, enum phase ph,
			uint64_t *bad)
{
	struct proc_result *res = calloc(o->procs, sizeof(*res));
	struct procs_gate *gate = procs_shared(sizeof(*gate));
	struct kv_job j = { o, ph, redis, gate };
	double secs = 0, rate = -1;
	uint64_t ok = 0;
	if (!res || !gate)
		goto out;
	procs_gate_init(gate, o->procs);
	if (procs_run((int)o->procs, redis ? redis_child : gpuq_child, &j, res))
		goto out;
	for (uint32_t i = 0; i < o->procs; i++) {
		secs = res[i].seconds > secs ? res[i].seconds : secs;
		ok += res[i].verified;
		*bad += res[i].bad + res[i].failed;
	}
	if (secs > 0)
		rate = (double)ok / secs;
out:
	if (gate)
		procs_shared_free(gate, sizeof(*gate));
	free(res);
	return rate;
}

static pid_t start_gpuqd(struct kopts *o, const char *dir)
{
	char spec[512], log[PATH_MAX];
	uint64_t slots = 2ull * o->procs * o->keys;
	pid_t pid;
	snprintf(o->sock, sizeof(o->sock), "%s/gpuqd.sock", dir);
	snprintf(log, sizeof(log), "%s/gpuqd.log", dir);
	/* Slots of 4 KB carry ~190 puts of 10-byte keys and 8-byte values;
	 * a reply holds as many gets. */
	snprintf(spec, sizeof(spec),
		 "kv,handler=kv,table_slots=%llu,table_value_bytes=%u,"
		 "slot_bytes=4096,result_bytes=16384,capacity=4096,workers=%u,"
		 "max_clients=%u",
		 (unsigned long long)slots, o->vsize, o->workers, o->procs + 4);
	const char *argv[] = { o->gpuqd, "-s", o->sock, "-b", o->backend,
			       "-q", spec, NULL };
	pid = bench_exec_gpuqd(log, argv);
	for (int i = 0; pid > 0 && i < 200; i++) {
		gpuq_client *c;
		if (gpuq_connect(o->sock, &c) == 0) {
			gpuq_disconnect(c);
			return pid;
		}
		usleep(50000);
	}
	fprintf(stderr, "gpuq-bench kv: gpuqd did not start (see %s)\n", log);
	if (pid > 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
	return -1;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: gpuq-bench kv [options]\n"
		"  -p N          processes (default 4)\n"
		"  -n N          keys per process (default 100000)\n"
		"  -b N          keys per batch: one mput/mget call, one MSET/MGET (256)\n"
		"  -z N          value bytes, 1-256 (default 32)\n"
		"  -r N          get rounds over the keys (default 4)\n"
		"  -w N          gpuqd workers (default 2; 32 with --backend cuda)\n"
		"  --backend B   gpuqd backend (default cpu)\n"
		"  --gpuqd PATH  the gpuqd to start ($GPUQD, the build tree's)\n"
		"  --redis ADDR  an existing redis-server (default: spawn one)\n"
		"  --json        one JSON object\n");
}

static int parse(struct kopts *o, int argc, char **argv)
{
	static const struct option lo[] = {
		{ "backend", required_argument, NULL, 'B' },
		{ "gpuqd", required_argument, NULL, 'G' },
		{ "redis", required_argument, NULL, 'R' },
		{ "json", no_argument, NULL, 'J' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;
	*o = (struct kopts){ .backend = "cpu", .procs = 4, .keys = 100000,
			     .batch = 256, .vsize = 32, .rounds = 4, .workers = 0 };
	optind = 1;
	while ((ch = getopt_long(argc, argv, "p:n:b:z:r:w:h", lo, NULL)) != -1) {
		switch (ch) {
		case 'p': o->procs = (uint32_t)atoi(optarg); break;
		case 'n': o->keys = (uint32_t)atoi(optarg); break;
		case 'b': o->batch = (uint32_t)atoi(optarg); break;
		case 'z': o->vsize = (uint32_t)atoi(optarg); break;
		case 'r': o->rounds = (uint32_t)atoi(optarg); break;
		case 'w': o->workers = (uint32_t)atoi(optarg); break;
		case 'B': o->backend = optarg; break;
		case 'G': snprintf(o->gpuqd, sizeof(o->gpuqd), "%s", optarg); break;
		case 'R': snprintf(o->addr, sizeof(o->addr), "%s", optarg); break;
		case 'J': o->json = 1; break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); return -1;
		}
	}
	/* A CPU worker is a thread, a CUDA one a block of the GPU's 100+
	 * SMs: the kv kernel's windows spread the load over 32 of them
	 * (benchmarking.md §1.2). */
	if (!o->workers)
		o->workers = strcmp(o->backend, "cuda") ? 2 : 32;
	if (!o->procs || o->procs > 64 || !o->keys || !o->batch ||
	    o->batch > 4096 || !o->vsize || o->vsize > 256 || !o->rounds) {
		usage(stderr);
		return -1;
	}
	return 0;
}

static void report(const struct kopts *o, const double rate[2][2],
		   uint64_t bad)
{
	static const char *const ph[2] = { "put", "get" };
	if (o->json) {
		printf("{\"tool\":\"gpuq-bench kv\",\"backend\":\"%s\",\"procs\":%u,"
		       "\"keys_per_proc\":%u,\"batch\":%u,\"value_bytes\":%u,"
		       "\"get_rounds\":%u,\"workers\":%u",
		       o->backend, o->procs, o->keys, o->batch, o->vsize,
		       o->rounds, o->workers);
		for (int p = 0; p < 2; p++)
			printf(",\"%s\":{\"gpuq_ops_s\":%.0f,\"redis_ops_s\":%.0f,"
			       "\"ratio\":%.3f}",
			       ph[p], rate[0][p], rate[1][p],
			       rate[1][p] > 0 ? rate[0][p] / rate[1][p] : 0.0);
		printf(",\"bad\":%llu}\n", (unsigned long long)bad);
		return;
	}
	printf("KV: %u processes x %u keys, %u-byte values, batch %u, %u get "
	       "rounds, gpuqd %s backend (%u workers), Redis pipeline %d\n",
	       o->procs, o->keys, o->vsize, o->batch, o->rounds, o->backend,
	       o->workers, PIPELINE);
	printf("  %-4s %16s %16s %8s\n", "", "gpuq ops/s", "redis ops/s",
	       "gpuq x");
	for (int p = 0; p < 2; p++)
		printf("  %-4s %16.0f %16.0f %8.2f   (%s vs %s)\n", ph[p],
		       rate[0][p], rate[1][p],
		       rate[1][p] > 0 ? rate[0][p] / rate[1][p] : 0.0,
		       p ? "gpuq_kv_mget" : "gpuq_kv_mput", p ? "MGET" : "MSET");
	printf("  values checked: %llu bad or failed\n", (unsigned long long)bad);
}

int kv_bench_main(int argc, char **argv)
{
	struct kopts o;
	char dir[] = "/tmp/gpuq-kvbench-XXXXXX", err[256];
	double rate[2][2] = { { -1, -1 }, { -1, -1 } };
	uint64_t bad = 0;
	int spawned = 0, rc = 1;
	pid_t g;
	if (parse(&o, argc, argv))
		return 2;
	bench_gpuqd_path(o.gpuqd, sizeof(o.gpuqd));
	if (!mkdtemp(dir))
		return 1;
	if (!o.addr[0]) {
		if (redis_spawn(o.addr, sizeof(o.addr), err, sizeof(err))) {
			fprintf(stderr, "gpuq-bench kv: %s\n", err);
			goto out_dir;
		}
		spawned = 1;
	}
	g = start_gpuqd(&o, dir);
	if (g < 0)
		goto out_redis;
	for (int p = PUT; p <= GET; p++) {
		rate[0][p] = run_phase(&o, 0, (enum phase)p, &bad);
		rate[1][p] = run_phase(&o, 1, (enum phase)p, &bad);
	}
	kill(g, SIGTERM);
	waitpid(g, NULL, 0);
	report(&o, (const double(*)[2])rate, bad);
	rc = bad || rate[0][0] < 0 || rate[0][1] < 0 || rate[1][0] < 0 ||
	     rate[1][1] < 0;
out_redis:
	if (spawned)
		redis_spawn_stop();
out_dir:
	if (getenv("GPUQ_BENCH_KEEP")) { /* as tracka: keep gpuqd's log */
		fprintf(stderr, "gpuq-bench kv: kept %s\n", dir);
	} else {
		char path[PATH_MAX];
		snprintf(path, sizeof(path), "%s/gpuqd.log", dir);
		unlink(path);
		snprintf(path, sizeof(path), "%s/gpuqd.sock", dir);
		unlink(path);
		snprintf(path, sizeof(path), "%s/gpuqd.sock.lock", dir);
		unlink(path);
		rmdir(dir);
	}
	return rc;
}
