/* check_proto.c - control messages (ipc/proto.h): encode/decode round trips
 * for every type, every way a message can be garbled, send/receive with fd
 * passing over a SOCK_SEQPACKET pair, and a small randomised decode run. */
#include "config.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "ipc/proto.h"
#include "libclient/gpuq.h"
#include "tests/runner.h"

Suite *suite_proto(void);

#define HDR ((uint32_t)sizeof(struct proto_hdr))
#define QSTAT ((uint32_t)sizeof(struct proto_qstat))
#define STOK ((uint32_t)sizeof(struct proto_status_ok))

/* Message buffers: 8-byte aligned as the decoder wants, with room to spare
 * for over-long messages. */
struct mbuf {
	_Alignas(8) uint8_t b[PROTO_MAX_MSG * 2];
};

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

static void put_hdr(uint8_t *buf, uint32_t magic, uint16_t version,
		    uint16_t type, uint32_t body_len, uint32_t seq)
{
	struct proto_hdr h = { magic, version, type, body_len, seq };
	memcpy(buf, &h, sizeof(h));
}

static struct proto_hdr get_hdr(const uint8_t *buf)
{
	struct proto_hdr h;
	memcpy(&h, buf, sizeof(h));
	return h;
}

/* Decode a copy of buf[0..n) held in exactly n heap bytes, so a read past
 * the end is caught under ASan. */
static int decode_exact(const void *buf, size_t n, struct proto_msg *m)
{
	void *p = malloc(n ? n : 1);
	int rc;

	ck_assert_ptr_nonnull(p);
	if (n)
		memcpy(p, buf, n);
	rc = proto_decode(p, n, m);
	free(p);
	return rc;
}

/* Encode, decode, and check every header field and the body bytes. */
static void round_trip(uint16_t type, uint32_t seq, const void *body,
		       uint32_t len)
{
	struct mbuf mb;
	struct proto_msg m;
	int n;

	memset(&mb, 0xcc, sizeof(mb));
	n = proto_encode(mb.b, sizeof(mb.b), type, seq, body, len);
	ck_assert_int_eq(n, (int)(HDR + len));
	ck_assert_uint_eq(mb.b[n], 0xcc);
	memset(&m, 0, sizeof(m));
	ck_assert_int_eq(proto_decode(mb.b, (size_t)n, &m), 0);
	ck_assert_uint_eq(m.hdr.magic, PROTO_MAGIC);
	ck_assert_uint_eq(m.hdr.version, PROTO_VERSION);
	ck_assert_uint_eq(m.hdr.type, type);
	ck_assert_uint_eq(m.hdr.body_len, len);
	ck_assert_uint_eq(m.hdr.seq, seq);
	ck_assert_ptr_eq(m.body, mb.b + HDR);
	if (len)
		ck_assert_mem_eq(m.body, body, len);
	/* the wire header is the one documented */
	ck_assert_uint_eq(get_hdr(mb.b).magic, PROTO_MAGIC);
	ck_assert_uint_eq(get_hdr(mb.b).type, type);
}

static void fill_qstat(struct proto_qstat *q, uint32_t i)
{
	memset(q, 0, sizeof(*q));
	snprintf(q->name, sizeof(q->name), "queue-%u", i);
	snprintf(q->handler, sizeof(q->handler), "%s",
		 i % 2 ? "checksum" : "vector");
	q->capacity = 1024u << (i % 4);
	q->slot_bytes = 512 + i;
	q->result_bytes = 4;
	q->backend = IPC_BACKEND_CPU;
	q->clients = i;
	q->state = 1;
	q->enqueued = 1000000007ull * i;
	q->completed = 999ull * i;
	q->dead_lettered = i;
	q->reclaimed = 2ull * i;
	q->full_events = 3ull * i;
	q->depth = 4ull * i;
}

/* A STATUS_OK body of nq entries in heap memory; *len gets its size. */
static struct proto_status_ok *make_status(uint32_t nq, uint32_t *len)
{
	struct proto_status_ok *st;

	*len = STOK + nq * QSTAT;
	st = calloc(1, *len);
	ck_assert_ptr_nonnull(st);
	st->broker_pid = 4242;
	st->nqueues = nq;
	st->epoch = 0x1122334455667788ull;
	st->uptime_ns = 123456789;
	for (uint32_t i = 0; i < nq; i++)
		fill_qstat(&st->q[i], i);
	return st;
}

/* ---- round trips ---- */

START_TEST(test_rt_empty_bodies)
{
	round_trip(PROTO_HELLO, 1, NULL, 0);
	round_trip(PROTO_STATUS, 2, NULL, 0);
	round_trip(PROTO_SHUTDOWN, 0xffffffffu, NULL, 0);
}
END_TEST

START_TEST(test_rt_hello_ok)
{
	struct proto_hello_ok h = { 31337, IPC_LAYOUT_VERSION,
				    0xfeedfacecafebeefull };

	round_trip(PROTO_HELLO_OK, 7, &h, sizeof(h));
}
END_TEST

START_TEST(test_rt_open)
{
	struct proto_open o;

	memset(&o, 0, sizeof(o));
	strcpy(o.name, "jobs");
	round_trip(PROTO_OPEN, 3, &o, sizeof(o));
	/* the longest name: 63 characters and the NUL */
	memset(o.name, 'q', sizeof(o.name) - 1);
	o.name[sizeof(o.name) - 1] = '\0';
	round_trip(PROTO_OPEN, 4, &o, sizeof(o));
	/* bytes after the NUL are the sender's business */
	memset(o.name, 0x7f, sizeof(o.name));
	o.name[0] = '\0';
	round_trip(PROTO_OPEN, 5, &o, sizeof(o));
}
END_TEST

START_TEST(test_rt_open_ok)
{
	struct proto_open_ok o;

	memset(&o, 0, sizeof(o));
	o.client = 17;
	o.backend = IPC_BACKEND_CUDA;
	o.map_bytes = 1ull << 33;
	o.has_cuda_ipc = 1;
	for (uint32_t i = 0; i < sizeof(o.cuda_ipc); i++)
		o.cuda_ipc[i] = (uint8_t)(i * 37 + 1);
	round_trip(PROTO_OPEN_OK, 9, &o, sizeof(o));
}
END_TEST

START_TEST(test_rt_close)
{
	struct proto_close c;

	memset(&c, 0, sizeof(c));
	c.client = 5;
	strcpy(c.name, "q1");
	round_trip(PROTO_CLOSE, 11, &c, sizeof(c));
}
END_TEST

START_TEST(test_rt_error)
{
	struct proto_error e;

	memset(&e, 0, sizeof(e));
	e.code = GPUQ_ENOQUEUE;
	snprintf(e.text, sizeof(e.text), "%s", gpuq_strerror(GPUQ_ENOQUEUE));
	round_trip(PROTO_ERROR, 12, &e, sizeof(e));
	memset(e.text, 'x', sizeof(e.text) - 1);
	e.text[sizeof(e.text) - 1] = '\0';
	round_trip(PROTO_ERROR, 13, &e, sizeof(e));
}
END_TEST

START_TEST(test_rt_status_ok_0_1)
{
	uint32_t len;
	struct proto_status_ok *st = make_status(0, &len);

	ck_assert_uint_eq(len, STOK);
	round_trip(PROTO_STATUS_OK, 20, st, len);
	free(st);
	st = make_status(1, &len);
	round_trip(PROTO_STATUS_OK, 21, st, len);
	free(st);
	st = make_status(3, &len);
	round_trip(PROTO_STATUS_OK, 22, st, len);
	free(st);
}
END_TEST

/* The broker's STATUS reply may list PROTO_MAX_QUEUES queues, so such a
 * message must fit in PROTO_MAX_MSG and survive a round trip. */
START_TEST(test_rt_status_ok_max)
{
	uint32_t len = STOK + PROTO_MAX_QUEUES * QSTAT;
	struct proto_status_ok *st;

	ck_assert_msg(HDR + len <= PROTO_MAX_MSG,
		      "STATUS_OK with PROTO_MAX_QUEUES (%u) entries is %u"
		      " bytes, more than PROTO_MAX_MSG (%u)",
		      PROTO_MAX_QUEUES, HDR + len, PROTO_MAX_MSG);
	st = make_status(PROTO_MAX_QUEUES, &len);
	round_trip(PROTO_STATUS_OK, 23, st, len);
	free(st);
}
END_TEST

/* The largest STATUS_OK that does fit in PROTO_MAX_MSG round-trips. */
START_TEST(test_rt_status_ok_largest_fitting)
{
	uint32_t nq = (PROTO_MAX_MSG - HDR - STOK) / QSTAT, len;
	struct proto_status_ok *st;

	if (nq > PROTO_MAX_QUEUES)
		nq = PROTO_MAX_QUEUES;
	st = make_status(nq, &len);
	round_trip(PROTO_STATUS_OK, 24, st, len);
	free(st);
}
END_TEST

/* ---- garbled input ---- */

/* A valid OPEN message in buf; returns its length. */
static size_t valid_open(uint8_t *buf, size_t cap)
{
	struct proto_open o;
	int n;

	memset(&o, 0, sizeof(o));
	strcpy(o.name, "jobs");
	n = proto_encode(buf, cap, PROTO_OPEN, 77, &o, sizeof(o));
	ck_assert_int_eq(n, (int)(HDR + sizeof(o)));
	return (size_t)n;
}

START_TEST(test_short_header)
{
	struct mbuf mb;
	struct proto_msg m;
	size_t n = valid_open(mb.b, sizeof(mb.b));

	ck_assert_int_eq(proto_decode(mb.b, n, &m), 0);
	for (size_t k = 0; k < HDR; k++)
		ck_assert_int_eq(decode_exact(mb.b, k, &m), GPUQ_EPROTO);
	/* a lone header of a type with an empty body is fine */
	ck_assert_int_eq(proto_encode(mb.b, sizeof(mb.b), PROTO_HELLO, 1, NULL,
				      0), (int)HDR);
	ck_assert_int_eq(decode_exact(mb.b, HDR, &m), 0);
	ck_assert_int_eq(decode_exact(mb.b, HDR - 1, &m), GPUQ_EPROTO);
}
END_TEST

START_TEST(test_bad_magic)
{
	struct mbuf mb;
	struct proto_msg m;
	size_t n = valid_open(mb.b, sizeof(mb.b));
	struct proto_hdr h = get_hdr(mb.b);

	put_hdr(mb.b, PROTO_MAGIC ^ 0x100, h.version, h.type, h.body_len,
		h.seq);
	ck_assert_int_eq(decode_exact(mb.b, n, &m), GPUQ_EPROTO);
	put_hdr(mb.b, 0, h.version, h.type, h.body_len, h.seq);
	ck_assert_int_eq(decode_exact(mb.b, n, &m), GPUQ_EPROTO);
	/* byte-swapped magic (other endianness) */
	put_hdr(mb.b, __builtin_bswap32(PROTO_MAGIC), h.version, h.type,
		h.body_len, h.seq);
	ck_assert_int_eq(decode_exact(mb.b, n, &m), GPUQ_EPROTO);
	/* bad magic and bad version: not our protocol at all */
	put_hdr(mb.b, 0x12345678, 7, h.type, h.body_len, h.seq);
	ck_assert_int_eq(decode_exact(mb.b, n, &m), GPUQ_EPROTO);
}
END_TEST

START_TEST(test_other_version)
{
	static const uint16_t versions[] = { 0, PROTO_VERSION + 1, 0xffff };
	struct mbuf mb;
	struct proto_msg m;
	size_t n = valid_open(mb.b, sizeof(mb.b));
	struct proto_hdr h = get_hdr(mb.b);

	for (size_t i = 0; i < sizeof(versions) / sizeof(versions[0]); i++) {
		put_hdr(mb.b, PROTO_MAGIC, versions[i], h.type, h.body_len,
			h.seq);
		ck_assert_int_eq(decode_exact(mb.b, n, &m), GPUQ_EVERSION);
	}
	/* even with an empty body and a type it does not know */
	put_hdr(mb.b, PROTO_MAGIC, PROTO_VERSION + 1, 200, 0, 1);
	ck_assert_int_eq(decode_exact(mb.b, HDR, &m), GPUQ_EVERSION);
}
END_TEST

START_TEST(test_bad_type)
{
	static const uint16_t types[] = { 0, PROTO_TYPE_MAX, PROTO_TYPE_MAX + 1,
					  0x8000, 0xffff };
	struct mbuf mb;
	struct proto_msg m;

	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		put_hdr(mb.b, PROTO_MAGIC, PROTO_VERSION, types[i], 0, 1);
		ck_assert_msg(decode_exact(mb.b, HDR, &m) == GPUQ_EPROTO,
			      "type %u accepted", types[i]);
		/* proto_encode does not check types; decode of a body-ful
		 * unknown type fails too */
		put_hdr(mb.b, PROTO_MAGIC, PROTO_VERSION, types[i], 64, 1);
		memset(mb.b + HDR, 0, 64);
		ck_assert_int_eq(decode_exact(mb.b, HDR + 64, &m), GPUQ_EPROTO);
	}
}
END_TEST

START_TEST(test_body_len_mismatch)
{
	struct mbuf mb;
	struct proto_msg m;
	size_t n = valid_open(mb.b, sizeof(mb.b));
	struct proto_hdr h = get_hdr(mb.b);

	/* header says more / fewer bytes than arrived */
	put_hdr(mb.b, PROTO_MAGIC, PROTO_VERSION, h.type, h.body_len + 1, 1);
	ck_assert_int_eq(decode_exact(mb.b, n, &m), GPUQ_EPROTO);
	put_hdr(mb.b, PROTO_MAGIC, PROTO_VERSION, h.type, h.body_len - 1, 1);
	ck_assert_int_eq(decode_exact(mb.b, n, &m), GPUQ_EPROTO);
	put_hdr(mb.b, PROTO_MAGIC, PROTO_VERSION, h.type, 0xffffffffu, 1);
	ck_assert_int_eq(decode_exact(mb.b, n, &m), GPUQ_EPROTO);
	put_hdr(mb.b, PROTO_MAGIC, PROTO_VERSION, h.type, 0, 1);
	ck_assert_int_eq(decode_exact(mb.b, n, &m), GPUQ_EPROTO);
	/* one trailing byte more than the header says */
	put_hdr(mb.b, PROTO_MAGIC, PROTO_VERSION, h.type, h.body_len, 1);
	mb.b[n] = 0;
	ck_assert_int_eq(decode_exact(mb.b, n + 1, &m), GPUQ_EPROTO);
	/* and an empty-bodied type with a trailing byte */
	put_hdr(mb.b, PROTO_MAGIC, PROTO_VERSION, PROTO_HELLO, 0, 1);
	ck_assert_int_eq(decode_exact(mb.b, HDR + 1, &m), GPUQ_EPROTO);
}
END_TEST

/* Header and byte count agree, but the body size is wrong for the type. */
START_TEST(test_wrong_body_size)
{
	static const struct {
		uint16_t type;
		uint32_t len;
	} cases[] = {
		{ PROTO_HELLO, 4 },
		{ PROTO_STATUS, 8 },
		{ PROTO_SHUTDOWN, 1 },
		{ PROTO_HELLO_OK, sizeof(struct proto_hello_ok) - 8 },
		{ PROTO_HELLO_OK, sizeof(struct proto_hello_ok) + 8 },
		{ PROTO_HELLO_OK, 0 },
		{ PROTO_OPEN, sizeof(struct proto_open) - 1 },
		{ PROTO_OPEN, sizeof(struct proto_open) + 1 },
		{ PROTO_OPEN, 0 },
		{ PROTO_OPEN_OK, sizeof(struct proto_open_ok) - 8 },
		{ PROTO_OPEN_OK, sizeof(struct proto_open_ok) + 8 },
		{ PROTO_CLOSE, sizeof(struct proto_close) - 8 },
		{ PROTO_CLOSE, sizeof(struct proto_close) + 8 },
		{ PROTO_ERROR, sizeof(struct proto_error) - 1 },
		{ PROTO_ERROR, sizeof(struct proto_error) + 1 },
		{ PROTO_STATUS_OK, 0 },
		{ PROTO_STATUS_OK, STOK - 8 },
	};
	struct mbuf mb;
	struct proto_msg m;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint8_t body[512];
		int n;

		memset(body, 0, sizeof(body));
		ck_assert_uint_le(cases[i].len, sizeof(body));
		n = proto_encode(mb.b, sizeof(mb.b), cases[i].type, 1, body,
				 cases[i].len);
		ck_assert_int_eq(n, (int)(HDR + cases[i].len));
		ck_assert_msg(decode_exact(mb.b, (size_t)n, &m) == GPUQ_EPROTO,
			      "type %u with %u body bytes accepted",
			      cases[i].type, cases[i].len);
	}
}
END_TEST

START_TEST(test_unterminated_strings)
{
	struct mbuf mb;
	struct proto_msg m;
	struct proto_open o;
	struct proto_close c;
	struct proto_error e;
	int n;

	memset(o.name, 'a', sizeof(o.name));
	n = proto_encode(mb.b, sizeof(mb.b), PROTO_OPEN, 1, &o, sizeof(o));
	ck_assert_int_eq(decode_exact(mb.b, (size_t)n, &m), GPUQ_EPROTO);
	o.name[sizeof(o.name) - 1] = '\0';
	n = proto_encode(mb.b, sizeof(mb.b), PROTO_OPEN, 1, &o, sizeof(o));
	ck_assert_int_eq(decode_exact(mb.b, (size_t)n, &m), 0);

	memset(&c, 0, sizeof(c));
	memset(c.name, 'b', sizeof(c.name));
	n = proto_encode(mb.b, sizeof(mb.b), PROTO_CLOSE, 1, &c, sizeof(c));
	ck_assert_int_eq(decode_exact(mb.b, (size_t)n, &m), GPUQ_EPROTO);

	memset(&e, 0, sizeof(e));
	memset(e.text, 'c', sizeof(e.text));
	n = proto_encode(mb.b, sizeof(mb.b), PROTO_ERROR, 1, &e, sizeof(e));
	ck_assert_int_eq(decode_exact(mb.b, (size_t)n, &m), GPUQ_EPROTO);
}
END_TEST

START_TEST(test_status_ok_bad)
{
	struct mbuf mb;
	struct proto_msg m;
	uint32_t len;
	struct proto_status_ok *st = make_status(2, &len);
	int n;

	/* nqueues beyond the limit (length for 2) */
	st->nqueues = PROTO_MAX_QUEUES + 1;
	n = proto_encode(mb.b, sizeof(mb.b), PROTO_STATUS_OK, 1, st, len);
	ck_assert_int_eq(decode_exact(mb.b, (size_t)n, &m), GPUQ_EPROTO);
	st->nqueues = 0xffffffffu;
	n = proto_encode(mb.b, sizeof(mb.b), PROTO_STATUS_OK, 1, st, len);
	ck_assert_int_eq(decode_exact(mb.b, (size_t)n, &m), GPUQ_EPROTO);
	/* nqueues 3 and 1 with the length of 2 */
	st->nqueues = 3;
	n = proto_encode(mb.b, sizeof(mb.b), PROTO_STATUS_OK, 1, st, len);
	ck_assert_int_eq(decode_exact(mb.b, (size_t)n, &m), GPUQ_EPROTO);
	st->nqueues = 1;
	n = proto_encode(mb.b, sizeof(mb.b), PROTO_STATUS_OK, 1, st, len);
	ck_assert_int_eq(decode_exact(mb.b, (size_t)n, &m), GPUQ_EPROTO);
	/* a partial entry */
	st->nqueues = 2;
	n = proto_encode(mb.b, sizeof(mb.b), PROTO_STATUS_OK, 1, st, len - 8);
	ck_assert_int_eq(decode_exact(mb.b, (size_t)n, &m), GPUQ_EPROTO);
	/* consistent again: accepted */
	n = proto_encode(mb.b, sizeof(mb.b), PROTO_STATUS_OK, 1, st, len);
	ck_assert_int_eq(decode_exact(mb.b, (size_t)n, &m), 0);
	/* an entry's name or handler without its NUL */
	memset(st->q[1].name, 'n', sizeof(st->q[1].name));
	n = proto_encode(mb.b, sizeof(mb.b), PROTO_STATUS_OK, 1, st, len);
	ck_assert_int_eq(decode_exact(mb.b, (size_t)n, &m), GPUQ_EPROTO);
	fill_qstat(&st->q[1], 1);
	memset(st->q[0].handler, 'h', sizeof(st->q[0].handler));
	n = proto_encode(mb.b, sizeof(mb.b), PROTO_STATUS_OK, 1, st, len);
	ck_assert_int_eq(decode_exact(mb.b, (size_t)n, &m), GPUQ_EPROTO);
	free(st);
}
END_TEST

START_TEST(test_too_long)
{
	struct mbuf mb;
	struct proto_msg m;
	uint32_t body = PROTO_MAX_MSG + 1 - HDR;

	/* a STATUS_OK-typed message one byte over the limit, header
	 * consistent with the byte count */
	memset(mb.b, 0, sizeof(mb.b));
	put_hdr(mb.b, PROTO_MAGIC, PROTO_VERSION, PROTO_STATUS_OK, body, 1);
	ck_assert_int_eq(decode_exact(mb.b, HDR + body, &m), GPUQ_EPROTO);
	put_hdr(mb.b, PROTO_MAGIC, PROTO_VERSION, PROTO_STATUS_OK,
		(uint32_t)sizeof(mb.b) - HDR, 1);
	ck_assert_int_eq(proto_decode(mb.b, sizeof(mb.b), &m), GPUQ_EPROTO);

	/* a STATUS_OK well formed in every other way (consistent nqueues,
	 * terminated strings) but longer than PROTO_MAX_MSG */
	{
		uint32_t nq = (PROTO_MAX_MSG - HDR - STOK) / QSTAT + 1, len;
		struct proto_status_ok *st = make_status(nq, &len);

		ck_assert_uint_gt(HDR + len, PROTO_MAX_MSG);
		ck_assert_uint_le(HDR + len, sizeof(mb.b));
		put_hdr(mb.b, PROTO_MAGIC, PROTO_VERSION, PROTO_STATUS_OK, len,
			1);
		memcpy(mb.b + HDR, st, len);
		free(st);
		ck_assert_int_eq(decode_exact(mb.b, HDR + len, &m),
				 GPUQ_EPROTO);
	}
}
END_TEST

START_TEST(test_null_buffer)
{
	struct proto_msg m;

	ck_assert_int_eq(proto_decode(NULL, 0, &m), GPUQ_EPROTO);
	ck_assert_int_eq(proto_decode(NULL, HDR, &m), GPUQ_EPROTO);
	ck_assert_int_eq(proto_decode(NULL, HDR + sizeof(struct proto_open),
				      &m), GPUQ_EPROTO);
}
END_TEST

START_TEST(test_every_truncation)
{
	struct mbuf mb;
	struct proto_msg m;
	size_t n = valid_open(mb.b, sizeof(mb.b));

	ck_assert_int_eq(decode_exact(mb.b, n, &m), 0);
	for (size_t k = 0; k < n; k++)
		ck_assert_msg(decode_exact(mb.b, k, &m) == GPUQ_EPROTO,
			      "OPEN cut to %zu of %zu bytes accepted", k, n);
	/* and one byte too many */
	mb.b[n] = 0;
	ck_assert_int_eq(decode_exact(mb.b, n + 1, &m), GPUQ_EPROTO);
}
END_TEST

START_TEST(test_encode_too_small)
{
	static struct mbuf big;
	struct mbuf mb;
	struct proto_open o;
	size_t total = HDR + sizeof(o);

	memset(&o, 0, sizeof(o));
	strcpy(o.name, "x");
	memset(mb.b, 0xcc, sizeof(mb.b));
	ck_assert_int_eq(proto_encode(mb.b, total - 1, PROTO_OPEN, 1, &o,
				      sizeof(o)), -EMSGSIZE);
	/* nothing written past what it was given */
	for (size_t i = total - 1; i < sizeof(mb.b); i++)
		ck_assert_uint_eq(mb.b[i], 0xcc);
	ck_assert_int_eq(proto_encode(mb.b, 0, PROTO_OPEN, 1, &o, sizeof(o)),
			 -EMSGSIZE);
	ck_assert_int_eq(proto_encode(mb.b, HDR - 1, PROTO_HELLO, 1, NULL, 0),
			 -EMSGSIZE);
	ck_assert_int_eq(proto_encode(mb.b, HDR, PROTO_HELLO, 1, NULL, 0),
			 (int)HDR);
	ck_assert_int_eq(proto_encode(mb.b, total, PROTO_OPEN, 1, &o,
				      sizeof(o)), (int)total);
	/* a body that would make the message longer than PROTO_MAX_MSG,
	 * even with room in the buffer */
	ck_assert_int_eq(proto_encode(mb.b, sizeof(mb.b), PROTO_STATUS_OK, 1,
				      big.b, PROTO_MAX_MSG - HDR + 1),
			 -EMSGSIZE);
}
END_TEST

/* ---- socket I/O ---- */

static void seqpacket_pair(int sv[2])
{
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0,
				    sv), 0);
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	ck_assert_ptr_nonnull(d);
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

START_TEST(test_send_recv_bytes)
{
	struct mbuf out, in;
	struct proto_msg m;
	uint32_t len;
	struct proto_status_ok *st = make_status(3, &len);
	int sv[2], n, fd = 12345;

	seqpacket_pair(sv);
	n = proto_encode(out.b, sizeof(out.b), PROTO_STATUS_OK, 99, st, len);
	ck_assert_int_gt(n, 0);
	ck_assert_int_eq(proto_send(sv[0], out.b, (size_t)n, -1), 0);
	memset(&in, 0, sizeof(in));
	ck_assert_int_eq(proto_recv(sv[1], in.b, PROTO_MAX_MSG, &fd), n);
	ck_assert_int_eq(fd, -1);
	ck_assert_mem_eq(in.b, out.b, (size_t)n);
	ck_assert_int_eq(proto_decode(in.b, (size_t)n, &m), 0);
	ck_assert_uint_eq(m.hdr.seq, 99);
	ck_assert_mem_eq(m.body, st, len);

	/* message boundaries are kept: two sends, two receives */
	n = proto_encode(out.b, sizeof(out.b), PROTO_HELLO, 1, NULL, 0);
	ck_assert_int_eq(proto_send(sv[1], out.b, (size_t)n, -1), 0);
	ck_assert_int_eq(proto_send(sv[1], out.b, (size_t)n, -1), 0);
	ck_assert_int_eq(proto_recv(sv[0], in.b, PROTO_MAX_MSG, &fd), n);
	ck_assert_int_eq(proto_recv(sv[0], in.b, PROTO_MAX_MSG, &fd), n);
	ck_assert_int_eq(fd, -1);
	free(st);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

START_TEST(test_pass_pipe_fd)
{
	struct mbuf out, in;
	struct proto_open_ok ok;
	int sv[2], p[2], n, fd = -7;
	char got[8];

	seqpacket_pair(sv);
	ck_assert_int_eq(pipe(p), 0);
	memset(&ok, 0, sizeof(ok));
	ok.client = 3;
	ok.map_bytes = 65536;
	n = proto_encode(out.b, sizeof(out.b), PROTO_OPEN_OK, 5, &ok,
			 sizeof(ok));
	ck_assert_int_eq(proto_send(sv[0], out.b, (size_t)n, p[1]), 0);
	/* the passed copy becomes the only write end */
	close(p[1]);
	ck_assert_int_eq(proto_recv(sv[1], in.b, PROTO_MAX_MSG, &fd), n);
	ck_assert_mem_eq(in.b, out.b, (size_t)n);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "ping", 4), 4);
	ck_assert_int_eq(read(p[0], got, sizeof(got)), 4);
	ck_assert_mem_eq(got, "ping", 4);
	close(fd);
	/* closing the received fd closed the last write end */
	ck_assert_int_eq(read(p[0], got, sizeof(got)), 0);
	close(p[0]);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

START_TEST(test_pass_memfd)
{
	struct mbuf out, in;
	int sv[2], mfd, n, fd = -7;
	char got[16];

	seqpacket_pair(sv);
	mfd = memfd_create("check_proto", MFD_CLOEXEC);
	ck_assert_int_ge(mfd, 0);
	ck_assert_int_eq(pwrite(mfd, "shared ring", 11, 0), 11);
	n = proto_encode(out.b, sizeof(out.b), PROTO_HELLO, 1, NULL, 0);
	ck_assert_int_eq(proto_send(sv[0], out.b, (size_t)n, mfd), 0);
	ck_assert_int_eq(proto_recv(sv[1], in.b, PROTO_MAX_MSG, &fd), n);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_ne(fd, mfd);
	memset(got, 0, sizeof(got));
	ck_assert_int_eq(pread(fd, got, 11, 0), 11);
	ck_assert_str_eq(got, "shared ring");
	ck_assert_int_eq(pwrite(fd, "back", 4, 20), 4);
	ck_assert_int_eq(pread(mfd, got, 4, 20), 4);
	ck_assert_mem_eq(got, "back", 4);
	close(fd);
	close(mfd);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

START_TEST(test_recv_too_big)
{
	struct mbuf out, in;
	struct proto_open o;
	int sv[2], p[2], n, fd = 12345, before;

	seqpacket_pair(sv);
	memset(&o, 0, sizeof(o));
	strcpy(o.name, "big");
	n = proto_encode(out.b, sizeof(out.b), PROTO_OPEN, 1, &o, sizeof(o));
	ck_assert_int_eq(proto_send(sv[0], out.b, (size_t)n, -1), 0);
	ck_assert_int_eq(proto_recv(sv[1], in.b, (size_t)n - 1, &fd),
			 GPUQ_EPROTO);
	ck_assert_int_eq(fd, -1);

	/* the same with an fd attached: rejected, and the fd not leaked */
	ck_assert_int_eq(pipe(p), 0);
	ck_assert_int_eq(proto_send(sv[0], out.b, (size_t)n, p[1]), 0);
	before = count_fds();
	fd = 12345;
	ck_assert_int_eq(proto_recv(sv[1], in.b, 16, &fd), GPUQ_EPROTO);
	ck_assert_int_eq(fd, -1);
	ck_assert_int_eq(count_fds(), before);

	/* the next message is unaffected */
	ck_assert_int_eq(proto_send(sv[0], out.b, (size_t)n, -1), 0);
	ck_assert_int_eq(proto_recv(sv[1], in.b, PROTO_MAX_MSG, &fd), n);
	ck_assert_mem_eq(in.b, out.b, (size_t)n);
	close(p[0]);
	close(p[1]);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

START_TEST(test_peer_closed)
{
	struct mbuf mb;
	int sv[2], fd = 12345, n;

	seqpacket_pair(sv);
	close(sv[0]);
	ck_assert_int_eq(proto_recv(sv[1], mb.b, PROTO_MAX_MSG, &fd), 0);
	ck_assert_int_eq(fd, -1);
	/* sending to a closed peer fails with an errno, no SIGPIPE */
	n = proto_encode(mb.b, sizeof(mb.b), PROTO_HELLO, 1, NULL, 0);
	ck_assert_int_lt(proto_send(sv[1], mb.b, (size_t)n, -1), 0);
	close(sv[1]);
}
END_TEST

START_TEST(test_recv_nonblocking_empty)
{
	struct mbuf mb;
	int sv[2], fd = 12345;

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK,
				    0, sv), 0);
	ck_assert_int_eq(proto_recv(sv[1], mb.b, PROTO_MAX_MSG, &fd), -EAGAIN);
	ck_assert_int_eq(fd, -1);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

START_TEST(test_msghdr_fd)
{
	union {
		char b[CMSG_SPACE(sizeof(int))];
		struct cmsghdr a;
	} cm;
	struct msghdr mh;
	struct iovec iov;
	struct cmsghdr *c;
	char data[8] = "abcdefg";
	int fd;

	proto_msghdr_fd(&mh, &iov, cm.b, sizeof(cm.b), data, 7, -1);
	ck_assert_ptr_eq(mh.msg_iov, &iov);
	ck_assert_uint_eq(mh.msg_iovlen, 1);
	ck_assert_ptr_eq(iov.iov_base, data);
	ck_assert_uint_eq(iov.iov_len, 7);
	ck_assert_uint_eq(mh.msg_controllen, 0);

	proto_msghdr_fd(&mh, &iov, cm.b, sizeof(cm.b), data, 7, 42);
	ck_assert_uint_eq(mh.msg_controllen, CMSG_SPACE(sizeof(int)));
	c = CMSG_FIRSTHDR(&mh);
	ck_assert_ptr_nonnull(c);
	ck_assert_int_eq(c->cmsg_level, SOL_SOCKET);
	ck_assert_int_eq(c->cmsg_type, SCM_RIGHTS);
	ck_assert_uint_eq(c->cmsg_len, CMSG_LEN(sizeof(int)));
	memcpy(&fd, CMSG_DATA(c), sizeof(fd));
	ck_assert_int_eq(fd, 42);
}
END_TEST

/* ---- randomised ---- */

#define FUZZ_CASES 10000

/* One candidate message in buf; returns its length.  A mix of pure noise,
 * valid messages with a few bytes changed, and cut or extended ones. */
static size_t fuzz_case(uint8_t *buf, size_t cap)
{
	uint64_t mode = rnd() % 4;
	uint16_t type = (uint16_t)(1 + rnd() % (PROTO_TYPE_MAX - 1));
	uint8_t body[PROTO_MAX_MSG];
	uint32_t len = 0;
	size_t n;
	int rc;

	if (mode == 0) {
		n = rnd() % 600;
		for (size_t i = 0; i < n; i++)
			buf[i] = (uint8_t)rnd();
		return n;
	}
	memset(body, 0, sizeof(body));
	switch (type) {
	case PROTO_HELLO_OK: len = sizeof(struct proto_hello_ok); break;
	case PROTO_OPEN: len = sizeof(struct proto_open); break;
	case PROTO_OPEN_OK: len = sizeof(struct proto_open_ok); break;
	case PROTO_CLOSE: len = sizeof(struct proto_close); break;
	case PROTO_ERROR: len = sizeof(struct proto_error); break;
	case PROTO_STATUS_OK: {
		struct proto_status_ok *st = (struct proto_status_ok *)body;
		uint32_t nq = (uint32_t)(rnd() % 4);
		len = STOK + nq * QSTAT;
		st->nqueues = nq;
		for (uint32_t i = 0; i < nq; i++)
			fill_qstat(&st->q[i], (uint32_t)rnd());
		break;
	}
	default: len = 0;
	}
	/* random body bytes, but mostly keep strings terminated */
	for (uint32_t i = 0; i < len; i++)
		if (type != PROTO_STATUS_OK && rnd() % 4)
			body[i] = (uint8_t)rnd();
	if (type == PROTO_OPEN || type == PROTO_CLOSE || type == PROTO_ERROR)
		body[len - 1 - rnd() % 8] = 0;
	rc = proto_encode(buf, cap, type, (uint32_t)rnd(), body, len);
	ck_assert_int_gt(rc, 0);
	n = (size_t)rc;
	if (mode == 2) {
		for (uint64_t k = rnd() % 4; k > 0; k--)
			buf[rnd() % n] = (uint8_t)rnd();
	} else if (mode == 3) {
		if (rnd() % 2)
			n = rnd() % (n + 1);
		else
			for (uint64_t k = 1 + rnd() % 8; k > 0 && n < cap; k--)
				buf[n++] = (uint8_t)rnd();
	}
	return n;
}

START_TEST(test_fuzz_decode)
{
	struct mbuf mb, re;
	unsigned accepted = 0, rejected = 0;

	rng_state = 0x243f6a8885a308d3ull;
	for (int i = 0; i < FUZZ_CASES; i++) {
		struct proto_msg m;
		size_t n = fuzz_case(mb.b, PROTO_MAX_MSG);
		uint8_t *p = malloc(n ? n : 1);
		int rc, e;

		ck_assert_ptr_nonnull(p);
		memcpy(p, mb.b, n);
		/* malloc memory is 16-byte aligned, as the decoder wants */
		rc = proto_decode(p, n, &m);
		if (rc) {
			ck_assert_msg(rc == GPUQ_EPROTO || rc == GPUQ_EVERSION,
				      "case %d: unexpected code %d", i, rc);
			rejected++;
			free(p);
			continue;
		}
		accepted++;
		ck_assert_ptr_eq(m.body, p + HDR);
		ck_assert_uint_eq(m.hdr.body_len + HDR, n);
		e = proto_encode(re.b, sizeof(re.b), m.hdr.type, m.hdr.seq,
				 m.body, m.hdr.body_len);
		ck_assert_int_eq(e, (int)n);
		ck_assert_msg(!memcmp(re.b, p, n),
			      "case %d: re-encoding differs", i);
		free(p);
	}
	/* both outcomes were exercised */
	ck_assert_uint_gt(accepted, FUZZ_CASES / 10);
	ck_assert_uint_gt(rejected, FUZZ_CASES / 10);
}
END_TEST

Suite *suite_proto(void)
{
	Suite *s = suite_create("proto");
	TCase *tr = tcase_create("round_trip");
	TCase *tg = tcase_create("garbled");
	TCase *ts = tcase_create("socket");
	TCase *tf = tcase_create("fuzz");

	tcase_add_test(tr, test_rt_empty_bodies);
	tcase_add_test(tr, test_rt_hello_ok);
	tcase_add_test(tr, test_rt_open);
	tcase_add_test(tr, test_rt_open_ok);
	tcase_add_test(tr, test_rt_close);
	tcase_add_test(tr, test_rt_error);
	tcase_add_test(tr, test_rt_status_ok_0_1);
	tcase_add_test(tr, test_rt_status_ok_max);
	tcase_add_test(tr, test_rt_status_ok_largest_fitting);
	suite_add_tcase(s, tr);

	tcase_add_test(tg, test_short_header);
	tcase_add_test(tg, test_bad_magic);
	tcase_add_test(tg, test_other_version);
	tcase_add_test(tg, test_bad_type);
	tcase_add_test(tg, test_body_len_mismatch);
	tcase_add_test(tg, test_wrong_body_size);
	tcase_add_test(tg, test_unterminated_strings);
	tcase_add_test(tg, test_status_ok_bad);
	tcase_add_test(tg, test_too_long);
	tcase_add_test(tg, test_null_buffer);
	tcase_add_test(tg, test_every_truncation);
	tcase_add_test(tg, test_encode_too_small);
	suite_add_tcase(s, tg);

	tcase_add_test(ts, test_send_recv_bytes);
	tcase_add_test(ts, test_pass_pipe_fd);
	tcase_add_test(ts, test_pass_memfd);
	tcase_add_test(ts, test_recv_too_big);
	tcase_add_test(ts, test_peer_closed);
	tcase_add_test(ts, test_recv_nonblocking_empty);
	tcase_add_test(ts, test_msghdr_fd);
	suite_add_tcase(s, ts);

	tcase_set_timeout(tf, 60);
	tcase_add_test(tf, test_fuzz_decode);
	suite_add_tcase(s, tf);
	return s;
}

GPUQ_CHECK_MAIN(suite_proto)
