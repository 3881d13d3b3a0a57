/*
 * check_kv.c - the client key-value API (gpuq_kv_*) against a running
 * gpuqd whose queue has handler = kv (either backend): single and batched
 * operations, every per-key status, a full table, garbled requests, and
 * four processes writing their own keys while reading everyone's.
 */
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "libclient/gpuq.h"
#include "tests/harness.h"
#include "tests/runner.h"

#define WAIT_MS 20000

/* A broker with one queue, spec.  Never two: the GPU sanitizers run one
 * kernel at a time, so a second queue's persistent kernel would never run
 * beside the first, and its drain would never end (gpu-check.sh
 * sanitize runs this suite under them). */
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

static gpuq_queue *attach(const char *socket, const char *name,
			  gpuq_client **c)
{
	gpuq_queue *q = NULL;
	ck_assert_int_eq(gpuq_connect(socket, c), 0);
	ck_assert_int_eq(gpuq_open(*c, name, &q), 0);
	return q;
}

START_TEST(test_single)
{
	struct broker_proc b;
	gpuq_client *c;
	gpuq_queue *q;
	char v[64], big[65], k33[33], k256[256];
	size_t n = 0;
	start(&b, "kv,handler=kv,table_slots=1024,table_value_bytes=64");
	q = attach(b.socket, "kv", &c);
	ck_assert_int_eq(gpuq_kv_get(q, "a", 1, v, sizeof(v), &n, WAIT_MS),
			 GPUQ_ENOKEY);
	ck_assert_int_eq(gpuq_kv_put(q, "a", 1, "hello", 5, WAIT_MS), 0);
	ck_assert_int_eq(gpuq_kv_get(q, "a", 1, v, sizeof(v), &n, WAIT_MS), 0);
	ck_assert_uint_eq(n, 5);
	ck_assert(!memcmp(v, "hello", 5));
	/* overwrite; a short buffer gets a prefix and the full length */
	ck_assert_int_eq(gpuq_kv_put(q, "a", 1, "goodbye", 7, WAIT_MS), 0);
	memset(v, 0, sizeof(v));
	ck_assert_int_eq(gpuq_kv_get(q, "a", 1, v, 3, &n, WAIT_MS), 0);
	ck_assert_uint_eq(n, 7);
	ck_assert(!memcmp(v, "goo", 3) && v[3] == 0);
	ck_assert_int_eq(gpuq_kv_delete(q, "a", 1, WAIT_MS), 0);
	ck_assert_int_eq(gpuq_kv_delete(q, "a", 1, WAIT_MS), GPUQ_ENOKEY);
	ck_assert_int_eq(gpuq_kv_get(q, "a", 1, v, sizeof(v), &n, WAIT_MS),
			 GPUQ_ENOKEY);
	/* what the table refuses, per key */
	memset(k33, 'k', sizeof(k33));
	memset(big, 'v', sizeof(big));
	ck_assert_int_eq(gpuq_kv_put(q, k33, 33, "x", 1, WAIT_MS), GPUQ_EKEYSIZE);
	ck_assert_int_eq(gpuq_kv_put(q, k33, 32, "x", 1, WAIT_MS), 0);
	ck_assert_int_eq(gpuq_kv_get(q, k33, 0, v, 8, &n, WAIT_MS), GPUQ_EKEYSIZE);
	ck_assert_int_eq(gpuq_kv_put(q, "b", 1, big, 65, WAIT_MS), GPUQ_EVALSIZE);
	ck_assert_int_eq(gpuq_kv_put(q, "b", 1, big, 64, WAIT_MS), 0);
	/* what the library refuses */
	memset(k256, 'k', sizeof(k256));
	ck_assert_int_eq(gpuq_kv_put(q, k256, 256, "x", 1, WAIT_MS), -EINVAL);
	ck_assert_int_eq(gpuq_kv_mget(NULL, NULL, 0, WAIT_MS), -EINVAL);
	/* a value bigger than a slot can carry, alone */
	{
		static char huge[2000];
		ck_assert_int_eq(gpuq_kv_put(q, "h", 1, huge, sizeof(huge), WAIT_MS),
				 GPUQ_ETOOBIG);
	}
	gpuq_disconnect(c);
	finish(&b);
}
END_TEST

/* The KV calls on a queue whose handler is not kv: refused by the library,
 * before anything is sent. */
START_TEST(test_not_kv)
{
	struct broker_proc b;
	gpuq_client *c;
	gpuq_queue *plain;
	char v[8];
	size_t n = 0;
	start(&b, "plain,handler=echo");
	plain = attach(b.socket, "plain", &c);
	ck_assert_int_eq(gpuq_kv_put(plain, "a", 1, "x", 1, WAIT_MS), -EINVAL);
	ck_assert_int_eq(gpuq_kv_get(plain, "a", 1, v, sizeof(v), &n, WAIT_MS),
			 -EINVAL);
	ck_assert_int_eq(gpuq_kv_delete(plain, "a", 1, WAIT_MS), -EINVAL);
	gpuq_disconnect(c);
	finish(&b);
}
END_TEST

/* Key i: "key-<i>"; its value: (i % 61) + 1 bytes, byte j = i * 31 + j. */
static int key_of(uint32_t i, char *k)
{
	return snprintf(k, 16, "key-%u", i);
}

static uint32_t value_of(uint32_t i, uint32_t version, uint8_t *v)
{
	uint32_t n = i % 57 + 8;
	memcpy(v, &version, 4);
	memcpy(v + 4, &i, 4);
	for (uint32_t j = 8; j < n; j++)
		v[j] = (uint8_t)(i * 31 + j + version);
	return n;
}

/* A value read back for key i: well formed, and which version. */
static int check_value(uint32_t i, const uint8_t *v, uint32_t n,
		       uint32_t *version)
{
	uint8_t want[64];
	memcpy(version, v, 4);
	return n == value_of(i, *version, want) && !memcmp(v, want, n);
}

struct keyset {
	char k[16];
	uint8_t v[64];
};

static void fill_items(gpuq_kv_item *it, struct keyset *ks, uint32_t from,
		       uint32_t n, uint32_t version, int put)
{
	for (uint32_t i = 0; i < n; i++) {
		uint32_t key = from + i;
		it[i].key = ks[i].k;
		it[i].klen = (uint32_t)key_of(key, ks[i].k);
		it[i].val = ks[i].v;
		it[i].vlen = put ? value_of(key, version, ks[i].v)
				 : (uint32_t)sizeof(ks[i].v);
		it[i].status = 12345;
	}
}

START_TEST(test_batch)
{
	enum { N = 20000, MISSING = 1000 };
	struct broker_proc b;
	gpuq_client *c;
	gpuq_queue *q;
	gpuq_kv_item *it = calloc(N + MISSING, sizeof(*it));
	struct keyset *ks = calloc(N + MISSING, sizeof(*ks));
	ck_assert(it && ks);
	start(&b, "kv,handler=kv,table_slots=64k,table_value_bytes=64,"
		  "slot_bytes=1024,workers=2");
	q = attach(b.socket, "kv", &c);
	fill_items(it, ks, 0, N, 1, 1);
	ck_assert_int_eq(gpuq_kv_mput(q, it, N, WAIT_MS), 0);
	for (uint32_t i = 0; i < N; i++)
		ck_assert_int_eq(it[i].status, 0);
	fill_items(it, ks, 0, N + MISSING, 0, 0);
	ck_assert_int_eq(gpuq_kv_mget(q, it, N + MISSING, WAIT_MS), 0);
	for (uint32_t i = 0; i < N + MISSING; i++) {
		uint32_t ver;
		if (i >= N) {
			ck_assert_int_eq(it[i].status, GPUQ_ENOKEY);
			continue;
		}
		ck_assert_int_eq(it[i].status, 0);
		ck_assert_msg(check_value(i, ks[i].v, it[i].vlen, &ver) && ver == 1,
			      "key %u: bad value", i);
	}
	/* delete the even keys */
	for (uint32_t i = 0; i < N / 2; i++) {
		it[i].key = ks[2 * i].k;
		it[i].klen = (uint32_t)key_of(2 * i, ks[2 * i].k);
	}
	ck_assert_int_eq(gpuq_kv_mdelete(q, it, N / 2, WAIT_MS), 0);
	for (uint32_t i = 0; i < N / 2; i++)
		ck_assert_int_eq(it[i].status, 0);
	fill_items(it, ks, 0, N, 0, 0);
	ck_assert_int_eq(gpuq_kv_mget(q, it, N, WAIT_MS), 0);
	for (uint32_t i = 0; i < N; i++)
		ck_assert_int_eq(it[i].status, i % 2 ? 0 : GPUQ_ENOKEY);
	gpuq_disconnect(c);
	finish(&b);
	free(it);
	free(ks);
}
END_TEST

/* One key's operations in one call keep item order, also when they land
 * in different messages of a group, which the broker runs in parallel:
 * K keys, each put R times (version r in round r) in one call of R * K
 * items; all deleted; the same puts again.  Every key must end with its
 * last version both times. */
START_TEST(test_repeat_order)
{
	enum { K = 50, R = 60 };
	struct broker_proc b;
	gpuq_client *c;
	gpuq_queue *q;
	gpuq_kv_item *it = calloc(R * K, sizeof(*it));
	struct keyset *ks = calloc(R * K, sizeof(*ks));
	ck_assert(it && ks);
	start(&b, "kv,handler=kv,table_slots=1024,table_value_bytes=64,"
		  "slot_bytes=256,workers=4");
	q = attach(b.socket, "kv", &c);
	for (uint32_t r = 0; r < R; r++)
		fill_items(it + r * K, ks + r * K, 0, K, r + 1, 1);
	ck_assert_int_eq(gpuq_kv_mput(q, it, R * K, WAIT_MS), 0);
	for (uint32_t i = 0; i < R * K; i++)
		ck_assert_int_eq(it[i].status, 0);
	fill_items(it, ks, 0, K, 0, 0);
	ck_assert_int_eq(gpuq_kv_mget(q, it, K, WAIT_MS), 0);
	for (uint32_t i = 0; i < K; i++) {
		uint32_t ver = 0;
		ck_assert_msg(!it[i].status && check_value(i, ks[i].v, it[i].vlen,
							  &ver) && ver == R,
			      "key %u: version %u, want %u", i, ver, (unsigned)R);
	}
	ck_assert_int_eq(gpuq_kv_mdelete(q, it, K, WAIT_MS), 0);
	fill_items(it, ks, 0, K, 0, 0);
	ck_assert_int_eq(gpuq_kv_mget(q, it, K, WAIT_MS), 0);
	for (uint32_t i = 0; i < K; i++)
		ck_assert_int_eq(it[i].status, GPUQ_ENOKEY);
	for (uint32_t r = 0; r < R; r++)
		fill_items(it + r * K, ks + r * K, 0, K, r + 1, 1);
	ck_assert_int_eq(gpuq_kv_mput(q, it, R * K, WAIT_MS), 0);
	fill_items(it, ks, 0, K, 0, 0);
	ck_assert_int_eq(gpuq_kv_mget(q, it, K, WAIT_MS), 0);
	for (uint32_t i = 0; i < K; i++) {
		uint32_t ver = 0;
		ck_assert_int_eq(it[i].status, 0);
		ck_assert_msg(check_value(i, ks[i].v, it[i].vlen, &ver) &&
				      ver == R,
			      "key %u: version %u, want %u", i, ver, (unsigned)R);
	}
	gpuq_disconnect(c);
	finish(&b);
	free(it);
	free(ks);
}
END_TEST

START_TEST(test_full)
{
	struct broker_proc b;
	gpuq_client *c;
	gpuq_queue *q;
	gpuq_kv_item it[40];
	struct keyset ks[40];
	int ok = 0, full = 0;
	/* 32 slots: one window */
	start(&b, "kv,handler=kv,table_slots=32,table_value_bytes=64");
	q = attach(b.socket, "kv", &c);
	int put_ok[40];
	fill_items(it, ks, 0, 40, 1, 1);
	ck_assert_int_eq(gpuq_kv_mput(q, it, 40, WAIT_MS), 0);
	/* Which 32 get in is up to the order the batch's messages run in
	 * (concurrently, on the GPU); that exactly 32 do, and the rest are
	 * refused and absent, is not. */
	for (int i = 0; i < 40; i++) {
		put_ok[i] = it[i].status == 0;
		ok += put_ok[i];
		full += it[i].status == GPUQ_ETABLEFULL;
	}
	ck_assert_int_eq(ok, 32);
	ck_assert_int_eq(full, 8);
	fill_items(it, ks, 0, 40, 0, 0);
	ck_assert_int_eq(gpuq_kv_mget(q, it, 40, WAIT_MS), 0);
	for (int i = 0; i < 40; i++) {
		uint32_t ver;
		ck_assert_int_eq(it[i].status, put_ok[i] ? 0 : GPUQ_ENOKEY);
		if (put_ok[i])
			ck_assert(check_value((uint32_t)i, ks[i].v, it[i].vlen, &ver));
	}
	gpuq_disconnect(c);
	finish(&b);
}
END_TEST

/* Requests that are not well formed fail the message, and the broker
 * keeps serving. */
START_TEST(test_garbled)
{
	static const struct {
		uint8_t b[16];
		size_t n;
	} bad[] = {
		{ { 9, 0, 1, 0, 1, 1, 8, 0, 'a', 4, 0 }, 11 },   /* version 9 */
		{ { 1, 0, 1, 0, 1, 1, 8, 0, 'a', 4, 0 }, 11 },   /* version 1 */
		{ { 2, 0, 5, 0, 1, 1, 8, 0, 'a' }, 9 },          /* 5 ops: no table */
		{ { 2, 0, 1, 0, 7, 1, 0, 0, 'a', 4, 0 }, 11 },   /* op 7 */
		{ { 2, 0, 1, 0, 2, 1, 200, 0, 'a', 'b', 4, 0 }, 12 }, /* value cut */
		{ { 2, 0, 1, 0, 1, 1, 8, 0, 'a', 5, 0 }, 11 },   /* offset 5 */
		{ { 2, 0, 2, 0, 1, 1, 8, 0, 'a', 1, 1, 8, 0, 'b', 4, 0 }, 16 },
		/* ^ 2 ops, one offset: op 1's is read from op 1 itself */
	};
	struct broker_proc b;
	gpuq_client *c;
	gpuq_queue *q;
	char v[8];
	size_t n;
	start(&b, "kv,handler=kv,table_slots=64,max_attempts=1");
	q = attach(b.socket, "kv", &c);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint64_t id;
		size_t got;
		uint8_t out[64];
		ck_assert_int_eq(gpuq_enqueue(q, bad[i].b, bad[i].n, &id,
					      WAIT_MS), 0);
		ck_assert_int_eq(gpuq_wait(q, id, out, sizeof(out), &got, WAIT_MS),
				 GPUQ_EHANDLER);
	}
	ck_assert_int_eq(gpuq_kv_put(q, "k", 1, "v", 1, WAIT_MS), 0);
	ck_assert_int_eq(gpuq_kv_get(q, "k", 1, v, sizeof(v), &n, WAIT_MS), 0);
	gpuq_disconnect(c);
	finish(&b);
}
END_TEST

/* Four processes: each writes its own 500 keys, round after round with a
 * new version, and reads all 2000.  Its own keys must read back at the
 * version it last wrote (its puts were done before its get was sent);
 * everyone's values must be well formed, never torn or mixed. */
enum { PROCS = 4, PER = 500, ROUNDS = 20 };

static void worker(const char *socket, uint32_t p)
{
	static gpuq_kv_item it[PROCS * PER];
	static struct keyset ks[PROCS * PER];
	gpuq_client *c;
	gpuq_queue *q;
	if (gpuq_connect(socket, &c) || gpuq_open(c, "kv", &q))
		_exit(2);
	for (uint32_t r = 1; r <= ROUNDS; r++) {
		fill_items(it, ks, p * PER, PER, r, 1);
		if (gpuq_kv_mput(q, it, PER, WAIT_MS))
			_exit(3);
		fill_items(it, ks, 0, PROCS * PER, 0, 0);
		if (gpuq_kv_mget(q, it, PROCS * PER, WAIT_MS))
			_exit(4);
		for (uint32_t i = 0; i < PROCS * PER; i++) {
			uint32_t ver;
			int mine = i / PER == p;
			if (it[i].status == GPUQ_ENOKEY && !mine)
				continue; /* not written yet */
			if (it[i].status ||
			    !check_value(i, ks[i].v, it[i].vlen, &ver) ||
			    (mine && ver != r) || ver > ROUNDS)
				_exit(5);
		}
	}
	gpuq_disconnect(c);
	_exit(0);
}

START_TEST(test_processes)
{
	struct broker_proc b;
	pid_t pid[PROCS];
	start(&b, "kv,handler=kv,table_slots=16k,table_value_bytes=64,"
		  "slot_bytes=2048,workers=2,max_clients=16");
	for (uint32_t p = 0; p < PROCS; p++) {
		pid[p] = fork();
		ck_assert_int_ge(pid[p], 0);
		if (pid[p] == 0)
			worker(b.socket, p);
	}
	for (uint32_t p = 0; p < PROCS; p++) {
		int st;
		ck_assert_int_eq(waitpid(pid[p], &st, 0), pid[p]);
		ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0,
			      "process %u: status %#x", p, st);
	}
	finish(&b);
}
END_TEST

static Suite *suite_kv(void)
{
	Suite *s = suite_create("kv");
	TCase *tc = tcase_create("broker");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_single);
	tcase_add_test(tc, test_not_kv);
	tcase_add_test(tc, test_batch);
	tcase_add_test(tc, test_repeat_order);
	tcase_add_test(tc, test_full);
	tcase_add_test(tc, test_garbled);
	tcase_add_test(tc, test_processes);
	suite_add_tcase(s, tc);
	return s;
}

GPUQ_CHECK_MAIN(suite_kv)
