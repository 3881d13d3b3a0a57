/*
 * hist.h - an HDR-style log-linear histogram of non-negative integers
 * (gpuq-bench records latencies in nanoseconds).
 *
 * Values below 2^(HIST_SUB_BITS+1) each have their own bucket.  Above that,
 * every power-of-two range [2^k, 2^(k+1)) is cut into 2^HIST_SUB_BITS equal
 * buckets, so a bucket is never wider than 1/2^HIST_SUB_BITS of the values
 * in it: with 8 bits a reported percentile is at most 0.39% above the exact
 * one, over the whole uint64_t range, with no configuration and no
 * overflow.  The struct is plain data of a fixed size, so it can live in
 * shared memory, be written by one process and merged by another.
 *
 * Percentiles use the nearest-rank definition: the value at rank
 * ceil(p * count) of the sorted data.  hist_value_at_ppm() returns the
 * highest value that shares a bucket with that exact value (clipped to the
 * largest value recorded), so it never under-reports.
 */
#ifndef GPUQ_BENCH_HIST_H
#define GPUQ_BENCH_HIST_H

#include <stddef.h>
#include <stdint.h>

#define HIST_SUB_BITS 8
#define HIST_BUCKETS ((65 - HIST_SUB_BITS) << HIST_SUB_BITS)

struct hist {
	uint64_t count;
	uint64_t min, max; /* exact; min is UINT64_MAX while empty */
	uint64_t sum_hi, sum_lo; /* exact 128-bit sum, for the mean */
	uint64_t bucket[HIST_BUCKETS];
};

void hist_init(struct hist *h);
void hist_record(struct hist *h, uint64_t v);
void hist_record_n(struct hist *h, uint64_t v, uint64_t n);
/* into += from.  Merging is exact: same as recording both sets into one. */
void hist_merge(struct hist *into, const struct hist *from);

/* Value at percentile ppm/10^4 (ppm in 0..1000000: 500000 = p50,
 * 999000 = p99.9, 1000000 = max).  0 on an empty histogram. */
uint64_t hist_value_at_ppm(const struct hist *h, uint32_t ppm);
/* The same for a percentage (99.9 for p99.9), rounded to whole ppm. */
uint64_t hist_percentile(const struct hist *h, double pct);
double hist_mean(const struct hist *h);

/* Bucket geometry, exposed for tests and plots. */
uint32_t hist_index(uint64_t v);
uint64_t hist_bucket_low(uint32_t idx);
uint64_t hist_bucket_high(uint32_t idx);

/*
 * Walk the non-empty buckets in value order, which gives the CDF: start
 * with *pos = 0 and pass *pos and *cum back unchanged.  Each call sets
 * *value (the bucket's highest value, clipped to max) and *cum (how many
 * recorded values are <= *value) and returns 1; it returns 0 at the end.
 */
int hist_next(const struct hist *h, uint32_t *pos, uint64_t *value,
	      uint64_t *cum);

#endif
