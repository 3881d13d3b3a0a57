/*
 * sys_table.c - gpuq-bench table: inserts, then lookups of known keys, on
 * the broker's hash table (broker/kvtable.h) at a given load; on host
 * threads here, on the GPU in table_cuda.cu.  Every lookup's value is
 * checked.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"
#include "bench/procs.h"
#include "bench/table_bench.h"
#include "broker/kvtable.h"

struct tb_thread {
	struct gpuq_kvt *t;
	struct table_bench *b;
	uint64_t n, from, to, idx;
	uint64_t refused, found, wrong;
	pthread_barrier_t *bar;
};

static void *tb_main(void *arg)
{
	struct tb_thread *a = arg;
	uint64_t per = a->b->lookups / a->b->threads;
	for (uint64_t i = a->from; i < a->to; i++) {
		uint64_t k = table_bench_key(i);
		a->refused += gpuq_kvt_put(a->t, &k, 8, &i, 8, GPUQ_KVT_INSERT) != 0;
	}
	pthread_barrier_wait(a->bar); /* inserts done */
	pthread_barrier_wait(a->bar); /* lookups start */
	for (uint64_t j = a->idx * per; j < (a->idx + 1) * per; j++) {
		uint64_t i = table_bench_key(j ^ 0x5bd1e995ull) % a->n;
		uint64_t k = table_bench_key(i), v = 0;
		uint32_t len;
		if (!gpuq_kvt_get(a->t, &k, 8, &v, 8, &len)) {
			a->found++;
			a->wrong += v != i || len != 8;
		}
	}
	return NULL;
}

static int table_bench_cpu(struct table_bench *b, char *err, size_t errcap)
{
	struct gpuq_kvt t;
	struct tb_thread *a = calloc(b->threads, sizeof(*a));
	pthread_t *th = calloc(b->threads, sizeof(*th));
	pthread_barrier_t bar;
	uint64_t n, t0, t1, t2;
	int rc = 0;
	if (!a || !th || gpuq_kvt_alloc(&t, b->slots, 8)) {
		snprintf(err, errcap, "out of memory");
		rc = -ENOMEM;
		goto out;
	}
	b->real_slots = t.nbuckets * GPUQ_KVT_BUCKET;
	n = (uint64_t)(b->load * (double)b->real_slots);
	pthread_barrier_init(&bar, NULL, b->threads + 1);
	t0 = procs_now_ns();
	for (uint32_t i = 0; i < b->threads; i++) {
		a[i] = (struct tb_thread){ &t, b, n, n * i / b->threads,
					   n * (i + 1) / b->threads, i, 0, 0, 0,
					   &bar };
		pthread_create(&th[i], NULL, tb_main, &a[i]);
	}
	pthread_barrier_wait(&bar);
	t1 = procs_now_ns();
	pthread_barrier_wait(&bar);
	for (uint32_t i = 0; i < b->threads; i++) {
		pthread_join(th[i], NULL);
		b->refused += a[i].refused;
		b->found += a[i].found;
		b->wrong += a[i].wrong;
	}
	t2 = procs_now_ns();
	pthread_barrier_destroy(&bar);
	b->lookups = b->lookups / b->threads * b->threads;
	b->inserted = n - b->refused;
	b->insert_s = (double)(t1 - t0) / 1e9;
	b->lookup_s = (double)(t2 - t1) / 1e9;
	gpuq_kvt_free(&t);
out:
	free(a);
	free(th);
	return rc;
}

#ifndef HAVE_CUDA
int table_bench_cuda(struct table_bench *b, char *err, size_t errcap)
{
	(void)b;
	snprintf(err, errcap, "gpuq-bench was built without CUDA");
	return -ENODEV;
}
#endif

static void usage(FILE *f)
{
	fputs("usage: gpuq-bench table [options]\n"
	      "  --device D     cpu | cuda (default: cuda where built with it and\n"
	      "                 a GPU is usable, else cpu)\n"
	      "  --slots N      table slots (default 16M on cuda, 4M on cpu)\n"
	      "  --load F       fraction filled before the lookups (default 0.5)\n"
	      "  --lookups N    lookups of inserted keys (default 200M cuda, 20M cpu)\n"
	      "  --threads N    host threads (cpu; default 2)\n"
	      "  --json         one JSON object\n", f);
}

int table_bench_main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "device", required_argument, NULL, 'd' },
		{ "slots", required_argument, NULL, 's' },
		{ "load", required_argument, NULL, 'l' },
		{ "lookups", required_argument, NULL, 'n' },
		{ "threads", required_argument, NULL, 't' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct table_bench b = { 0 };
	const char *dev = NULL;
	char err[256] = "";
	int ch, json = 0, rc;
	b.load = 0.5;
	b.threads = 2;
	optind = 1;
	while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (ch) {
		case 'd': dev = optarg; break;
		case 's': b.slots = strtoull(optarg, NULL, 10); break;
		case 'l': b.load = atof(optarg); break;
		case 'n': b.lookups = strtoull(optarg, NULL, 10); break;
		case 't': b.threads = (uint32_t)atoi(optarg); break;
		case 'j': json = 1; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if ((dev && strcmp(dev, "cpu") && strcmp(dev, "cuda")) || b.load <= 0 ||
	    b.load >= 1 || !b.threads || b.threads > 256) {
		usage(stderr);
		return 2;
	}
	rc = -ENODEV;
	if (!dev || !strcmp(dev, "cuda")) {
		struct table_bench g = b;
		g.slots = b.slots ? b.slots : 16u << 20;
		g.lookups = b.lookups ? b.lookups : 200000000ull;
		rc = table_bench_cuda(&g, err, sizeof(err));
		if (!rc) {
			b = g;
			dev = "cuda";
		} else if (dev) {
			fprintf(stderr, "gpuq-bench table: %s\n", err);
			return 1;
		}
	}
	if (rc) {
		dev = "cpu";
		b.slots = b.slots ? b.slots : 4u << 20;
		b.lookups = b.lookups ? b.lookups : 20000000ull;
		rc = table_bench_cpu(&b, err, sizeof(err));
		if (rc) {
			fprintf(stderr, "gpuq-bench table: %s\n", err);
			return 1;
		}
	}
	if (json)
		printf("{\"tool\":\"gpuq-bench table\",\"device\":\"%s\",\"slots\":%llu,"
		       "\"load\":%.3f,\"inserted\":%llu,\"refused\":%llu,"
		       "\"inserts_per_s\":%.0f,\"lookups\":%llu,\"found\":%llu,"
		       "\"wrong\":%llu,\"lookups_per_s\":%.0f}\n",
		       dev, (unsigned long long)b.real_slots, b.load,
		       (unsigned long long)b.inserted, (unsigned long long)b.refused,
		       (double)(b.inserted + b.refused) / b.insert_s,
		       (unsigned long long)b.lookups, (unsigned long long)b.found,
		       (unsigned long long)b.wrong, (double)b.lookups / b.lookup_s);
	else
		printf("table on %s: %llu slots, %.0f %% load (%llu keys, %llu "
		       "refused)\n  inserts: %.3g /s\n  lookups: %.3g /s "
		       "(%llu, %llu found, %llu wrong values)\n",
		       dev, (unsigned long long)b.real_slots, 100 * b.load,
		       (unsigned long long)b.inserted, (unsigned long long)b.refused,
		       (double)(b.inserted + b.refused) / b.insert_s,
		       (double)b.lookups / b.lookup_s,
		       (unsigned long long)b.lookups, (unsigned long long)b.found,
		       (unsigned long long)b.wrong);
	/* every lookup is of an inserted key unless some were refused */
	return b.wrong || (!b.refused && b.found != b.lookups) ? 1 : 0;
}
