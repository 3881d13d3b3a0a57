/* check_handlers.c - the built-in handlers (broker/handlers.h), called
 * directly and through gpuq_handler_run(), checked against the independent
 * reference code in bench/reference.h; and the handler table. */
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/reference.h"
#include "broker/handler_table.h"
#include "broker/handlers.h"
#include "tests/runner.h"

Suite *suite_handlers(void);

#define MAXLEN 4096u

static uint64_t rng_state;

static uint64_t rnd(void)
{
	uint64_t x = rng_state;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	rng_state = x;
	return x * 0x2545f4914f6cdd1dull;
}

/* Run handler id on data[0..len) with cap bytes of result room at out;
 * the whole out buffer (outsz >= cap bytes) is poisoned first so bytes
 * the handler did not write show. */
static int run_in(uint32_t id, const void *data, uint32_t len, uint8_t *out,
		  size_t outsz, uint32_t cap, uint32_t *res_len)
{
	struct gpuq_hmsg m = { .data = data, .len = len, .attempt = 1,
			       .id = 1 };
	struct gpuq_hres r = { out, cap, 0xdeadu };
	int rc;

	ck_assert_uint_ge(outsz, cap);
	memset(out, 0xa5, outsz);
	rc = gpuq_handler_run(id, &m, &r);
	*res_len = r.len;
	return rc;
}

/* run_in() on an array out: its whole size is poisoned. */
#define run(id, data, len, out, cap, rl) \
	run_in(id, data, len, out, sizeof(out), cap, rl)

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

/* ---- checksum ---- */

static uint32_t crc_via_handler(const void *data, uint32_t len)
{
	uint8_t out[8];
	uint32_t rl;

	ck_assert_int_eq(run(GPUQ_H_CHECKSUM, data, len, out, 4, &rl), 0);
	ck_assert_uint_eq(rl, 4);
	return le32(out);
}

START_TEST(test_crc_vectors)
{
	uint8_t buf[32];

	ck_assert_uint_eq(ref_crc32c("123456789", 9), 0xE3069283u);
	ck_assert_uint_eq(crc_via_handler("123456789", 9), 0xE3069283u);
	ck_assert_uint_eq(gpuq_crc32c((const uint8_t *)"123456789", 9),
			  0xE3069283u);
	memset(buf, 0, sizeof(buf));
	ck_assert_uint_eq(ref_crc32c(buf, 32), 0x8A9136AAu);
	ck_assert_uint_eq(crc_via_handler(buf, 32), 0x8A9136AAu);
	memset(buf, 0xff, sizeof(buf));
	ck_assert_uint_eq(ref_crc32c(buf, 32), 0x62A8AB43u);
	ck_assert_uint_eq(crc_via_handler(buf, 32), 0x62A8AB43u);
	/* 32 bytes 0x00..0x1f (RFC 3720 B.4) */
	for (int i = 0; i < 32; i++)
		buf[i] = (uint8_t)i;
	ck_assert_uint_eq(crc_via_handler(buf, 32), 0x46DD794Eu);
	/* one byte */
	ck_assert_uint_eq(crc_via_handler("a", 1), ref_crc32c("a", 1));
	ck_assert_uint_eq(crc_via_handler("a", 1), 0xC1D04330u);
}
END_TEST

/* The reference's two ways agree with the definition's vectors and with
 * each other on every length 0..300 at every offset 0..7 (the hardware
 * path's 8-byte steps and byte tail). */
START_TEST(test_crc_reference_paths)
{
	static uint8_t buf[320];
	ck_assert_uint_eq(ref_crc32c_bitwise("123456789", 9), 0xE3069283u);
	ref_fill(buf, sizeof(buf), 7);
#ifdef REF_CRC32C_HW
	if (!ref_crc32c_hw_ok())
		return; /* the bitwise path is the reference here */
	ck_assert_uint_eq(ref_crc32c_hw("123456789", 9), 0xE3069283u);
	for (size_t off = 0; off < 8; off++)
		for (size_t n = 0; n <= 300; n++)
			ck_assert_msg(ref_crc32c_hw(buf + off, n) ==
					      ref_crc32c_bitwise(buf + off, n),
				      "offset %zu length %zu", off, n);
#endif
}
END_TEST

/* The result is the CRC's 4 bytes little-endian, whatever the host. */
START_TEST(test_crc_result_le)
{
	uint8_t out[8];
	uint32_t rl;

	ck_assert_int_eq(run(GPUQ_H_CHECKSUM, "123456789", 9, out, 8, &rl), 0);
	ck_assert_uint_eq(rl, 4);
	ck_assert_uint_eq(out[0], 0x83);
	ck_assert_uint_eq(out[1], 0x92);
	ck_assert_uint_eq(out[2], 0x06);
	ck_assert_uint_eq(out[3], 0xE3);
	/* nothing written past the 4 bytes */
	ck_assert_uint_eq(out[4], 0xa5);
	ck_assert_uint_eq(out[7], 0xa5);
}
END_TEST

START_TEST(test_crc_random)
{
	uint8_t *buf = malloc(MAXLEN);

	ck_assert_ptr_nonnull(buf);
	rng_state = 0x9e3779b97f4a7c15ull;
	for (int i = 0; i < 1000; i++) {
		uint32_t len = 1 + (uint32_t)(rnd() % MAXLEN);
		uint32_t want, got;

		for (uint32_t j = 0; j < len; j++)
			buf[j] = (uint8_t)rnd();
		want = ref_crc32c(buf, len);
		got = crc_via_handler(buf, len);
		ck_assert_msg(got == want, "case %d len %u: %08x != %08x", i,
			      len, got, want);
		/* the incremental form agrees when split anywhere */
		if (len > 1) {
			uint32_t cut = (uint32_t)(rnd() % len);
			uint32_t c = gpuq_crc32c_update(0xffffffffu, buf, cut);
			c = gpuq_crc32c_update(c, buf + cut, len - cut);
			ck_assert_uint_eq(c ^ 0xffffffffu, want);
		}
	}
	free(buf);
}
END_TEST

START_TEST(test_crc_small_cap)
{
	uint8_t out[8];
	uint32_t rl;

	for (uint32_t cap = 0; cap < 4; cap++) {
		ck_assert_int_ne(run(GPUQ_H_CHECKSUM, "123456789", 9, out, cap,
				     &rl), 0);
		/* nothing written into too little room */
		for (uint32_t i = cap; i < sizeof(out); i++)
			ck_assert_uint_eq(out[i], 0xa5);
	}
	ck_assert_int_eq(run(GPUQ_H_CHECKSUM, "123456789", 9, out, 4, &rl), 0);
}
END_TEST

/* ---- echo ---- */

#define OUTSZ (MAXLEN + 16)

START_TEST(test_echo)
{
	uint8_t *in = malloc(MAXLEN), *out = malloc(OUTSZ);
	uint32_t rl;
	struct gpuq_hmsg m;
	struct gpuq_hres r;

	ck_assert_ptr_nonnull(in);
	ck_assert_ptr_nonnull(out);
	rng_state = 12345;
	for (int i = 0; i < 200; i++) {
		uint32_t len = 1 + (uint32_t)(rnd() % MAXLEN);

		for (uint32_t j = 0; j < len; j++)
			in[j] = (uint8_t)rnd();
		ck_assert_int_eq(run_in(GPUQ_H_ECHO, in, len, out, OUTSZ,
					MAXLEN + 16, &rl), 0);
		ck_assert_uint_eq(rl, len);
		ck_assert_mem_eq(out, in, len);
		/* exactly len bytes: the next one is untouched */
		ck_assert_uint_eq(out[len], 0xa5);
	}
	/* cap == len is enough */
	ck_assert_int_eq(run_in(GPUQ_H_ECHO, in, 100, out, OUTSZ, 100, &rl), 0);
	ck_assert_uint_eq(rl, 100);
	ck_assert_mem_eq(out, in, 100);
	/* cap < len fails and writes nothing */
	ck_assert_int_ne(run_in(GPUQ_H_ECHO, in, 100, out, OUTSZ, 99, &rl), 0);
	ck_assert_uint_eq(out[0], 0xa5);
	ck_assert_int_ne(run_in(GPUQ_H_ECHO, in, 1, out, OUTSZ, 0, &rl), 0);

	/* the named function is the same */
	m.data = in;
	m.len = 7;
	m.id = 9;
	r.data = out;
	r.cap = 16;
	r.len = 0;
	ck_assert_int_eq(gpuq_handler_echo(&m, &r), 0);
	ck_assert_uint_eq(r.len, 7);
	ck_assert_mem_eq(out, in, 7);
	free(in);
	free(out);
}
END_TEST

/* ---- vector ---- */

static struct gpuq_vector_result vec(const float *x, uint32_t n)
{
	struct gpuq_vector_result v;
	uint8_t out[32];
	uint32_t rl;

	ck_assert_int_eq(run(GPUQ_H_VECTOR, x, n * 4, out, sizeof(out), &rl),
			 0);
	ck_assert_uint_eq(rl, 16);
	ck_assert_uint_eq(out[16], 0xa5);
	memcpy(&v, out, sizeof(v));
	return v;
}

START_TEST(test_vector_known)
{
	static const float a[] = { 3, 4 };
	static const float b[] = { -2, -4, 4 };
	static const float c[] = { -7.5f };
	static const float d[] = { 1, -1, 1, -1, 2, -2 };
	static const float e[] = { -3, -1, -2 };
	struct gpuq_vector_result v;

	v = vec(a, 2);
	ck_assert_float_eq(v.sum, 7.0f);
	ck_assert_float_eq(v.l2, 5.0f);
	ck_assert_float_eq(v.min, 3.0f);
	ck_assert_float_eq(v.max, 4.0f);

	v = vec(b, 3);
	ck_assert_float_eq(v.sum, -2.0f);
	ck_assert_float_eq(v.l2, 6.0f);
	ck_assert_float_eq(v.min, -4.0f);
	ck_assert_float_eq(v.max, 4.0f);

	v = vec(c, 1);
	ck_assert_float_eq(v.sum, -7.5f);
	ck_assert_float_eq(v.l2, 7.5f);
	ck_assert_float_eq(v.min, -7.5f);
	ck_assert_float_eq(v.max, -7.5f);

	v = vec(d, 6);
	ck_assert_float_eq(v.sum, 0.0f);
	ck_assert_float_eq(v.l2, sqrtf(12.0f));
	ck_assert_float_eq(v.min, -2.0f);
	ck_assert_float_eq(v.max, 2.0f);

	/* all negative: max is negative, not 0 */
	v = vec(e, 3);
	ck_assert_float_eq(v.sum, -6.0f);
	ck_assert_float_eq(v.l2, sqrtf(14.0f));
	ck_assert_float_eq(v.min, -3.0f);
	ck_assert_float_eq(v.max, -1.0f);
	{
		float got[4] = { v.sum, v.l2, v.min, v.max };
		ck_assert(ref_vector_ok(e, 3, got));
		got[3] = 0.0f;
		ck_assert(!ref_vector_ok(e, 3, got));
	}
}
END_TEST

START_TEST(test_vector_random)
{
	float *x = malloc(MAXLEN);

	ck_assert_ptr_nonnull(x);
	rng_state = 0x0123456789abcdefull;
	for (int i = 0; i < 1000; i++) {
		uint32_t n = 1 + (uint32_t)(rnd() % (MAXLEN / 4));
		struct gpuq_vector_result v;
		float got[4];
		/* scales from tiny to large, signs mixed */
		float scale = (float)(1u << (rnd() % 20)) / 1024.0f;

		for (uint32_t j = 0; j < n; j++)
			x[j] = ((float)(rnd() % 2000001) - 1000000.0f) /
			       1000000.0f * scale;
		v = vec(x, n);
		got[0] = v.sum;
		got[1] = v.l2;
		got[2] = v.min;
		got[3] = v.max;
		ck_assert_msg(ref_vector_ok(x, n, got),
			      "case %d n %u: sum %g l2 %g min %g max %g", i, n,
			      (double)v.sum, (double)v.l2, (double)v.min,
			      (double)v.max);
	}
	free(x);
}
END_TEST

START_TEST(test_vector_bad)
{
	static const float x[4] = { 1, 2, 3, 4 };
	uint8_t out[32];
	uint32_t rl;

	for (uint32_t len = 1; len < 16; len++) {
		if (len % 4 == 0)
			continue;
		ck_assert_msg(run(GPUQ_H_VECTOR, x, len, out, sizeof(out),
				  &rl) != 0, "len %u accepted", len);
		ck_assert_uint_eq(out[0], 0xa5);
	}
	for (uint32_t cap = 0; cap < 16; cap++) {
		ck_assert_int_ne(run(GPUQ_H_VECTOR, x, 16, out, cap, &rl), 0);
		ck_assert_uint_eq(out[cap], 0xa5);
	}
	ck_assert_int_eq(run(GPUQ_H_VECTOR, x, 16, out, 16, &rl), 0);
	ck_assert_uint_eq(rl, 16);
}
END_TEST

/* ---- dispatch and table ---- */

START_TEST(test_unknown_id)
{
	static const uint32_t ids[] = { 0, 4, 100, 0xffffffffu };
	uint8_t out[64];
	uint32_t rl;

	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
		ck_assert_msg(run(ids[i], "abcd", 4, out, sizeof(out), &rl),
			      "handler id %u ran", ids[i]);
}
END_TEST

/* gpuq_handler_run() dispatches to the named functions. */
START_TEST(test_dispatch_matches)
{
	static const float x[3] = { 1.5f, -2.25f, 8.0f };
	uint8_t a[64], b[64];
	uint32_t rl;
	struct gpuq_hmsg m = { .data = (const uint8_t *)x, .len = sizeof(x),
			       .attempt = 1, .id = 0 };
	struct gpuq_hres r = { b, sizeof(b), 0 };

	ck_assert_int_eq(run(GPUQ_H_VECTOR, x, sizeof(x), a, sizeof(a), &rl),
			 0);
	memset(b, 0xa5, sizeof(b));
	ck_assert_int_eq(gpuq_handler_vector(&m, &r), 0);
	ck_assert_uint_eq(r.len, rl);
	ck_assert_mem_eq(a, b, sizeof(a));

	ck_assert_int_eq(run(GPUQ_H_CHECKSUM, x, sizeof(x), a, sizeof(a), &rl),
			 0);
	memset(b, 0xa5, sizeof(b));
	r.len = 0;
	ck_assert_int_eq(gpuq_handler_checksum(&m, &r), 0);
	ck_assert_uint_eq(r.len, rl);
	ck_assert_mem_eq(a, b, sizeof(a));
	ck_assert_uint_eq(le32(a), ref_crc32c(x, sizeof(x)));
}
END_TEST

START_TEST(test_lookup)
{
	const struct handler_info *h;

	h = handler_lookup("echo");
	ck_assert_ptr_nonnull(h);
	ck_assert_str_eq(h->name, "echo");
	ck_assert_uint_eq(h->id, GPUQ_H_ECHO);
	ck_assert_uint_eq(h->result_bytes(512), 512);
	ck_assert_uint_eq(h->result_bytes(1), 1);
	ck_assert_uint_eq(h->result_bytes(65536), 65536);

	h = handler_lookup("checksum");
	ck_assert_ptr_nonnull(h);
	ck_assert_str_eq(h->name, "checksum");
	ck_assert_uint_eq(h->id, GPUQ_H_CHECKSUM);
	ck_assert_uint_eq(h->result_bytes(512), 4);
	ck_assert_uint_eq(h->result_bytes(1), 4);

	h = handler_lookup("vector");
	ck_assert_ptr_nonnull(h);
	ck_assert_str_eq(h->name, "vector");
	ck_assert_uint_eq(h->id, GPUQ_H_VECTOR);
	ck_assert_uint_eq(h->result_bytes(512), 16);
	ck_assert_uint_eq(h->result_bytes(4096), 16);
	ck_assert_uint_eq(sizeof(struct gpuq_vector_result), 16);

	ck_assert_ptr_null(handler_lookup("nope"));
	ck_assert_ptr_null(handler_lookup(""));
	ck_assert_ptr_null(handler_lookup("Echo"));
	ck_assert_ptr_null(handler_lookup("echo "));
	ck_assert_ptr_null(handler_lookup("check"));
	ck_assert_ptr_null(handler_lookup("checksums"));
}
END_TEST

START_TEST(test_all)
{
	const struct handler_info *t = handler_all();
	int seen_echo = 0, seen_crc = 0, seen_vec = 0, seen_ks = 0, seen_kv = 0;
	int n = 0;

	ck_assert_ptr_nonnull(t);
	for (; t[n].name; n++) {
		ck_assert_ptr_nonnull(t[n].result_bytes);
		ck_assert_ptr_nonnull(t[n].summary);
		/* every listed entry is what lookup returns for its name */
		ck_assert_ptr_eq(handler_lookup(t[n].name), &t[n]);
		seen_echo += !strcmp(t[n].name, "echo") &&
			     t[n].id == GPUQ_H_ECHO;
		seen_crc += !strcmp(t[n].name, "checksum") &&
			    t[n].id == GPUQ_H_CHECKSUM;
		seen_vec += !strcmp(t[n].name, "vector") &&
			    t[n].id == GPUQ_H_VECTOR;
		seen_ks += !strcmp(t[n].name, "keysum") &&
			   t[n].id == GPUQ_H_KEYSUM;
		seen_kv += !strcmp(t[n].name, "kv") && t[n].id == GPUQ_H_KV;
		ck_assert_int_lt(n, 100);
	}
	ck_assert_int_eq(n, 5);
	ck_assert_int_eq(seen_echo, 1);
	ck_assert_int_eq(seen_crc, 1);
	ck_assert_int_eq(seen_vec, 1);
	ck_assert_int_eq(seen_ks, 1);
	ck_assert_int_eq(seen_kv, 1);
}
END_TEST

/* ---- the handlers with a table ---- */

static struct gpuq_kvt small_table(void)
{
	struct gpuq_kvt t;
	ck_assert_int_eq(gpuq_kvt_alloc(&t, 256, 32), 0);
	return t;
}

static int run_with(uint32_t id, const struct gpuq_kvt *t, const void *p,
		    uint32_t len, uint8_t *out, uint32_t cap, uint32_t *olen)
{
	uint8_t in[512] __attribute__((aligned(16)));
	struct gpuq_hmsg m = { in, len, 1, 1, 0, t };
	struct gpuq_hres r = { out, cap, 0 };
	int rc;
	memcpy(in, p, len);
	rc = gpuq_handler_run(id, &m, &r);
	*olen = r.len;
	return rc;
}

START_TEST(test_keysum_unit)
{
	struct gpuq_kvt t = small_table();
	uint8_t p[8 + 12], out[16];
	uint64_t key = 77, count;
	float xs[3] = { 1.5f, 2.0f, -0.5f };
	double sum;
	uint32_t n;
	memcpy(p, &key, 8);
	memcpy(p + 8, xs, 12);
	/* no table, a bad length, too little result room: failures */
	ck_assert_int_ne(run_with(GPUQ_H_KEYSUM, NULL, p, 20, out, 16, &n), 0);
	ck_assert_int_ne(run_with(GPUQ_H_KEYSUM, &t, p, 19, out, 16, &n), 0);
	ck_assert_int_ne(run_with(GPUQ_H_KEYSUM, &t, p, 20, out, 15, &n), 0);
	ck_assert_uint_eq(gpuq_kvt_count(&t), 0); /* nothing changed */
	for (int i = 1; i <= 2; i++) {
		ck_assert_int_eq(run_with(GPUQ_H_KEYSUM, &t, p, 20, out, 16, &n), 0);
		ck_assert_uint_eq(n, 16);
		memcpy(&count, out, 8);
		memcpy(&sum, out + 8, 8);
		ck_assert_uint_eq(count, 3u * (unsigned)i);
		ck_assert(sum == 3.0 * i);
	}
	gpuq_kvt_free(&t);
}
END_TEST

/* A record's liveness: within the window, expired after it, and live when
 * it is newer than the caller's clock reading (taken before the lock). */
START_TEST(test_once_live)
{
	struct gpuq_once_rec r = { 1000, 0, 0 };
	ck_assert(gpuq_once_live(&r, 1500, 1000));
	ck_assert(!gpuq_once_live(&r, 2000, 1000));
	ck_assert(gpuq_once_live(&r, 900, 1000)); /* newer than now */
	ck_assert(gpuq_once_live(&r, 1ull << 62, 0)); /* window 0: for ever */
	r.done_ns = 0;
	ck_assert(!gpuq_once_live(&r, 900, 1000)); /* no record */
}
END_TEST

/* kv requests at the handler: the reply format (a fixed-size record per
 * op, a get's unused room zeroed), per-op statuses, and malformed requests
 * refused. */
START_TEST(test_kv_unit)
{
	struct gpuq_kvt t = small_table();
	/* put "a"="xyz", get "a" (up to 8), get "b", delete "a" */
	static const uint8_t req[] = {
		GPUQ_KVW_VERSION, 0, 4, 0,
		2, 1, 3, 0, 'a', 'x', 'y', 'z',
		1, 1, 8, 0, 'a',
		1, 1, 8, 0, 'b',
		3, 1, 0, 0, 'a',
		4, 0, 12, 0, 17, 0, 22, 0, /* where each op starts */
	};
	uint8_t out[256];
	uint32_t n;
	int32_t st;
	uint16_t len, cnt;
	static const uint8_t zero[5];
	memset(out, 0xaa, sizeof(out)); /* an earlier result's bytes */
	ck_assert_int_eq(run_with(GPUQ_H_KV, &t, req, sizeof(req), out,
				  sizeof(out), &n), 0);
	ck_assert_uint_eq(n, 4 + 8 + (8 + 8) + (8 + 8) + 8);
	memcpy(&cnt, out, 2);
	ck_assert_uint_eq(cnt, 4);
	memcpy(&st, out + 4, 4);
	ck_assert_int_eq(st, 0); /* put */
	memcpy(&st, out + 12, 4);
	memcpy(&len, out + 16, 2);
	memcpy(&cnt, out + 18, 2);
	ck_assert_int_eq(st, 0); /* get a */
	ck_assert_uint_eq(len, 3);
	ck_assert_uint_eq(cnt, 3);
	ck_assert(!memcmp(out + 20, "xyz", 3));
	ck_assert(!memcmp(out + 23, zero, 5));
	memcpy(&st, out + 28, 4);
	memcpy(&cnt, out + 34, 2);
	ck_assert_int_eq(st, GPUQ_ENOKEY); /* get b */
	ck_assert_uint_eq(cnt, 0);
	ck_assert(!memcmp(out + 36, zero, 5));
	memcpy(&st, out + 44, 4);
	ck_assert_int_eq(st, 0); /* delete a */
	ck_assert_uint_eq(gpuq_kvt_count(&t), 0);
	/* malformed: version, truncated, unknown op, offsets that do not
	 * chain the ops, no table, no room */
	{
		uint8_t bad[sizeof(req)];
		memcpy(bad, req, sizeof(req));
		bad[0] = 1; /* version 1 packed its replies tightly */
		ck_assert_int_ne(run_with(GPUQ_H_KV, &t, bad, sizeof(bad), out,
					  sizeof(out), &n), 0);
		ck_assert_int_ne(run_with(GPUQ_H_KV, &t, req, sizeof(req) - 1,
					  out, sizeof(out), &n), 0);
		memcpy(bad, req, sizeof(req));
		bad[4] = 9;
		ck_assert_int_ne(run_with(GPUQ_H_KV, &t, bad, sizeof(bad), out,
					  sizeof(out), &n), 0);
		memcpy(bad, req, sizeof(req));
		bad[27] = 5; /* op 0 must start right after the header */
		ck_assert_int_ne(run_with(GPUQ_H_KV, &t, bad, sizeof(bad), out,
					  sizeof(out), &n), 0);
		memcpy(bad, req, sizeof(req));
		bad[31] = 18; /* op 2 must start where op 1 ends */
		ck_assert_int_ne(run_with(GPUQ_H_KV, &t, bad, sizeof(bad), out,
					  sizeof(out), &n), 0);
		memcpy(bad, req, sizeof(req));
		bad[2] = 20; /* 20 ops: no room for their offsets */
		ck_assert_int_ne(run_with(GPUQ_H_KV, &t, bad, sizeof(bad), out,
					  sizeof(out), &n), 0);
		ck_assert_int_ne(run_with(GPUQ_H_KV, NULL, req, sizeof(req), out,
					  sizeof(out), &n), 0);
		ck_assert_int_ne(run_with(GPUQ_H_KV, &t, req, sizeof(req), out,
					  51, &n), 0);
		/* none of those ran a single op: "a" was never put */
		ck_assert_uint_eq(gpuq_kvt_count(&t), 0);
	}
	gpuq_kvt_free(&t);
}
END_TEST

/* ---- fault injection and retries ---- */

START_TEST(test_fault_rate)
{
	static const uint32_t ppms[] = { 1000, 50000, 100000, 500000 };

	for (size_t i = 0; i < sizeof(ppms) / sizeof(ppms[0]); i++) {
		struct gpuq_fault f = { ppms[i], 0 };
		uint64_t n = 0;
		double frac;

		for (uint64_t id = 0; id < 1000000; id++)
			n += gpuq_fault_chosen(&f, id) != 0;
		/* within 10% of ppm per million (sd is under 1% here) */
		frac = (double)n / (double)ppms[i];
		ck_assert_msg(frac >= 0.9 && frac <= 1.1,
			      "ppm %u: %llu of 1M chosen", ppms[i],
			      (unsigned long long)n);
	}
	/* the brief's example: 5% gives 4.5%-5.5% */
	{
		struct gpuq_fault f = { 50000, 0 };
		uint64_t n = 0;

		for (uint64_t id = 0; id < 1000000; id++)
			n += gpuq_fault_chosen(&f, id) != 0;
		ck_assert_uint_ge(n, 45000);
		ck_assert_uint_le(n, 55000);
	}
}
END_TEST

START_TEST(test_fault_deterministic)
{
	struct gpuq_fault f = { 50000, 2 }, g = { 50000, 0 };
	struct gpuq_fault none = { 0, 0 }, all = { 1000000, 0 };
	struct gpuq_fault half = { 500000, 1 };
	uint64_t chosen = 0, big = 0;

	for (uint64_t id = 0; id < 100000; id++) {
		int c = gpuq_fault_chosen(&f, id);

		/* same answer every time, whatever fail_attempts says */
		ck_assert_int_eq(gpuq_fault_chosen(&f, id), c);
		ck_assert_int_eq(gpuq_fault_chosen(&g, id), c);
		chosen += c != 0;
		/* a message chosen at a lower rate is chosen at a higher one */
		if (c)
			ck_assert(gpuq_fault_chosen(&half, id));
		ck_assert(!gpuq_fault_chosen(&none, id));
		ck_assert(gpuq_fault_chosen(&all, id));
		/* and for ids nowhere near 0 */
		ck_assert(!gpuq_fault_chosen(&none, ~id));
		ck_assert(gpuq_fault_chosen(&all, ~id));
		big += gpuq_fault_chosen(&f, id << 40) != 0;
	}
	ck_assert_uint_gt(chosen, 0);
	ck_assert_uint_gt(big, 3000);
	ck_assert_uint_lt(big, 7000);
	/* pinned: the hash is splitmix64's finaliser of id ^ "fault", so a
	 * test anywhere can list the doomed ids */
	ck_assert_uint_eq(gpuq_fault_mix(0), 0);
	ck_assert_uint_eq(gpuq_fault_mix(0x9e3779b97f4a7c15ull),
			  0xe220a8397b1dcdafull);
	for (uint64_t id = 0; id < 1000; id++)
		ck_assert_int_eq(gpuq_fault_chosen(&f, id) != 0,
				 gpuq_fault_mix(id ^ 0x6661756c74ull) %
						 1000000u <
					 50000u);
	/* none and all at the edges */
	ck_assert(!gpuq_fault_chosen(&none, 0));
	ck_assert(!gpuq_fault_chosen(&none, UINT64_MAX));
	ck_assert(gpuq_fault_chosen(&all, 0));
	ck_assert(gpuq_fault_chosen(&all, UINT64_MAX));
}
END_TEST

/* The first id >= from that f chooses (or does not). */
static uint64_t find_id(const struct gpuq_fault *f, uint64_t from, int chosen)
{
	for (uint64_t id = from; id < from + 10000000; id++)
		if ((gpuq_fault_chosen(f, id) != 0) == chosen)
			return id;
	ck_abort_msg("no id found");
	return 0;
}

START_TEST(test_fault_fails)
{
	struct gpuq_fault two = { 50000, 2 }, every = { 50000, 0 };
	struct gpuq_fault one = { 50000, 1 };
	uint64_t bad = find_id(&two, 0, 1), good = find_id(&two, 0, 0);

	/* fail_attempts = 2: attempts 1 and 2 fail, 3 on pass */
	ck_assert(gpuq_fault_fails(&two, bad, 1));
	ck_assert(gpuq_fault_fails(&two, bad, 2));
	ck_assert(!gpuq_fault_fails(&two, bad, 3));
	ck_assert(!gpuq_fault_fails(&two, bad, 4));
	ck_assert(!gpuq_fault_fails(&two, bad, 100));
	ck_assert(!gpuq_fault_fails(&one, bad, 2));
	ck_assert(gpuq_fault_fails(&one, bad, 1));
	/* fail_attempts = 0: every attempt fails */
	for (uint32_t a = 1; a <= 1000; a++)
		ck_assert(gpuq_fault_fails(&every, bad, a));
	ck_assert(gpuq_fault_fails(&every, bad, UINT32_MAX));
	/* a message not chosen never fails */
	for (uint32_t a = 1; a <= 10; a++) {
		ck_assert(!gpuq_fault_fails(&two, good, a));
		ck_assert(!gpuq_fault_fails(&every, good, a));
	}
	/* ppm 0 turns injection off whatever fail_attempts is */
	{
		struct gpuq_fault off = { 0, 0 };

		for (uint64_t id = 0; id < 1000; id++)
			ck_assert(!gpuq_fault_fails(&off, id, 1));
	}
}
END_TEST

/* gpuq_handle() on payload data with the given fault settings. */
struct handled {
	int rc;
	uint32_t attempts, len, last_attempt;
	uint8_t out[64];
};

static struct handled handle(uint32_t handler, const void *data, uint32_t len,
			     uint64_t id, const struct gpuq_fault *f,
			     uint32_t max_attempts)
{
	struct handled h;
	struct gpuq_hmsg m = { .data = data, .len = len, .attempt = 0,
			       .id = id, .key = 7 };
	struct gpuq_hres r;

	memset(&h, 0, sizeof(h));
	memset(h.out, 0xa5, sizeof(h.out));
	r.data = h.out;
	r.cap = sizeof(h.out);
	r.len = 0xdeadu;
	h.attempts = 0xdeadu;
	h.rc = gpuq_handle(handler, &m, &r, f, max_attempts, &h.attempts);
	h.len = r.len;
	h.last_attempt = m.attempt;
	/* the message itself is not changed, only its attempt number */
	ck_assert_ptr_eq(m.data, data);
	ck_assert_uint_eq(m.len, len);
	ck_assert_uint_eq(m.id, id);
	ck_assert_uint_eq(m.key, 7);
	return h;
}

START_TEST(test_handle)
{
	static const char msg[] = "123456789";
	struct gpuq_fault off = { 0, 0 };
	struct gpuq_fault two = { 50000, 2 }, every = { 50000, 0 };
	uint64_t bad = find_id(&two, 1000, 1), good = find_id(&two, 1000, 0);
	struct handled h;

	/* a clean message: one attempt, the checksum */
	h = handle(GPUQ_H_CHECKSUM, msg, 9, good, &two, 3);
	ck_assert_int_eq(h.rc, 0);
	ck_assert_uint_eq(h.attempts, 1);
	ck_assert_uint_eq(h.last_attempt, 1);
	ck_assert_uint_eq(h.len, 4);
	ck_assert_uint_eq(le32(h.out), 0xE3069283u);
	ck_assert_uint_eq(h.out[4], 0xa5);
	h = handle(GPUQ_H_CHECKSUM, msg, 9, bad, &off, 3);
	ck_assert_int_eq(h.rc, 0);
	ck_assert_uint_eq(h.attempts, 1);
	ck_assert_uint_eq(le32(h.out), 0xE3069283u);

	/* chosen, fails twice: the third attempt succeeds */
	h = handle(GPUQ_H_CHECKSUM, msg, 9, bad, &two, 3);
	ck_assert_int_eq(h.rc, 0);
	ck_assert_uint_eq(h.attempts, 3);
	ck_assert_uint_eq(h.last_attempt, 3);
	ck_assert_uint_eq(h.len, 4);
	ck_assert_uint_eq(le32(h.out), 0xE3069283u);
	/* ... but with only 2 attempts allowed it ends injected */
	h = handle(GPUQ_H_CHECKSUM, msg, 9, bad, &two, 2);
	ck_assert_int_eq(h.rc, GPUQ_HANDLER_INJECTED);
	ck_assert_uint_eq(h.attempts, 2);
	ck_assert_uint_eq(h.len, 0);

	/* chosen, fails every attempt */
	h = handle(GPUQ_H_CHECKSUM, msg, 9, bad, &every, 3);
	ck_assert_int_eq(h.rc, GPUQ_HANDLER_INJECTED);
	ck_assert_uint_eq(h.attempts, 3);
	ck_assert_uint_eq(h.last_attempt, 3);
	ck_assert_uint_eq(h.len, 0);
	ck_assert_uint_eq(h.out[0], 0xa5);
	h = handle(GPUQ_H_CHECKSUM, msg, 9, bad, &every, 1);
	ck_assert_int_eq(h.rc, GPUQ_HANDLER_INJECTED);
	ck_assert_uint_eq(h.attempts, 1);

	/* the echo handler through the same path */
	h = handle(GPUQ_H_ECHO, msg, 9, bad, &two, 3);
	ck_assert_int_eq(h.rc, 0);
	ck_assert_uint_eq(h.attempts, 3);
	ck_assert_uint_eq(h.len, 9);
	ck_assert_mem_eq(h.out, msg, 9);
}
END_TEST

/* A handler's own failure is retried too, and its code is returned. */
START_TEST(test_handle_bad_vector)
{
	static const float x[4] = { 1, 2, 3, 4 };
	struct gpuq_fault off = { 0, 0 };
	struct handled h;

	for (uint32_t max = 1; max <= 5; max++) {
		h = handle(GPUQ_H_VECTOR, x, 7, 42, &off, max);
		ck_assert_int_ne(h.rc, 0);
		ck_assert_int_ne(h.rc, GPUQ_HANDLER_INJECTED);
		ck_assert_uint_eq(h.attempts, max);
		ck_assert_uint_eq(h.last_attempt, max);
		ck_assert_uint_eq(h.len, 0);
		ck_assert_uint_eq(h.out[0], 0xa5);
	}
	/* the same vector with a good length passes first time */
	h = handle(GPUQ_H_VECTOR, x, 16, 42, &off, 3);
	ck_assert_int_eq(h.rc, 0);
	ck_assert_uint_eq(h.attempts, 1);
	ck_assert_uint_eq(h.len, 16);
	/* an unknown handler fails every attempt */
	h = handle(0, x, 16, 42, &off, 3);
	ck_assert_int_ne(h.rc, 0);
	ck_assert_uint_eq(h.attempts, 3);
}
END_TEST

Suite *suite_handlers(void)
{
	Suite *s = suite_create("handlers");
	TCase *tc = tcase_create("checksum");
	TCase *te = tcase_create("echo");
	TCase *tv = tcase_create("vector");
	TCase *tt = tcase_create("table");
	TCase *tf = tcase_create("faults");
	TCase *all[] = { tc, te, tv, tt, tf };

	/* Loops of up to millions of hashes and CRCs: limits well past
	 * check's default of 4 s, which a make distcheck beside a CUDA build
	 * on a 2-core machine once reached (test_fault_deterministic, 1 s
	 * unloaded). */
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		tcase_set_timeout(all[i], 60);

	tcase_add_test(tc, test_crc_vectors);
	tcase_add_test(tc, test_crc_reference_paths);
	tcase_add_test(tc, test_crc_result_le);
	tcase_add_test(tc, test_crc_random);
	tcase_add_test(tc, test_crc_small_cap);
	suite_add_tcase(s, tc);

	tcase_add_test(te, test_echo);
	suite_add_tcase(s, te);

	tcase_add_test(tv, test_vector_known);
	tcase_add_test(tv, test_vector_random);
	tcase_add_test(tv, test_vector_bad);
	suite_add_tcase(s, tv);

	tcase_add_test(tt, test_unknown_id);
	tcase_add_test(tt, test_dispatch_matches);
	tcase_add_test(tt, test_lookup);
	tcase_add_test(tt, test_all);
	tcase_add_test(tt, test_keysum_unit);
	tcase_add_test(tt, test_kv_unit);
	tcase_add_test(tt, test_once_live);
	suite_add_tcase(s, tt);

	tcase_add_test(tf, test_fault_rate);
	tcase_add_test(tf, test_fault_deterministic);
	tcase_add_test(tf, test_fault_fails);
	tcase_add_test(tf, test_handle);
	tcase_add_test(tf, test_handle_bad_vector);
	suite_add_tcase(s, tf);
	return s;
}

GPUQ_CHECK_MAIN(suite_handlers)
