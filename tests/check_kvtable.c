/*
 * check_kvtable.c - the concurrent hash table (broker/kvtable.h) on the
 * host: each operation's semantics and errors, a full table that refuses
 * rather than corrupts, torn reads, exact counters through in-place
 * read-modify-write, and per-key linearizability of concurrent histories,
 * checked against a sequential model by an exhaustive search (which is
 * itself shown to reject histories that are not linearizable).
 */
#include <check.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/kvtable.h"
#include "tests/lin_table.h"
#include "tests/lincheck.h"
#include "tests/runner.h"

static struct gpuq_kvt table_new(uint64_t slots, uint32_t value_bytes)
{
	struct gpuq_kvt t;
	ck_assert_int_eq(gpuq_kvt_alloc(&t, slots, value_bytes), 0);
	return t;
}

static void table_free(struct gpuq_kvt *t)
{
	gpuq_kvt_free(t);
}

static int put_s(struct gpuq_kvt *t, const char *k, const char *v,
		 enum gpuq_kvt_mode m)
{
	return gpuq_kvt_put(t, k, (uint32_t)strlen(k), v, (uint32_t)strlen(v), m);
}

/* The value of k as a string, or NULL if absent. */
static const char *get_s(struct gpuq_kvt *t, const char *k)
{
	static char buf[256];
	uint32_t n = 0;
	int rc = gpuq_kvt_get(t, k, (uint32_t)strlen(k), buf, sizeof(buf) - 1, &n);
	if (rc == GPUQ_ENOKEY)
		return NULL;
	ck_assert_int_eq(rc, 0);
	buf[n] = 0;
	return buf;
}

START_TEST(test_ops)
{
	struct gpuq_kvt t = table_new(1024, 64);
	ck_assert_ptr_null(get_s(&t, "a"));
	ck_assert_int_eq(put_s(&t, "a", "1", GPUQ_KVT_UPDATE), GPUQ_ENOKEY);
	ck_assert_ptr_null(get_s(&t, "a"));
	ck_assert_int_eq(put_s(&t, "a", "1", GPUQ_KVT_INSERT), 0);
	ck_assert_str_eq(get_s(&t, "a"), "1");
	ck_assert_int_eq(put_s(&t, "a", "2", GPUQ_KVT_INSERT), GPUQ_EEXISTS);
	ck_assert_str_eq(get_s(&t, "a"), "1");
	ck_assert_int_eq(put_s(&t, "a", "22", GPUQ_KVT_UPDATE), 0);
	ck_assert_str_eq(get_s(&t, "a"), "22");
	ck_assert_int_eq(put_s(&t, "a", "333", GPUQ_KVT_UPSERT), 0);
	ck_assert_str_eq(get_s(&t, "a"), "333");
	ck_assert_int_eq(put_s(&t, "b", "x", GPUQ_KVT_UPSERT), 0);
	ck_assert_str_eq(get_s(&t, "b"), "x");
	/* compare-and-swap */
	ck_assert_int_eq(gpuq_kvt_cas_value(&t, "a", 1, "33", 2, "4", 1),
			 GPUQ_ECASFAIL);
	ck_assert_str_eq(get_s(&t, "a"), "333");
	ck_assert_int_eq(gpuq_kvt_cas_value(&t, "a", 1, "333", 3, "4", 1), 0);
	ck_assert_str_eq(get_s(&t, "a"), "4");
	ck_assert_int_eq(gpuq_kvt_cas_value(&t, "zz", 2, "", 0, "4", 1),
			 GPUQ_ENOKEY);
	/* an empty value is a value */
	ck_assert_int_eq(put_s(&t, "e", "", GPUQ_KVT_INSERT), 0);
	ck_assert_str_eq(get_s(&t, "e"), "");
	/* delete */
	ck_assert_int_eq(gpuq_kvt_del(&t, "a", 1), 0);
	ck_assert_ptr_null(get_s(&t, "a"));
	ck_assert_int_eq(gpuq_kvt_del(&t, "a", 1), GPUQ_ENOKEY);
	ck_assert_str_eq(get_s(&t, "b"), "x");
	ck_assert_uint_eq(gpuq_kvt_count(&t), 2);
	/* keys are bytes: a NUL inside counts, a prefix is another key */
	ck_assert_int_eq(gpuq_kvt_put(&t, "k\0x", 3, "n", 1, GPUQ_KVT_INSERT), 0);
	ck_assert_int_eq(gpuq_kvt_put(&t, "k", 1, "m", 1, GPUQ_KVT_INSERT), 0);
	ck_assert_str_eq(get_s(&t, "k"), "m");
	ck_assert_uint_eq(gpuq_kvt_count(&t), 4);
	table_free(&t);
}
END_TEST

/* A value longer than the caller's buffer: cut to cap, full length told. */
START_TEST(test_short_buffer)
{
	struct gpuq_kvt t = table_new(64, 64);
	char out[4] = "";
	uint32_t n = 0;
	ck_assert_int_eq(put_s(&t, "k", "abcdefgh", GPUQ_KVT_UPSERT), 0);
	ck_assert_int_eq(gpuq_kvt_get(&t, "k", 1, out, sizeof(out), &n), 0);
	ck_assert_uint_eq(n, 8);
	ck_assert(!memcmp(out, "abcd", 4));
	ck_assert_int_eq(gpuq_kvt_get(&t, "k", 1, NULL, 0, &n), 0);
	ck_assert_uint_eq(n, 8);
	table_free(&t);
}
END_TEST

START_TEST(test_sizes)
{
	struct gpuq_kvt t = table_new(64, 16);
	uint8_t k33[33], v[17], out[16];
	uint8_t *val;
	uint32_t n;
	int created;
	struct gpuq_kvt_hold h;
	memset(k33, 'k', sizeof(k33));
	memset(v, 'v', sizeof(v));
	/* keys: 1..32 bytes */
	ck_assert_int_eq(gpuq_kvt_put(&t, k33, 0, v, 1, GPUQ_KVT_UPSERT),
			 GPUQ_EKEYSIZE);
	ck_assert_int_eq(gpuq_kvt_put(&t, k33, 33, v, 1, GPUQ_KVT_UPSERT),
			 GPUQ_EKEYSIZE);
	ck_assert_int_eq(gpuq_kvt_get(&t, k33, 33, out, 16, &n), GPUQ_EKEYSIZE);
	ck_assert_int_eq(gpuq_kvt_del(&t, k33, 0), GPUQ_EKEYSIZE);
	ck_assert_int_eq(gpuq_kvt_cas_value(&t, k33, 33, v, 1, v, 1),
			 GPUQ_EKEYSIZE);
	ck_assert_int_eq(gpuq_kvt_acquire(&t, k33, 33, 1, 4, &h, &val, &n,
					  &created),
			 GPUQ_EKEYSIZE);
	ck_assert_int_eq(gpuq_kvt_put(&t, k33, 32, v, 16, GPUQ_KVT_UPSERT), 0);
	/* values: up to value_bytes */
	ck_assert_int_eq(gpuq_kvt_put(&t, k33, 31, v, 17, GPUQ_KVT_UPSERT),
			 GPUQ_EVALSIZE);
	ck_assert_int_eq(gpuq_kvt_cas_value(&t, k33, 32, v, 16, v, 17),
			 GPUQ_EVALSIZE);
	ck_assert_int_eq(gpuq_kvt_acquire(&t, k33, 30, 1, 17, &h, &val, &n,
					  &created),
			 GPUQ_EVALSIZE);
	/* nothing was changed by the refusals */
	ck_assert_uint_eq(gpuq_kvt_count(&t), 1);
	ck_assert_int_eq(gpuq_kvt_get(&t, k33, 32, out, 16, &n), 0);
	ck_assert_uint_eq(n, 16);
	ck_assert(!memcmp(out, v, 16));
	/* and the locks were all given back: these would hang otherwise */
	ck_assert_int_eq(gpuq_kvt_put(&t, k33, 31, v, 3, GPUQ_KVT_UPSERT), 0);
	ck_assert_int_eq(gpuq_kvt_acquire(&t, k33, 30, 1, 8, &h, &val, &n,
					  &created),
			 0);
	gpuq_kvt_release(&t, &h, 8);
	table_free(&t);
}
END_TEST

static void key_of(uint64_t i, uint8_t k[8])
{
	memcpy(k, &i, 8);
}

/* The smallest table is one window: exactly its 32 slots fit, the 33rd key
 * is refused, nothing is lost, and a deletion makes room. */
START_TEST(test_full_window)
{
	struct gpuq_kvt t = table_new(1, 8);
	uint8_t k[8];
	uint64_t v, i;
	uint32_t n;
	ck_assert_uint_eq(t.nbuckets * GPUQ_KVT_BUCKET, GPUQ_KVT_WINDOW);
	for (i = 0; i < GPUQ_KVT_WINDOW; i++) {
		key_of(i, k);
		ck_assert_int_eq(gpuq_kvt_put(&t, k, 8, &i, 8, GPUQ_KVT_INSERT), 0);
	}
	key_of(i, k);
	ck_assert_int_eq(gpuq_kvt_put(&t, k, 8, &i, 8, GPUQ_KVT_UPSERT),
			 GPUQ_ETABLEFULL);
	{
		struct gpuq_kvt_hold h;
		uint8_t *val;
		int created;
		ck_assert_int_eq(gpuq_kvt_acquire(&t, k, 8, 1, 8, &h, &val, &n,
						  &created),
				 GPUQ_ETABLEFULL);
	}
	ck_assert_int_eq(gpuq_kvt_get(&t, k, 8, &v, 8, &n), GPUQ_ENOKEY);
	/* existing keys can still be updated when full */
	key_of(5, k);
	v = 555;
	ck_assert_int_eq(gpuq_kvt_put(&t, k, 8, &v, 8, GPUQ_KVT_UPSERT), 0);
	for (i = 0; i < GPUQ_KVT_WINDOW; i++) {
		key_of(i, k);
		ck_assert_int_eq(gpuq_kvt_get(&t, k, 8, &v, 8, &n), 0);
		ck_assert_uint_eq(v, i == 5 ? 555 : i);
	}
	key_of(7, k);
	ck_assert_int_eq(gpuq_kvt_del(&t, k, 8), 0);
	key_of(GPUQ_KVT_WINDOW, k);
	i = 99;
	ck_assert_int_eq(gpuq_kvt_put(&t, k, 8, &i, 8, GPUQ_KVT_INSERT), 0);
	ck_assert_uint_eq(gpuq_kvt_count(&t), GPUQ_KVT_WINDOW);
	table_free(&t);
}
END_TEST

/* A larger table filled with random keys until the first refusal: every
 * key accepted before is still there with its value, and the load reached
 * is high (windows of 32 slots rarely fill early). */
START_TEST(test_fill_random)
{
	struct gpuq_kvt t = table_new(1u << 14, 8);
	uint64_t slots = t.nbuckets * GPUQ_KVT_BUCKET, n = 0, x = 0x9e3779b9;
	uint64_t *keys = malloc(slots * sizeof(*keys));
	uint32_t len;
	int rc = 0;
	ck_assert_ptr_nonnull(keys);
	while (n < slots) {
		uint64_t v;
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		keys[n] = x;
		v = ~x;
		rc = gpuq_kvt_put(&t, &keys[n], 8, &v, 8, GPUQ_KVT_INSERT);
		if (rc)
			break;
		n++;
	}
	ck_assert_int_eq(rc, GPUQ_ETABLEFULL);
	ck_assert_uint_eq(gpuq_kvt_count(&t), n);
	for (uint64_t i = 0; i < n; i++) {
		uint64_t v = 0;
		ck_assert_int_eq(gpuq_kvt_get(&t, &keys[i], 8, &v, 8, &len), 0);
		ck_assert_uint_eq(v, ~keys[i]);
	}
	printf("kvtable: first refusal at %.1f %% load (%llu of %llu slots)\n",
	       100.0 * (double)n / (double)slots, (unsigned long long)n,
	       (unsigned long long)slots);
	ck_assert_msg(n * 2 > slots, "full at %llu of %llu",
		      (unsigned long long)n, (unsigned long long)slots);
	free(keys);
	table_free(&t);
}
END_TEST

/* ---- concurrency ---- */

#define THREADS 4

struct torn {
	struct gpuq_kvt *t;
	int writer;
	uint64_t reads, bad;
	volatile int *stop;
};

/* Writers store 64-byte values of one repeated byte; readers must never
 * see two different bytes in one value (a torn read). */
static void *torn_thread(void *arg)
{
	struct torn *a = arg;
	uint8_t v[64];
	uint32_t n;
	for (uint32_t i = 0; !*a->stop; i++) {
		if (a->writer) {
			memset(v, (int)(i & 0xff), sizeof(v));
			ck_assert_int_eq(gpuq_kvt_put(a->t, "k", 1, v, 64,
						      GPUQ_KVT_UPSERT),
					 0);
			if (i > 200000)
				*a->stop = 1;
			continue;
		}
		if (gpuq_kvt_get(a->t, "k", 1, v, 64, &n) == 0) {
			a->reads++;
			for (int j = 1; j < 64; j++)
				if (v[j] != v[0]) {
					a->bad++;
					break;
				}
		}
	}
	return NULL;
}

START_TEST(test_no_torn_reads)
{
	struct gpuq_kvt t = table_new(64, 64);
	struct torn a[THREADS];
	pthread_t th[THREADS];
	volatile int stop = 0;
	uint64_t reads = 0;
	for (int i = 0; i < THREADS; i++) {
		a[i] = (struct torn){ &t, i == 0, 0, 0, &stop };
		ck_assert_int_eq(pthread_create(&th[i], NULL, torn_thread, &a[i]), 0);
	}
	for (int i = 0; i < THREADS; i++) {
		pthread_join(th[i], NULL);
		ck_assert_uint_eq(a[i].bad, 0);
		reads += a[i].reads;
	}
	ck_assert_uint_gt(reads, 0);
	table_free(&t);
}
END_TEST

struct adder {
	struct gpuq_kvt *t;
	int id, n;
};

/* Each thread adds 1 to every one of 16 counters, n times, in place. */
static void *adder_thread(void *arg)
{
	struct adder *a = arg;
	for (int i = 0; i < a->n; i++) {
		uint8_t k = (uint8_t)((i + a->id) % 16);
		struct gpuq_kvt_hold h;
		uint8_t *val;
		uint32_t len;
		int created;
		uint64_t c;
		ck_assert_int_eq(gpuq_kvt_acquire(a->t, &k, 1, 1, 8, &h, &val,
						  &len, &created),
				 0);
		ck_assert_uint_eq(len, 8);
		memcpy(&c, val, 8);
		c++;
		memcpy(val, &c, 8);
		gpuq_kvt_release(a->t, &h, 8);
	}
	return NULL;
}

START_TEST(test_counters_exact)
{
	struct gpuq_kvt t = table_new(64, 8);
	struct adder a[THREADS];
	pthread_t th[THREADS];
	const int n = 16 * 5000;
	uint64_t total = 0;
	for (int i = 0; i < THREADS; i++) {
		a[i] = (struct adder){ &t, i, n };
		ck_assert_int_eq(pthread_create(&th[i], NULL, adder_thread, &a[i]), 0);
	}
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	for (uint8_t k = 0; k < 16; k++) {
		uint64_t c = 0;
		uint32_t len;
		ck_assert_int_eq(gpuq_kvt_get(&t, &k, 1, &c, 8, &len), 0);
		ck_assert_uint_eq(c, (uint64_t)THREADS * n / 16);
		total += c;
	}
	ck_assert_uint_eq(total, (uint64_t)THREADS * n);
	table_free(&t);
}
END_TEST

/* ---- linearizability ---- */

/* The checker itself must reject what is not linearizable. */
START_TEST(test_checker_rejects)
{
	/* put 7 completes, then a get that starts later reads absent */
	struct lin_op stale[2] = {
		{ LIN_UPSERT, 7, 0, 0, 0, 1, 2 },
		{ LIN_GET, 0, 0, 0, GPUQ_ENOKEY, 3, 4 },
	};
	/* a value nobody wrote */
	struct lin_op ghost[1] = { { LIN_GET, 0, 0, 9, 0, 1, 2 } };
	/* two overlapping inserts both succeed */
	struct lin_op twice[2] = {
		{ LIN_INSERT, 1, 0, 0, 0, 1, 4 },
		{ LIN_INSERT, 2, 0, 0, 0, 2, 3 },
	};
	/* overlapping: either order is fine */
	struct lin_op fine[2] = {
		{ LIN_UPSERT, 7, 0, 0, 0, 1, 4 },
		{ LIN_GET, 0, 0, 0, GPUQ_ENOKEY, 2, 3 },
	};
	ck_assert(!lin_check(stale, 2, 0, 7));
	ck_assert(!lin_check(ghost, 1, 0, 0));
	ck_assert(!lin_check(twice, 2, 0, 2));
	ck_assert(lin_check(fine, 2, 0, 7));
	ck_assert(!lin_check(fine, 2, 0, 0)); /* wrong final state */
}
END_TEST

#define KEYS 3
#define ROUND_OPS 12 /* per thread per round: <= 48 ops over 3 keys */
#define ROUNDS 400

static uint64_t lclock;
static pthread_barrier_t round_start, round_end;

struct lin_thread {
	struct gpuq_kvt *t;
	int id;
	uint64_t seq, rng;
	uint64_t seen[KEYS];      /* last value seen per key, for CAS */
	struct lin_op ops[ROUND_OPS]; /* this round's */
	int key[ROUND_OPS];
};

static uint64_t rnd(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

static void lin_one(struct lin_thread *a, int i)
{
	struct lin_op *o = &a->ops[i];
	int key = (int)(rnd(&a->rng) % KEYS);
	a->key[i] = key;
	o->k = (enum lin_kind)(rnd(&a->rng) % LIN_N);
	o->arg = (uint64_t)(a->id + 1) << 40 | ++a->seq;
	o->expect = a->seen[key];
	o->inv = __atomic_add_fetch(&lclock, 1, __ATOMIC_SEQ_CST);
	lin_apply(a->t, key, o, &a->seen[key]);
	o->resp = __atomic_add_fetch(&lclock, 1, __ATOMIC_SEQ_CST);
}

static void *lin_thread_main(void *arg)
{
	struct lin_thread *a = arg;
	for (int r = 0; r < ROUNDS; r++) {
		pthread_barrier_wait(&round_start);
		for (int i = 0; i < ROUND_OPS; i++) {
			lin_one(a, i);
			/* a little jitter so that operations overlap */
			for (uint64_t spin = rnd(&a->rng) % 64; spin; spin--)
				ipc_cpu_relax();
		}
		pthread_barrier_wait(&round_end);
		pthread_barrier_wait(&round_end); /* main has checked */
	}
	return NULL;
}

START_TEST(test_linearizable)
{
	/* a small table so that keys share windows and buckets */
	struct gpuq_kvt t = table_new(1, 8);
	static struct lin_thread a[THREADS];
	pthread_t th[THREADS];
	uint64_t state[KEYS] = { 0 }, checked = 0;
	ck_assert_int_eq(pthread_barrier_init(&round_start, NULL, THREADS + 1), 0);
	ck_assert_int_eq(pthread_barrier_init(&round_end, NULL, THREADS + 1), 0);
	for (int i = 0; i < THREADS; i++) {
		memset(&a[i], 0, sizeof(a[i]));
		a[i].t = &t;
		a[i].id = i;
		a[i].rng = 0x2545f4914f6cdd1dull * (uint64_t)(i + 1);
		ck_assert_int_eq(pthread_create(&th[i], NULL, lin_thread_main,
						&a[i]), 0);
	}
	for (int r = 0; r < ROUNDS; r++) {
		pthread_barrier_wait(&round_start);
		pthread_barrier_wait(&round_end);
		for (int key = 0; key < KEYS; key++) {
			struct lin_op h[LIN_MAXOPS];
			int n = 0;
			uint64_t final = lin_value(&t, key);
			for (int i = 0; i < THREADS; i++)
				for (int j = 0; j < ROUND_OPS; j++)
					if (a[i].key[j] == key)
						h[n++] = a[i].ops[j];
			ck_assert_msg(lin_check(h, n, state[key], final) == 1,
				      "round %d key %d: %d operations are not "
				      "linearizable", r, key, n);
			state[key] = final;
			checked += (uint64_t)n;
		}
		pthread_barrier_wait(&round_end);
	}
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	ck_assert_uint_eq(checked, (uint64_t)ROUNDS * THREADS * ROUND_OPS);
	pthread_barrier_destroy(&round_start);
	pthread_barrier_destroy(&round_end);
	table_free(&t);
}
END_TEST

static Suite *suite_kvtable(void)
{
	Suite *s = suite_create("kvtable");
	TCase *tc = tcase_create("ops");
	tcase_add_test(tc, test_ops);
	tcase_add_test(tc, test_short_buffer);
	tcase_add_test(tc, test_sizes);
	tcase_add_test(tc, test_full_window);
	tcase_add_test(tc, test_fill_random);
	suite_add_tcase(s, tc);
	tc = tcase_create("concurrent");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_checker_rejects);
	tcase_add_test(tc, test_no_torn_reads);
	tcase_add_test(tc, test_counters_exact);
	tcase_add_test(tc, test_linearizable);
	suite_add_tcase(s, tc);
	return s;
}

GPUQ_CHECK_MAIN(suite_kvtable)
