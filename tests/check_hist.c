/*
 * check_hist.c - the benchmark's latency histogram (bench/hist.c) against
 * exact percentiles: sorted copies of the same data, on known sequences and
 * random ones, with the error bound the header promises (a reported value
 * is never below the exact one and at most 1/2^HIST_SUB_BITS above it).
 */
#include "config.h"

#include <check.h>
#include <stdint.h>
#include <stdlib.h>

#include "bench/hist.h"
#include "tests/runner.h"

static const uint32_t ppms[] = { 0, 1, 10000, 100000, 250000, 500000, 750000,
				 900000, 990000, 999000, 999900, 999999,
				 1000000 };

static uint64_t rng(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545f4914f6cdd1dull;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Nearest rank on sorted data: the value at rank ceil(ppm * n / 10^6). */
static uint64_t exact(const uint64_t *sorted, uint64_t n, uint32_t ppm)
{
	unsigned __int128 r = ((unsigned __int128)n * ppm + 999999u) / 1000000u;
	uint64_t rank = (uint64_t)r;
	return sorted[(rank ? rank : 1) - 1];
}

/* Record v[0..n), then check every percentile in ppms[] against exact. */
static void check_against_exact(uint64_t *v, uint64_t n)
{
	struct hist *h = malloc(sizeof(*h));
	ck_assert_ptr_nonnull(h);
	hist_init(h);
	for (uint64_t i = 0; i < n; i++)
		hist_record(h, v[i]);
	qsort(v, n, sizeof(*v), cmp_u64);
	ck_assert_uint_eq(h->count, n);
	ck_assert_uint_eq(h->min, v[0]);
	ck_assert_uint_eq(h->max, v[n - 1]);
	for (size_t i = 0; i < sizeof(ppms) / sizeof(ppms[0]); i++) {
		uint64_t e = exact(v, n, ppms[i]);
		uint64_t got = hist_value_at_ppm(h, ppms[i]);
		ck_assert_msg(got >= e && got - e <= e >> HIST_SUB_BITS,
			      "ppm %u: got %llu, exact %llu", ppms[i],
			      (unsigned long long)got, (unsigned long long)e);
	}
	free(h);
}

START_TEST(test_empty)
{
	struct hist h;
	uint32_t pos = 0;
	uint64_t v, cum = 0;
	hist_init(&h);
	ck_assert_uint_eq(hist_value_at_ppm(&h, 500000), 0);
	ck_assert_uint_eq(hist_value_at_ppm(&h, 1000000), 0);
	ck_assert(hist_mean(&h) == 0);
	ck_assert_int_eq(hist_next(&h, &pos, &v, &cum), 0);
}
END_TEST

/* Every value lies in its bucket, buckets tile the range without gaps and
 * none is wider than the promised fraction of its values. */
START_TEST(test_geometry)
{
	uint64_t s = 0x1234567;
	const uint64_t edge[] = { 0, 1, 255, 256, 511, 512, 513, 1023, 1024,
				  1ull << 40, (1ull << 63) - 1, 1ull << 63,
				  UINT64_MAX };
	for (uint32_t i = 0; i + 1 < HIST_BUCKETS; i++) {
		ck_assert_uint_eq(hist_bucket_high(i) + 1, hist_bucket_low(i + 1));
		ck_assert_uint_le(hist_bucket_high(i) - hist_bucket_low(i),
				  hist_bucket_low(i) >> HIST_SUB_BITS);
	}
	ck_assert_uint_eq(hist_bucket_high(HIST_BUCKETS - 1), UINT64_MAX);
	for (size_t i = 0; i < sizeof(edge) / sizeof(edge[0]); i++) {
		uint32_t k = hist_index(edge[i]);
		ck_assert_uint_lt(k, HIST_BUCKETS);
		ck_assert_uint_le(hist_bucket_low(k), edge[i]);
		ck_assert_uint_ge(hist_bucket_high(k), edge[i]);
	}
	for (int i = 0; i < 100000; i++) {
		uint64_t v = rng(&s) >> (rng(&s) % 64);
		uint32_t k = hist_index(v);
		ck_assert_uint_le(hist_bucket_low(k), v);
		ck_assert_uint_ge(hist_bucket_high(k), v);
	}
}
END_TEST

/* Below 2^(SUB_BITS+1) every value has its own bucket: exact answers. */
START_TEST(test_small_values_exact)
{
	struct hist h;
	uint64_t v[500];
	hist_init(&h);
	for (int i = 0; i < 500; i++) {
		v[i] = (uint64_t)(500 - i);
		hist_record(&h, v[i]);
	}
	qsort(v, 500, sizeof(v[0]), cmp_u64);
	for (size_t i = 0; i < sizeof(ppms) / sizeof(ppms[0]); i++)
		ck_assert_uint_eq(hist_value_at_ppm(&h, ppms[i]), exact(v, 500, ppms[i]));
	ck_assert_uint_eq(hist_value_at_ppm(&h, 500000), 250);
	ck_assert_uint_eq(hist_value_at_ppm(&h, 990000), 495);
	ck_assert(hist_mean(&h) == 250.5);
}
END_TEST

/* 1..10^6 once each: the percentiles are known in closed form. */
START_TEST(test_known_sequence)
{
	uint64_t n = 1000000, *v = malloc(n * sizeof(*v));
	struct hist *h = malloc(sizeof(*h));
	ck_assert_ptr_nonnull(v);
	ck_assert_ptr_nonnull(h);
	hist_init(h);
	for (uint64_t i = 0; i < n; i++) {
		v[i] = i + 1;
		hist_record(h, i + 1);
	}
	ck_assert(hist_mean(h) == 500000.5);
	ck_assert_uint_ge(hist_percentile(h, 50), 500000);
	ck_assert_uint_le(hist_percentile(h, 50), 500000 + (500000 >> HIST_SUB_BITS));
	ck_assert_uint_ge(hist_percentile(h, 99.9), 999000);
	ck_assert_uint_le(hist_percentile(h, 99.9), 999000 + (999000 >> HIST_SUB_BITS));
	ck_assert_uint_eq(hist_percentile(h, 99.9), hist_value_at_ppm(h, 999000));
	ck_assert_uint_eq(hist_percentile(h, 100), 1000000);
	free(h);
	check_against_exact(v, n);
	free(v);
}
END_TEST

/* Random data over many orders of magnitude, several seeds and sizes. */
START_TEST(test_random_vs_exact)
{
	uint64_t s = 0x9e3779b97f4a7c15ull + (uint64_t)_i;
	uint64_t n = 1 + rng(&s) % 200000;
	uint64_t *v = malloc(n * sizeof(*v));
	ck_assert_ptr_nonnull(v);
	for (uint64_t i = 0; i < n; i++) {
		/* log-uniform up to 2^44 (~5 hours in ns), with repeats */
		uint64_t x = rng(&s);
		v[i] = (x >> 20) % 5 == 0 ? 1000 : x >> (20 + x % 44);
	}
	check_against_exact(v, n);
	free(v);
}
END_TEST

/* Merging the processes' histograms is the same as recording into one. */
START_TEST(test_merge)
{
	struct hist *part = malloc(4 * sizeof(*part)), *all = malloc(sizeof(*all));
	struct hist *m = malloc(sizeof(*m));
	uint64_t s = 42;
	ck_assert(part && all && m);
	hist_init(all);
	hist_init(m);
	for (int k = 0; k < 4; k++)
		hist_init(&part[k]);
	for (int i = 0; i < 100000; i++) {
		uint64_t v = rng(&s) >> (rng(&s) % 50 + 10);
		hist_record(&part[i % 4], v);
		hist_record(all, v);
	}
	for (int k = 0; k < 4; k++)
		hist_merge(m, &part[k]);
	ck_assert_uint_eq(m->count, all->count);
	ck_assert_uint_eq(m->min, all->min);
	ck_assert_uint_eq(m->max, all->max);
	ck_assert_uint_eq(m->sum_lo, all->sum_lo);
	ck_assert_uint_eq(m->sum_hi, all->sum_hi);
	for (uint32_t i = 0; i < HIST_BUCKETS; i++)
		ck_assert_uint_eq(m->bucket[i], all->bucket[i]);
	for (size_t i = 0; i < sizeof(ppms) / sizeof(ppms[0]); i++)
		ck_assert_uint_eq(hist_value_at_ppm(m, ppms[i]),
				  hist_value_at_ppm(all, ppms[i]));
	free(part);
	free(all);
	free(m);
}
END_TEST

START_TEST(test_record_n_and_huge)
{
	struct hist a, b;
	hist_init(&a);
	hist_init(&b);
	hist_record_n(&a, 777777, 1000);
	for (int i = 0; i < 1000; i++)
		hist_record(&b, 777777);
	ck_assert_uint_eq(hist_value_at_ppm(&a, 500000), hist_value_at_ppm(&b, 500000));
	ck_assert(hist_mean(&a) == 777777.0);
	hist_record_n(&a, 0, 0); /* no-op */
	ck_assert_uint_eq(a.count, 1000);
	/* The top of the range: no overflow in the index, bucket or sum. */
	hist_init(&a);
	hist_record(&a, UINT64_MAX);
	hist_record(&a, UINT64_MAX);
	hist_record(&a, 1ull << 63);
	ck_assert_uint_eq(hist_value_at_ppm(&a, 1000000), UINT64_MAX);
	ck_assert_uint_eq(hist_value_at_ppm(&a, 500000), UINT64_MAX);
	ck_assert_uint_ge(hist_value_at_ppm(&a, 1), 1ull << 63);
	ck_assert(hist_mean(&a) > 1.5e19);
}
END_TEST

/* The CDF walk: increasing values and counts, ending at (max, count). */
START_TEST(test_cdf_walk)
{
	struct hist h;
	uint64_t s = 7, prev_v = 0, prev_c = 0, v = 0, cum = 0;
	uint32_t pos = 0;
	int steps = 0;
	hist_init(&h);
	for (int i = 0; i < 50000; i++)
		hist_record(&h, rng(&s) % 10000000);
	while (hist_next(&h, &pos, &v, &cum)) {
		ck_assert(steps == 0 || v > prev_v);
		ck_assert_uint_gt(cum, prev_c);
		prev_v = v;
		prev_c = cum;
		steps++;
	}
	ck_assert_uint_eq(prev_c, h.count);
	ck_assert_uint_eq(prev_v, h.max);
	ck_assert_int_gt(steps, 100);
}
END_TEST

static Suite *suite_hist(void)
{
	Suite *s = suite_create("hist");
	TCase *tc = tcase_create("hist");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_empty);
	tcase_add_test(tc, test_geometry);
	tcase_add_test(tc, test_small_values_exact);
	tcase_add_test(tc, test_known_sequence);
	tcase_add_loop_test(tc, test_random_vs_exact, 0, 8);
	tcase_add_test(tc, test_merge);
	tcase_add_test(tc, test_record_n_and_huge);
	tcase_add_test(tc, test_cdf_walk);
	suite_add_tcase(s, tc);
	return s;
}

GPUQ_CHECK_MAIN(suite_hist)
