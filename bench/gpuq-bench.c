/*
 * gpuq-bench - closed-loop throughput of a running gpuqd.
 *
 *   gpuq-bench [-s SOCKET] [-q QUEUE] [-p PRODUCERS] [-n MESSAGES]
 *              [-z BYTES] [-b BATCH] [-w WINDOW] [-Z] [--json]
 *
 * N producer processes start together on a barrier; each sends MESSAGES
 * payloads of BYTES through QUEUE in batches of BATCH, keeps up to WINDOW in
 * flight and reads every result back (counting, not checking, results: the
 * correctness checks live in gpuq-demo and the tests).  The aggregate rate
 * is all messages over the slowest producer's time, so a fast producer
 * cannot inflate it.  -Z uses zero-copy reserve/commit.
 */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/drive.h"
#include "bench/procs.h"
#include "libclient/gpuq.h"

struct bench {
	const char *socket, *queue;
	int producers, zero_copy, json;
	uint64_t count;
	uint32_t size, batch, window;
};

static size_t fill(void *arg, uint64_t seq, void *buf, size_t cap)
{
	const struct bench *b = arg;
	size_t n = b->size < cap ? b->size : cap;
	/* Touch the whole payload, as a real producer writing it would. */
	memset(buf, (int)(seq & 0xff), n);
	return n;
}

static int producer(int idx, void *arg, struct proc_result *out)
{
	struct bench *b = arg;
	struct drive_spec s = { .count = b->count, .batch = b->batch,
				.window = b->window, .zero_copy = b->zero_copy,
				.fill = fill, .ctx = b };
	struct timespec t0, t1;
	gpuq_client *c;
	gpuq_queue *q;
	int rc;
	(void)idx;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if ((rc = gpuq_connect(b->socket, &c)))
		return rc;
	if ((rc = gpuq_open(c, b->queue, &q)) == 0) {
		gpuq_queue_info info;
		clock_gettime(CLOCK_MONOTONIC, &t1);
		gpuq_queue_info_get(q, &info);
		if (b->size > info.slot_bytes) {
			snprintf(out->what, sizeof(out->what),
				 "-z %u is larger than the queue's %u-byte slots",
				 b->size, info.slot_bytes);
			gpuq_close(q);
			gpuq_disconnect(c);
			return GPUQ_ETOOBIG;
		}
		out->attach_us = (double)(t1.tv_sec - t0.tv_sec) * 1e6 +
				 (double)(t1.tv_nsec - t0.tv_nsec) / 1e3;
		rc = drive(q, &s, out);
		gpuq_close(q);
	}
	gpuq_disconnect(c);
	return rc;
}

static void report(const struct bench *b, const struct proc_result *r, int rc)
{
	uint64_t total = 0, failed = 0;
	double slowest = 0, attach = 0;
	for (int i = 0; i < b->producers; i++) {
		if (r[i].attach_us > attach)
			attach = r[i].attach_us;
		total += r[i].verified;
		failed += r[i].failed;
		if (r[i].seconds > slowest)
			slowest = r[i].seconds;
	}
	double rate = slowest > 0 ? (double)total / slowest : 0;
	if (b->json) {
		printf("{\"queue\":\"%s\",\"producers\":%d,\"messages\":%llu,"
		       "\"payload_bytes\":%u,\"batch\":%u,\"window\":%u,"
		       "\"zero_copy\":%d,\"seconds\":%.6f,\"msgs_per_s\":%.0f,"
		       "\"bytes_per_s\":%.0f,\"failed\":%llu,"
		       "\"attach_us_max\":%.1f,\"ok\":%s}\n",
		       b->queue, b->producers, (unsigned long long)total, b->size,
		       b->batch, b->window, b->zero_copy, slowest, rate,
		       rate * b->size, (unsigned long long)failed, attach,
		       rc ? "false" : "true");
		return;
	}
	printf("queue %s: %d producers x %llu msgs of %u B, batch %u, window %u%s\n",
	       b->queue, b->producers, (unsigned long long)b->count, b->size,
	       b->batch, b->window, b->zero_copy ? ", zero-copy" : "");
	for (int i = 0; i < b->producers; i++)
		printf("  producer %2d: %10.0f msg/s%s%s %s\n", i,
		       r[i].seconds > 0 ? (double)r[i].verified / r[i].seconds : 0,
		       r[i].rc ? "  error: " : "",
		       r[i].rc ? gpuq_strerror(r[i].rc) : "", r[i].what);
	printf("aggregate: %.3f M msg/s, %.2f GB/s payload, %llu completed in %.3f s%s\n",
	       rate / 1e6, rate * b->size / 1e9, (unsigned long long)total,
	       slowest, rc ? "  (ERRORS)" : "");
	printf("attach (connect + open): slowest producer %.0f us\n", attach);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct bench b = { NULL, "echo", 1, 0, 0, 1000000, 256, 256, 4096 };
	struct proc_result res[256];
	int o, rc;
	while ((o = getopt_long(argc, argv, "s:q:p:n:z:b:w:Zjh", opts, NULL)) != -1) {
		switch (o) {
		case 's': b.socket = optarg; break;
		case 'q': b.queue = optarg; break;
		case 'p': b.producers = atoi(optarg); break;
		case 'n': b.count = strtoull(optarg, NULL, 10); break;
		case 'z': b.size = (uint32_t)atoi(optarg); break;
		case 'b': b.batch = (uint32_t)atoi(optarg); break;
		case 'w': b.window = (uint32_t)atoi(optarg); break;
		case 'Z': b.zero_copy = 1; break;
		case 'j': b.json = 1; break;
		default:
			fprintf(stderr, "usage: gpuq-bench [-s SOCKET] [-q QUEUE] [-p N] "
					"[-n MSGS] [-z BYTES] [-b BATCH] [-w WINDOW] [-Z] [--json]\n");
			return o == 'h' ? 0 : 2;
		}
	}
	if (b.producers < 1 || b.producers > 256 || !b.size || !b.batch || !b.count) {
		fprintf(stderr, "gpuq-bench: bad arguments\n");
		return 2;
	}
	rc = procs_run(b.producers, producer, &b, res);
	report(&b, res, rc);
	return rc ? 1 : 0;
}
