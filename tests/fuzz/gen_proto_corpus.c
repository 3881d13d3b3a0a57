/*
 * gen_proto_corpus.c - writes tests/fuzz/corpus/proto: one valid message
 * of every type (through proto_encode, each checked with proto_decode) and
 * some one-check-away-from-valid ones.  Not part of the build: run it by
 * hand when the wire format in ipc/proto.h changes, and commit the output
 * (tests/fuzz/README.md has the command).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ipc/proto.h"
#include "libclient/gpuq.h"

static const char *dir;
static _Alignas(8) unsigned char buf[PROTO_MAX_MSG];

static void put(const char *name, size_t n)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	if (!f || fwrite(buf, 1, n, f) != n || fclose(f)) {
		perror(path);
		exit(1);
	}
}

static size_t enc(uint16_t type, uint32_t seq, const void *body,
		  uint32_t len)
{
	int n = proto_encode(buf, sizeof(buf), type, seq, body, len);

	if (n < 0) {
		fprintf(stderr, "type %u: %u bytes do not fit\n", type, len);
		exit(1);
	}
	return (size_t)n;
}

/* A valid message: it must decode. */
static void valid(const char *name, uint16_t type, uint32_t seq,
		  const void *body, uint32_t len)
{
	struct proto_msg m;
	size_t n = enc(type, seq, body, len);

	if (proto_decode(buf, n, &m)) {
		fprintf(stderr, "%s: does not decode\n", name);
		exit(1);
	}
	put(name, n);
}

/* An invalid one: it must not. */
static void invalid(const char *name, size_t n)
{
	struct proto_msg m;

	if (!proto_decode(buf, n, &m)) {
		fprintf(stderr, "%s: decodes\n", name);
		exit(1);
	}
	put(name, n);
}

static struct proto_status_ok *status(uint32_t nq, uint32_t *len)
{
	static const char *const handlers[] = { "echo", "checksum", "vector" };
	struct proto_status_ok *st;

	*len = (uint32_t)(sizeof(*st) + nq * sizeof(st->q[0]));
	st = calloc(1, *len);
	if (!st)
		exit(1);
	st->broker_pid = 4242;
	st->nqueues = nq;
	st->epoch = 0x1122334455667788ull;
	st->uptime_ns = 123456789;
	for (uint32_t i = 0; i < nq; i++) {
		struct proto_qstat *q = &st->q[i];

		snprintf(q->name, sizeof(q->name), "queue-%u", i);
		snprintf(q->handler, sizeof(q->handler), "%s", handlers[i % 3]);
		q->capacity = 1024u << (i % 4);
		q->slot_bytes = 256 + i;
		q->result_bytes = 4;
		q->backend = IPC_BACKEND_CPU;
		q->clients = i;
		q->state = 1;
		q->enqueued = 1000ull * i;
		q->completed = 999ull * i;
		q->depth = i;
	}
	return st;
}

#ifdef PROTO_DLQ_MAX_ITEMS
static void dlq(void)
{
	static _Alignas(8) unsigned char body[PROTO_MAX_MSG];
	struct proto_dlq_ok *ok = (struct proto_dlq_ok *)body;
	struct proto_dlq_req r;
	uint32_t len;

	memset(&r, 0, sizeof(r));
	strcpy(r.name, "jobs");
	r.op = 1; /* list */
	r.count = 20;
	valid("dlq_list", PROTO_DLQ, 30, &r, sizeof(r));
	r.op = 2; /* show */
	r.worker = 1;
	r.pos = 7;
	valid("dlq_show", PROTO_DLQ, 31, &r, sizeof(r));
	r.op = 3; /* replay */
	r.count = UINT64_MAX;
	valid("dlq_replay", PROTO_DLQ, 32, &r, sizeof(r));
	memset(r.name, 'd', sizeof(r.name));
	invalid("dlq_unterminated", enc(PROTO_DLQ, 33, &r, sizeof(r)));

	/* replay/purge reply: no items */
	memset(body, 0, sizeof(body));
	ok->total = 5;
	ok->done = 3;
	valid("dlq_ok_done", PROTO_DLQ_OK, 32, ok, sizeof(*ok));
	/* list reply: three items */
	ok->nitems = 3;
	for (uint32_t i = 0; i < ok->nitems; i++) {
		ok->items[i].worker = i;
		ok->items[i].pos = 100 + i;
		ok->items[i].id = 1000 + i;
		ok->items[i].key = 77;
		ok->items[i].status = -5; /* the handler's -EIO */
		ok->items[i].attempts = 3;
		ok->items[i].len = 64;
		ok->items[i].pid = 999;
	}
	len = (uint32_t)(sizeof(*ok) + ok->nitems * sizeof(ok->items[0]));
	valid("dlq_ok_list", PROTO_DLQ_OK, 30, ok, len);
	/* show reply: one item and its payload */
	ok->nitems = 1;
	ok->data_len = 64;
	len = (uint32_t)(sizeof(*ok) + sizeof(ok->items[0]));
	for (uint32_t i = 0; i < ok->data_len; i++)
		body[len + i] = (unsigned char)(i * 7);
	valid("dlq_ok_show", PROTO_DLQ_OK, 31, ok, len + ok->data_len);
	/* data with more than one item */
	ok->nitems = 2;
	len = (uint32_t)(sizeof(*ok) + 2 * sizeof(ok->items[0]));
	invalid("dlq_ok_data_and_items",
		enc(PROTO_DLQ_OK, 31, ok, len + ok->data_len));
}
#endif

int main(int argc, char **argv)
{
	struct proto_hello_ok ho = { 31337, IPC_LAYOUT_VERSION,
				     0xfeedfacecafebeefull };
	struct proto_open o;
	struct proto_open_ok ok;
	struct proto_close c;
	struct proto_error e;
	struct proto_status_ok *st;
	uint32_t len;
	size_t n;

	if (argc != 2) {
		fprintf(stderr, "usage: %s DIR\n", argv[0]);
		return 2;
	}
	dir = argv[1];

	valid("hello", PROTO_HELLO, 1, NULL, 0);
	valid("status", PROTO_STATUS, 2, NULL, 0);
	valid("shutdown", PROTO_SHUTDOWN, 3, NULL, 0);
	valid("hello_ok", PROTO_HELLO_OK, 1, &ho, sizeof(ho));
	memset(&o, 0, sizeof(o));
	strcpy(o.name, "jobs");
	valid("open", PROTO_OPEN, 4, &o, sizeof(o));
	memset(o.name, 'q', sizeof(o.name) - 1);
	o.name[sizeof(o.name) - 1] = '\0';
	valid("open_longest_name", PROTO_OPEN, 5, &o, sizeof(o));
	memset(&ok, 0, sizeof(ok));
	ok.client = 17;
	ok.backend = IPC_BACKEND_CPU;
	ok.map_bytes = 1u << 20;
	valid("open_ok_cpu", PROTO_OPEN_OK, 4, &ok, sizeof(ok));
	ok.backend = IPC_BACKEND_CUDA;
	ok.has_cuda_ipc = 1;
	for (unsigned int i = 0; i < sizeof(ok.cuda_ipc); i++)
		ok.cuda_ipc[i] = (unsigned char)(i * 37 + 1);
	valid("open_ok_cuda", PROTO_OPEN_OK, 6, &ok, sizeof(ok));
	memset(&c, 0, sizeof(c));
	c.client = 5;
	strcpy(c.name, "jobs");
	valid("close", PROTO_CLOSE, 7, &c, sizeof(c));
	memset(&e, 0, sizeof(e));
	e.code = GPUQ_ENOQUEUE;
	snprintf(e.text, sizeof(e.text), "%s", gpuq_strerror(e.code));
	valid("error", PROTO_ERROR, 4, &e, sizeof(e));
	st = status(0, &len);
	valid("status_ok_0", PROTO_STATUS_OK, 2, st, len);
	free(st);
	st = status(1, &len);
	valid("status_ok_1", PROTO_STATUS_OK, 2, st, len);
	free(st);
	st = status(3, &len);
	valid("status_ok_3", PROTO_STATUS_OK, 2, st, len);
	free(st);
	st = status(PROTO_MAX_QUEUES, &len);
	valid("status_ok_max", PROTO_STATUS_OK, 2, st, len);
	free(st);

	/* Each one check away from valid. */
	memset(&o, 0, sizeof(o));
	strcpy(o.name, "jobs");
	n = enc(PROTO_OPEN, 8, &o, sizeof(o));
	buf[0] ^= 1;
	invalid("bad_magic", n);
	n = enc(PROTO_OPEN, 8, &o, sizeof(o));
	buf[4] = (uint8_t)(PROTO_VERSION + 1); /* version is the u16 at offset 4 */
	invalid("bad_version", n);
	n = enc(PROTO_OPEN, 8, &o, sizeof(o));
	invalid("open_truncated", n - 1);
	memset(o.name, 'x', sizeof(o.name));
	invalid("open_unterminated", enc(PROTO_OPEN, 8, &o, sizeof(o)));
	invalid("bad_type", enc(PROTO_TYPE_MAX, 8, NULL, 0));
	st = status(2, &len);
	st->nqueues = 3;
	invalid("status_ok_bad_count", enc(PROTO_STATUS_OK, 9, st, len));
	free(st);
	st = status(1, &len);
	memset(st->q[0].handler, 'h', sizeof(st->q[0].handler));
	invalid("status_ok_unterminated", enc(PROTO_STATUS_OK, 9, st, len));
	free(st);
#ifdef PROTO_DLQ_MAX_ITEMS
	dlq();
#endif
	return 0;
}
