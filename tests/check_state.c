/*
 * check_state.c - handler state and exactly-once through a running gpuqd
 * (either backend; design.md §15, guarantees.md *Exactly-once*):
 *  - keysum's per-key count and sum, from several producer processes;
 *  - duplicates of an idempotency key get the first run's result and do
 *    not run the handler again (keysum's state proves it: a second run
 *    would count twice);
 *  - no idempotency key, a full dedupe table: their documented codes;
 *  - records expire after dedupe_window_ms;
 *  - producers killed with SIGKILL mid-stream, then every key sent again:
 *    each key counted exactly once.
 */
#include <check.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "libclient/gpuq.h"
#include "tests/harness.h"
#include "tests/runner.h"

#define WAIT_MS 20000
#define STATE_KEYS 8

struct ks {
	uint64_t count;
	double sum;
};

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

/* On the runner's backend: the tables are in host memory on cpu and in
 * VRAM on cuda, with the same semantics. */
static void start(struct broker_proc *b, const char *spec)
{
	const char *argv[] = { "-q", spec, NULL };
	ck_assert_msg(broker_start(b, argv) == 0, "gpuqd did not start: %s",
		      b->log);
}

static void finish(struct broker_proc *b)
{
	char why[256];
	ck_assert_msg(broker_finish(b, WAIT_MS, why, sizeof(why)) == 0, "%s", why);
}

static gpuq_queue *attach(const struct broker_proc *b, gpuq_client **c)
{
	gpuq_queue *q = NULL;
	ck_assert_int_eq(gpuq_connect(b->socket, c), 0);
	ck_assert_int_eq(gpuq_open(*c, "s", &q), 0);
	return q;
}

/* One keysum message: state key, then n copies of x.  Returns the
 * completion status; *out gets the result when it is 0. */
static int keysum(gpuq_queue *q, uint64_t idem, uint64_t state, float x,
		  int n, struct ks *out)
{
	uint8_t p[8 + 4 * 16];
	uint64_t id;
	size_t got = 0;
	int rc;
	memcpy(p, &state, 8);
	for (int i = 0; i < n; i++)
		memcpy(p + 8 + 4 * i, &x, 4);
	rc = gpuq_enqueue_key(q, idem, p, 8 + 4 * (size_t)n, &id, WAIT_MS);
	if (rc)
		return rc;
	rc = gpuq_wait(q, id, out, sizeof(*out), &got, WAIT_MS);
	if (!rc)
		ck_assert_uint_eq(got, sizeof(*out));
	return rc;
}

/* The record of a state key now (a message adding nothing). */
static struct ks state_of(gpuq_queue *q, uint64_t state, uint64_t idem)
{
	struct ks r = { 0, 0 };
	ck_assert_int_eq(keysum(q, idem, state, 0, 0, &r), 0);
	return r;
}

/* Producer process: n messages, state key i % STATE_KEYS, value i % 10,
 * idempotency keys base + i (never 0). */
static void producer(const char *socket, uint64_t base, int n)
{
	gpuq_client *c;
	gpuq_queue *q;
	struct ks r;
	if (gpuq_connect(socket, &c) || gpuq_open(c, "s", &q))
		_exit(2);
	for (int i = 0; i < n; i++)
		if (keysum(q, base + (uint64_t)i, (uint64_t)i % STATE_KEYS,
			   (float)(i % 10), 1, &r))
			_exit(3);
	gpuq_disconnect(c);
	_exit(0);
}

static void run_producers(const struct broker_proc *b, int procs, int n,
			  int same_keys)
{
	pid_t pid[8];
	for (int p = 0; p < procs; p++) {
		pid[p] = fork();
		ck_assert_int_ge(pid[p], 0);
		if (pid[p] == 0)
			producer(b->socket,
				 same_keys ? 1 : 1 + (uint64_t)p * (uint64_t)n, n);
	}
	for (int p = 0; p < procs; p++) {
		int st;
		ck_assert_int_eq(waitpid(pid[p], &st, 0), pid[p]);
		ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0,
			      "producer %d: status %#x", p, st);
	}
}

/* What producers sending keys 0..n-1 (state i % 8, value i % 10) add to
 * state key k, `times` over. */
static struct ks expected(int n, uint64_t k, int times)
{
	struct ks e = { 0, 0 };
	for (int i = 0; i < n; i++)
		if ((uint64_t)i % STATE_KEYS == k) {
			e.count += (uint64_t)times;
			e.sum += times * (double)(i % 10);
		}
	return e;
}

/* Every state key's record is what producers sending keys 0..n-1 `times`
 * over made of it.  The reads use idempotency keys idem + k (0: none,
 * for a queue without exactly-once). */
static void assert_states(gpuq_queue *q, int n, int times, uint64_t idem)
{
	for (uint64_t k = 0; k < STATE_KEYS; k++) {
		struct ks got = state_of(q, k, idem ? idem + k : 0),
			  want = expected(n, k, times);
		ck_assert_uint_eq(got.count, want.count);
		ck_assert(got.sum == want.sum); /* small integers: exact */
	}
}

START_TEST(test_keysum)
{
	struct broker_proc b;
	gpuq_client *c;
	gpuq_queue *q;
	start(&b, "s,handler=keysum,table_slots=1024,workers=2");
	run_producers(&b, 4, 2000, 0);
	q = attach(&b, &c);
	assert_states(q, 2000, 4, 0);
	/* a payload that is not 8 + 4n bytes fails, and changes nothing */
	{
		uint8_t p[11] = { 0 };
		uint64_t id;
		size_t got;
		struct ks r;
		ck_assert_int_eq(gpuq_enqueue(q, p, sizeof(p), &id, WAIT_MS), 0);
		ck_assert_int_eq(gpuq_wait(q, id, &r, sizeof(r), &got, WAIT_MS),
				 GPUQ_EHANDLER);
		ck_assert_uint_eq(state_of(q, 0, 0).count,
				  expected(2000, 0, 4).count);
	}
	gpuq_disconnect(c);
	finish(&b);
}
END_TEST

/* Four producers send the same 1500 idempotency keys: every key runs
 * once, so keysum counts each once, and every copy's result is the first
 * run's. */
START_TEST(test_duplicates)
{
	struct broker_proc b;
	gpuq_client *c;
	gpuq_queue *q;
	start(&b, "s,handler=keysum,table_slots=1024,exactly_once=yes,workers=2");
	run_producers(&b, 4, 1500, 1);
	q = attach(&b, &c);
	assert_states(q, 1500, 1, 1000000); /* keys above the producers' */
	/* a duplicate of one of those reads gets the recorded result, though
	 * the state has moved on since */
	{
		struct ks first, again;
		ck_assert_int_eq(keysum(q, 2000000, 3, 5.0f, 2, &first), 0);
		ck_assert_int_eq(keysum(q, 2000001, 3, 1.0f, 1, &again), 0);
		ck_assert_uint_eq(again.count, first.count + 1);
		ck_assert_int_eq(keysum(q, 2000000, 3, 5.0f, 2, &again), 0);
		ck_assert_uint_eq(again.count, first.count);
		ck_assert(again.sum == first.sum);
	}
	gpuq_disconnect(c);
	finish(&b);
}
END_TEST

START_TEST(test_refusals)
{
	struct broker_proc b;
	gpuq_client *c;
	gpuq_queue *q;
	struct ks r;
	int i, rc = 0;
	/* one window of 32 records, kept for ever */
	start(&b, "s,handler=keysum,table_slots=64,exactly_once=yes,"
		  "dedupe_slots=32,dedupe_window_ms=0");
	q = attach(&b, &c);
	/* no idempotency key: not run */
	ck_assert_int_eq(keysum(q, 0, 1, 1.0f, 1, &r), GPUQ_EKEYSIZE);
	for (i = 1; i <= 40 && !(rc = keysum(q, (uint64_t)i, 1, 1.0f, 1, &r));
	     i++)
		;
	ck_assert_int_eq(rc, GPUQ_ETABLEFULL);
	ck_assert_int_eq(i, 33);
	/* the refused ones did not run either: 32 values counted */
	ck_assert_int_eq(keysum(q, 5, 1, 1.0f, 1, &r), 0);
	ck_assert_uint_eq(r.count, 5);
	ck_assert_int_eq(keysum(q, 32, 1, 1.0f, 1, &r), 0);
	ck_assert_uint_eq(r.count, 32);
	gpuq_disconnect(c);
	finish(&b);
}
END_TEST

START_TEST(test_window)
{
	struct broker_proc b;
	gpuq_client *c;
	gpuq_queue *q;
	struct ks r;
	start(&b, "s,handler=keysum,table_slots=64,exactly_once=yes,"
		  "dedupe_window_ms=300");
	q = attach(&b, &c);
	ck_assert_int_eq(keysum(q, 7, 1, 1.0f, 1, &r), 0);
	ck_assert_uint_eq(r.count, 1);
	ck_assert_int_eq(keysum(q, 7, 1, 1.0f, 1, &r), 0);
	ck_assert_uint_eq(r.count, 1); /* within the window: recorded */
	sleep_ms(700);
	ck_assert_int_eq(keysum(q, 7, 1, 1.0f, 1, &r), 0);
	ck_assert_uint_eq(r.count, 2); /* expired: it ran again */
	gpuq_disconnect(c);
	finish(&b);
}
END_TEST

/* Victims send keys 1..N in random order and are SIGKILLed at random
 * points; then every key is sent again.  However many copies of a key
 * were started, it is counted once. */
START_TEST(test_kill_loop)
{
	const int n = 3000, victims = 30;
	struct broker_proc b;
	gpuq_client *c;
	gpuq_queue *q;
	uint64_t total = 0;
	start(&b, "s,handler=keysum,table_slots=64,exactly_once=yes,workers=2,"
		  "dedupe_slots=16384");
	srand(4242);
	for (int v = 0; v < victims; v++) {
		pid_t pid = fork();
		int st;
		ck_assert_int_ge(pid, 0);
		if (pid == 0) {
			gpuq_client *vc;
			gpuq_queue *vq;
			struct ks r;
			uint64_t x = (uint64_t)v * 7919 + 1;
			if (gpuq_connect(b.socket, &vc) || gpuq_open(vc, "s", &vq))
				_exit(2);
			for (;;) {
				x = x * 6364136223846793005ull + 1;
				keysum(vq, 1 + (x >> 33) % (uint64_t)n, 0, 1.0f,
				       1, &r);
			}
		}
		sleep_ms(5 + (unsigned)(rand() % 40));
		kill(pid, SIGKILL);
		ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	}
	q = attach(&b, &c);
	for (int i = 1; i <= n; i++) {
		struct ks r;
		ck_assert_int_eq(keysum(q, (uint64_t)i, 0, 1.0f, 1, &r), 0);
		ck_assert_uint_le(r.count, (uint64_t)n);
	}
	total = state_of(q, 0, (uint64_t)n + 1).count;
	ck_assert_uint_eq(total, (uint64_t)n);
	gpuq_disconnect(c);
	finish(&b);
}
END_TEST

static Suite *suite_state(void)
{
	Suite *s = suite_create("state");
	TCase *tc = tcase_create("broker");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_keysum);
	tcase_add_test(tc, test_duplicates);
	tcase_add_test(tc, test_refusals);
	tcase_add_test(tc, test_window);
	tcase_add_test(tc, test_kill_loop);
	suite_add_tcase(s, tc);
	return s;
}

GPUQ_CHECK_MAIN(suite_state)
