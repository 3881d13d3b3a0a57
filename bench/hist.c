/* hist.c - the log-linear histogram. */
#include "config.h"

#include <math.h>
#include <string.h>

#include "bench/hist.h"

#define SUB (1u << HIST_SUB_BITS)

void hist_init(struct hist *h)
{
	memset(h, 0, sizeof(*h));
	h->min = UINT64_MAX;
}

/*
 * Below 2 * SUB a value is its own index.  Above, with e = msb(v) - SUB_BITS,
 * v >> e lies in [SUB, 2 * SUB) and the index is e * SUB + (v >> e): each
 * octave adds SUB buckets, and the indices run on without a gap.
 */
uint32_t hist_index(uint64_t v)
{
	uint32_t e;
	if (v < 2 * SUB)
		return (uint32_t)v;
	e = (uint32_t)(63 - __builtin_clzll(v)) - HIST_SUB_BITS;
	return (e << HIST_SUB_BITS) + (uint32_t)(v >> e);
}

uint64_t hist_bucket_low(uint32_t idx)
{
	uint32_t e;
	if (idx < 2 * SUB)
		return idx;
	e = (idx >> HIST_SUB_BITS) - 1;
	return (uint64_t)(idx - (e << HIST_SUB_BITS)) << e;
}

uint64_t hist_bucket_high(uint32_t idx)
{
	uint32_t e;
	if (idx < 2 * SUB)
		return idx;
	e = (idx >> HIST_SUB_BITS) - 1;
	return hist_bucket_low(idx) + ((1ull << e) - 1);
}

static void add_sum(struct hist *h, uint64_t v, uint64_t n)
{
	unsigned __int128 s = ((unsigned __int128)h->sum_hi << 64) | h->sum_lo;
	s += (unsigned __int128)v * n;
	h->sum_hi = (uint64_t)(s >> 64);
	h->sum_lo = (uint64_t)s;
}

void hist_record_n(struct hist *h, uint64_t v, uint64_t n)
{
	if (!n)
		return;
	h->bucket[hist_index(v)] += n;
	h->count += n;
	add_sum(h, v, n);
	if (v < h->min)
		h->min = v;
	if (v > h->max)
		h->max = v;
}

void hist_record(struct hist *h, uint64_t v)
{
	hist_record_n(h, v, 1);
}

void hist_merge(struct hist *into, const struct hist *from)
{
	unsigned __int128 s;
	if (!from->count)
		return;
	for (uint32_t i = 0; i < HIST_BUCKETS; i++)
		into->bucket[i] += from->bucket[i];
	into->count += from->count;
	s = ((unsigned __int128)into->sum_hi << 64) | into->sum_lo;
	s += ((unsigned __int128)from->sum_hi << 64) | from->sum_lo;
	into->sum_hi = (uint64_t)(s >> 64);
	into->sum_lo = (uint64_t)s;
	if (from->min < into->min)
		into->min = from->min;
	if (from->max > into->max)
		into->max = from->max;
}

/* Nearest rank, in exact integer arithmetic: ceil(ppm * count / 10^6),
 * at least 1. */
static uint64_t rank_of(uint64_t count, uint32_t ppm)
{
	unsigned __int128 r = (unsigned __int128)count * ppm + 999999u;
	uint64_t k = (uint64_t)(r / 1000000u);
	return k ? k : 1;
}

uint64_t hist_value_at_ppm(const struct hist *h, uint32_t ppm)
{
	uint64_t rank, cum = 0;
	if (!h->count)
		return 0;
	if (ppm >= 1000000u)
		return h->max;
	rank = rank_of(h->count, ppm);
	for (uint32_t i = 0; i < HIST_BUCKETS; i++) {
		cum += h->bucket[i];
		if (cum >= rank) {
			uint64_t hi = hist_bucket_high(i);
			return hi < h->max ? hi : h->max;
		}
	}
	return h->max;
}

uint64_t hist_percentile(const struct hist *h, double pct)
{
	double ppm = pct * 1e4;
	if (!(ppm > 0))
		ppm = 0;
	if (ppm > 1e6)
		ppm = 1e6;
	return hist_value_at_ppm(h, (uint32_t)llround(ppm));
}

double hist_mean(const struct hist *h)
{
	if (!h->count)
		return 0;
	return ((double)h->sum_hi * 18446744073709551616.0 + (double)h->sum_lo) /
	       (double)h->count;
}

int hist_next(const struct hist *h, uint32_t *pos, uint64_t *value,
	      uint64_t *cum)
{
	uint64_t c = *pos ? *cum : 0;
	for (uint32_t i = *pos; i < HIST_BUCKETS; i++) {
		uint64_t hi;
		if (!h->bucket[i])
			continue;
		c += h->bucket[i];
		hi = hist_bucket_high(i);
		*value = hi < h->max ? hi : h->max;
		*cum = c;
		*pos = i + 1;
		return 1;
	}
	*pos = HIST_BUCKETS;
	return 0;
}
