/*
 * reference.h - independent reference results, used by the demo, the bench
 * and the tests to check what a backend returned.  Deliberately not the
 * handlers' code: a bitwise CRC32C and a double-precision vector summary,
 * so a bug in the handlers cannot hide by being checked against itself.
 * Also compiles as C++ (the GPU producer test is built with nvcc).
 */
#ifndef GPUQ_BENCH_REFERENCE_H
#define GPUQ_BENCH_REFERENCE_H

#include <math.h>
#include <stdint.h>
#include <string.h>

static inline uint32_t ref_crc32c(const void *data, size_t n)
{
	const uint8_t *p = (const uint8_t *)data;
	uint32_t c = 0xffffffffu;
	for (size_t i = 0; i < n; i++) {
		c ^= p[i];
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (0x82f63b78u & (0u - (c & 1u)));
	}
	return c ^ 0xffffffffu;
}

/* 1 if a checksum-handler completion (status, 4-byte LE result) is right
 * for payload[0..n). */
static inline int ref_crc_result_ok(const void *payload, size_t n, int status,
				    const void *res, size_t len)
{
	uint32_t got;
	if (status || len != 4)
		return 0;
	memcpy(&got, res, 4);
	return got == ref_crc32c(payload, n);
}

/* 1 if got (sum, l2, min, max as float32) matches floats[n] within a
 * relative tolerance that float accumulation of n terms stays inside. */
static inline int ref_vector_ok(const float *x, size_t n, const float got[4])
{
	double sum = 0, sq = 0, mn = x[0], mx = x[0], mag = 0;
	for (size_t i = 0; i < n; i++) {
		sum += x[i];
		sq += (double)x[i] * x[i];
		mag += fabs(x[i]);
		mn = x[i] < mn ? x[i] : mn;
		mx = x[i] > mx ? x[i] : mx;
	}
	double tol = 1e-5 * (double)n;
	return fabs(got[0] - sum) <= tol * (mag + 1) &&
	       fabs(got[1] - sqrt(sq)) <= tol * (sqrt(sq) + 1) &&
	       got[2] == (float)mn && got[3] == (float)mx;
}

/* Deterministic payload bytes: xorshift64* seeded per message. */
static inline void ref_fill(void *buf, size_t n, uint64_t seed)
{
	uint8_t *p = (uint8_t *)buf;
	uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
	for (size_t i = 0; i < n; i++) {
		s ^= s >> 12;
		s ^= s << 25;
		s ^= s >> 27;
		p[i] = (uint8_t)((s * 0x2545f4914f6cdd1dull) >> 56);
	}
}

#endif
