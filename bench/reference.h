/*
 * reference.h - independent reference results, used by the demo, the bench
 * and the tests to check what a backend returned.  Deliberately not the
 * handlers' code: CRC32C bit by bit or by the CPU's CRC32 instruction, and
 * a double-precision vector summary,
 * so a bug in the handlers cannot hide by being checked against itself.
 * Also compiles as C++ (the GPU producer test is built with nvcc).
 */
#ifndef GPUQ_BENCH_REFERENCE_H
#define GPUQ_BENCH_REFERENCE_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* Bit by bit: the definition, and the reference where nothing faster is. */
static inline uint32_t ref_crc32c_bitwise(const void *data, size_t n)
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

/*
 * The x86-64 CRC32 instruction (SSE4.2) computes CRC32C, the handler's
 * polynomial, in hardware: still not the handlers' code (their slicing
 * tables), and ~100x faster than the bitwise loop, which held a producer
 * checking every 256-byte result to ~265k msg/s (gpuq-bench --verify on
 * the H200).  Inline asm, not intrinsics, so that it needs no target flag
 * and no intrinsics header; not under nvcc, whose front end would have to
 * parse it (the GPU producer test checks few results).
 */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__CUDACC__)
#define REF_CRC32C_HW 1
static inline int ref_crc32c_hw_ok(void)
{
	static int ok = -1;
	if (ok < 0)
		ok = __builtin_cpu_supports("sse4.2") ? 1 : 0;
	return ok;
}

static inline uint32_t ref_crc32c_hw(const void *data, size_t n)
{
	const uint8_t *p = (const uint8_t *)data;
	uint64_t c = 0xffffffffu;
	for (; n >= 8; p += 8, n -= 8) {
		uint64_t v;
		memcpy(&v, p, 8);
		__asm__("crc32q %1, %0" : "+r"(c) : "rm"(v));
	}
	for (; n; p++, n--) {
		uint32_t c32 = (uint32_t)c;
		__asm__("crc32b %1, %0" : "+r"(c32) : "rm"(*p));
		c = c32;
	}
	return (uint32_t)c ^ 0xffffffffu;
}
#endif

static inline uint32_t ref_crc32c(const void *data, size_t n)
{
#ifdef REF_CRC32C_HW
	if (ref_crc32c_hw_ok())
		return ref_crc32c_hw(data, n);
#endif
	return ref_crc32c_bitwise(data, n);
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
