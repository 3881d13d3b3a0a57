/*
 * gpuq-demo - the main job's workload: several producer processes send
 * messages through the checksum and vector queues and check every result
 * against an independent reference.
 *
 *   gpuq-demo [-s SOCKET] [-p PRODUCERS] [-n MESSAGES] [-c QUEUE] [-V QUEUE]
 *
 * Exit 0 only if every message of every process came back right.
 */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/drive.h"
#include "bench/procs.h"
#include "bench/reference.h"
#include "libclient/gpuq.h"

struct demo {
	const char *socket;
	const char *crc_queue, *vec_queue;
	int producers;
	uint64_t count;
};

struct ctx {
	int idx;
	uint32_t slot;
};

static uint64_t seed_of(const struct ctx *c, uint64_t seq)
{
	return ((uint64_t)c->idx << 40) ^ seq;
}

/* checksum: lengths 1..slot, random bytes. */
static size_t crc_fill(void *vc, uint64_t seq, void *buf, size_t cap)
{
	struct ctx *c = vc;
	size_t len = 1 + (seed_of(c, seq) * 2654435761u) % (cap < c->slot ? cap : c->slot);
	ref_fill(buf, len, seed_of(c, seq));
	return len;
}

static int crc_check(void *vc, uint64_t seq, int status, const void *res,
		     size_t len)
{
	uint8_t buf[65536];
	size_t n = crc_fill(vc, seq, buf, sizeof(buf));
	return ref_crc_result_ok(buf, n, status, res, len);
}

/* vector: 1..slot/4 floats in [-100, 100). */
static size_t vec_fill(void *vc, uint64_t seq, void *buf, size_t cap)
{
	struct ctx *c = vc;
	size_t maxn = (cap < c->slot ? cap : c->slot) / 4;
	size_t n = 1 + (seed_of(c, seq) * 40503u) % maxn;
	uint32_t raw[16384];
	float *f = buf;
	ref_fill(raw, n * 4, seed_of(c, seq) + 7);
	for (size_t i = 0; i < n; i++)
		f[i] = (float)(raw[i] % 20000) / 100.0f - 100.0f;
	return n * 4;
}

static int vec_check(void *vc, uint64_t seq, int status, const void *res,
		     size_t len)
{
	_Alignas(16) uint8_t buf[65536];
	float got[4];
	size_t n = vec_fill(vc, seq, buf, sizeof(buf));
	if (status || len != sizeof(got))
		return 0;
	memcpy(got, res, sizeof(got));
	return ref_vector_ok((const float *)buf, n / 4, got);
}

static int run_queue(gpuq_client *cl, const char *name, struct ctx *c,
		     size_t (*fill)(void *, uint64_t, void *, size_t),
		     int (*check)(void *, uint64_t, int, const void *, size_t),
		     uint64_t count, struct proc_result *out)
{
	gpuq_queue *q;
	gpuq_queue_info info;
	struct drive_spec s = { .count = count, .batch = 64, .window = 1024,
				.fill = fill, .check = check, .ctx = c };
	int rc = gpuq_open(cl, name, &q);
	if (rc) {
		snprintf(out->what, sizeof(out->what), "open %s: %s", name,
			 gpuq_strerror(rc));
		return rc;
	}
	gpuq_queue_info_get(q, &info);
	c->slot = info.slot_bytes < 65536 ? info.slot_bytes : 65536;
	rc = drive(q, &s, out);
	gpuq_close(q);
	return rc;
}

static int producer(int idx, void *arg, struct proc_result *out)
{
	const struct demo *d = arg;
	struct ctx c = { idx, 0 };
	struct proc_result r2;
	gpuq_client *cl;
	int rc = gpuq_connect(d->socket, &cl);
	if (rc) {
		snprintf(out->what, sizeof(out->what), "connect: %s", gpuq_strerror(rc));
		return rc;
	}
	rc = run_queue(cl, d->crc_queue, &c, crc_fill, crc_check, d->count, out);
	memset(&r2, 0, sizeof(r2));
	if (!rc)
		rc = run_queue(cl, d->vec_queue, &c, vec_fill, vec_check, d->count, &r2);
	out->sent += r2.sent;
	out->verified += r2.verified;
	out->bad += r2.bad;
	out->failed += r2.failed;
	out->seconds += r2.seconds;
	if (!out->what[0])
		memcpy(out->what, r2.what, sizeof(out->what));
	gpuq_disconnect(cl);
	return rc;
}

int main(int argc, char **argv)
{
	struct demo d = { NULL, "checksum", "vector", 4, 20000 };
	struct proc_result res[256];
	uint64_t sent = 0, ok = 0, bad = 0;
	int o, rc;
	while ((o = getopt(argc, argv, "s:p:n:c:V:h")) != -1) {
		switch (o) {
		case 's': d.socket = optarg; break;
		case 'p': d.producers = atoi(optarg); break;
		case 'n': d.count = strtoull(optarg, NULL, 10); break;
		case 'c': d.crc_queue = optarg; break;
		case 'V': d.vec_queue = optarg; break;
		default:
			fprintf(stderr, "usage: gpuq-demo [-s SOCKET] [-p PRODUCERS] "
					"[-n MESSAGES] [-c CHECKSUM_QUEUE] [-V VECTOR_QUEUE]\n");
			return 2;
		}
	}
	if (d.producers < 1 || d.producers > 256 || d.count == 0) {
		fprintf(stderr, "gpuq-demo: bad -p or -n\n");
		return 2;
	}
	printf("gpuq-demo: %d producer processes x %llu messages through '%s' "
	       "and '%s'\n", d.producers, (unsigned long long)d.count,
	       d.crc_queue, d.vec_queue);
	rc = procs_run(d.producers, producer, &d, res);
	printf("%-9s %10s %10s %6s %12s  %s\n", "PRODUCER", "SENT", "VERIFIED",
	       "BAD", "MSG/S", "NOTE");
	for (int i = 0; i < d.producers; i++) {
		printf("%-9d %10llu %10llu %6llu %12.0f  %s\n", i,
		       (unsigned long long)res[i].sent,
		       (unsigned long long)res[i].verified,
		       (unsigned long long)res[i].bad,
		       res[i].seconds > 0 ? (double)res[i].sent / res[i].seconds : 0,
		       res[i].rc ? gpuq_strerror(res[i].rc) : res[i].what);
		sent += res[i].sent;
		ok += res[i].verified;
		bad += res[i].bad;
	}
	printf("total: %llu sent, %llu verified, %llu wrong -> %s\n",
	       (unsigned long long)sent, (unsigned long long)ok,
	       (unsigned long long)bad,
	       !rc && bad == 0 && ok == 2 * d.count * (uint64_t)d.producers
		       ? "PASS" : "FAIL");
	return !rc && bad == 0 && ok == 2 * d.count * (uint64_t)d.producers ? 0 : 1;
}
