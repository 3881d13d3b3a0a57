/*
 * check_multiproc.c - the broker plus 8 producer processes of 100k messages
 * each through `checksum`.  Every result is checked against an independent
 * CRC32C, and the counts must agree three ways: what the producers saw, the
 * queue's shared-memory stats, and `gpuqctl status --json`.  Runs once on
 * each event loop driver.
 */
#include "config.h"

#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "bench/drive.h"
#include "bench/procs.h"
#include "bench/reference.h"
#include "libclient/gpuq.h"
#include "tests/harness.h"
#include "tests/runner.h"

#define PRODUCERS 8
#define PER_PRODUCER 100000ull

struct job {
	const char *socket;
	uint64_t count;
};

static size_t fill(void *ctx, uint64_t seq, void *buf, size_t cap)
{
	int idx = *(int *)ctx;
	size_t len = 1 + (seq * 7919u + (uint64_t)idx) % cap;
	ref_fill(buf, len, ((uint64_t)idx << 32) | seq);
	return len;
}

static int check(void *ctx, uint64_t seq, int status, const void *res,
		 size_t len)
{
	uint8_t buf[256];
	size_t n = fill(ctx, seq, buf, sizeof(buf));
	return ref_crc_result_ok(buf, n, status, res, len);
}

static int producer(int idx, void *arg, struct proc_result *out)
{
	const struct job *j = arg;
	struct drive_spec s = { .count = j->count, .batch = 32, .window = 512,
				.fill = fill, .check = check, .ctx = &idx };
	gpuq_client *c;
	gpuq_queue *q;
	int rc = gpuq_connect(j->socket, &c);
	if (rc)
		return rc;
	rc = gpuq_open(c, "checksum", &q);
	if (!rc) {
		rc = drive(q, &s, out);
		gpuq_close(q);
	}
	gpuq_disconnect(c);
	return rc;
}

static void run(const char *loop_flag, const char *loop_kind,
		uint64_t per_producer)
{
	const char *args[] = { "-q", "checksum,handler=checksum,slot_bytes=256,workers=2",
			       loop_flag, NULL };
	struct proc_result res[PRODUCERS];
	struct broker_proc b;
	struct job j;
	uint64_t verified = 0, sent = 0;
	char json[8192];
	gpuq_client *c;
	gpuq_queue *q;
	gpuq_stats st;
	int rc;

	ck_assert_int_eq(broker_start(&b, args), 0);
	ck_assert_msg(broker_log_contains(&b, loop_kind), "not on the %s loop",
		      loop_kind);
	j.socket = b.socket;
	j.count = per_producer;
	rc = procs_run(PRODUCERS, producer, &j, res);
	for (int i = 0; i < PRODUCERS; i++) {
		ck_assert_msg(res[i].rc == 0, "producer %d: %s %s", i,
			      gpuq_strerror(res[i].rc), res[i].what);
		ck_assert_uint_eq(res[i].bad, 0);
		ck_assert_uint_eq(res[i].failed, 0);
		ck_assert_uint_eq(res[i].verified, per_producer);
		verified += res[i].verified;
		sent += res[i].sent;
	}
	ck_assert_int_eq(rc, 0);
	ck_assert_uint_eq(verified, PRODUCERS * per_producer);
	ck_assert_uint_eq(sent, PRODUCERS * per_producer);

	/* The broker's own counters, straight from shared memory. */
	ck_assert_int_eq(gpuq_connect(b.socket, &c), 0);
	ck_assert_int_eq(gpuq_open(c, "checksum", &q), 0);
	ck_assert_int_eq(gpuq_stats_get(q, &st), 0);
	ck_assert_uint_eq(st.enqueued, sent);
	ck_assert_uint_eq(st.completed, sent);
	ck_assert_uint_eq(st.dead_lettered, 0);
	ck_assert_uint_eq(st.retried, 0);
	ck_assert_uint_eq(st.reclaimed, 0);
	ck_assert_uint_eq(st.depth, 0);
	gpuq_close(q);
	gpuq_disconnect(c);

	/* And as the operator sees them. */
	{
		const char *argv[] = { tool_path("GPUQCTL", "broker/gpuqctl"), "-s",
				       b.socket, "--json", "status", NULL };
		int ws = run_capture(argv, json, sizeof(json));
		ck_assert(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
	}
	ck_assert_int_eq(json_number(json, "\"checksum\"", "enqueued"), (long long)sent);
	ck_assert_int_eq(json_number(json, "\"checksum\"", "completed"), (long long)sent);
	ck_assert_int_eq(json_number(json, "\"checksum\"", "depth"), 0);
	ck_assert_int_eq(json_number(json, "\"checksum\"", "dead_lettered"), 0);

	rc = broker_stop(&b, SIGTERM, 10000);
	ck_assert(rc >= 0 && WIFEXITED(rc) && WEXITSTATUS(rc) == 0);
	broker_cleanup(&b);
}

START_TEST(test_8x100k_io_uring)
{
	run("-v", "io_uring loop", PER_PRODUCER);
}
END_TEST

START_TEST(test_8x100k_epoll)
{
	run("--force-epoll", "epoll loop", PER_PRODUCER);
}
END_TEST

static Suite *suite_multiproc(void)
{
	Suite *s = suite_create("multiproc");
	TCase *tc = tcase_create("checksum");
	/* Generous: sanitizer builds on 2 shared cores are slow. */
	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, test_8x100k_io_uring);
	tcase_add_test(tc, test_8x100k_epoll);
	suite_add_tcase(s, tc);
	return s;
}

GPUQ_CHECK_MAIN(suite_multiproc)
