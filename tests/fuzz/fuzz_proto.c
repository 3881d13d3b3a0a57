/*
 * fuzz_proto.c - libFuzzer target for the control-message decoder
 * (ipc/proto.c: proto_decode).  Built and run by tests/fuzz/run-fuzz.sh.
 *
 * Beyond "no crash, no leak, no UB" it checks three properties:
 *   - an accepted message re-encodes (proto_encode) to the same bytes;
 *   - dropping the last byte of an accepted message gets it refused;
 *   - every string an accepted body carries (names, handler, error text)
 *     ends inside its field, and every counted part (STATUS_OK queues,
 *     DLQ_OK items and payload) lies inside the message, so a reader that
 *     trusts the decoder stays in bounds.
 * A broken property calls abort(), which libFuzzer reports as a crash.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ipc/proto.h"
#include "libclient/gpuq.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Where touched bytes go, so the reads are not optimised away. */
volatile size_t fuzz_proto_sink;

static void fail(const char *what)
{
	fprintf(stderr, "fuzz_proto: %s\n", what);
	abort();
}

/* The length of a string in a field of cap bytes: the decoder promised a
 * NUL inside.  memchr(), not strlen(): the compiler may assume strlen() of
 * a char[cap] member is below cap and drop the check. */
static size_t field_len(const char *s, size_t cap)
{
	const char *nul = memchr(s, '\0', cap);

	if (!nul)
		fail("accepted string runs past its field");
	return (size_t)(nul - s);
}

/* Walk the body of an accepted message as a reader would. */
static size_t touch_body(const struct proto_msg *m)
{
	size_t sum = 0;

	switch (m->hdr.type) {
	case PROTO_OPEN:
		sum += field_len(((const struct proto_open *)m->body)->name,
				 IPC_NAME_MAX);
		break;
	case PROTO_CLOSE:
		sum += field_len(((const struct proto_close *)m->body)->name,
				 IPC_NAME_MAX);
		break;
	case PROTO_ERROR: {
		const struct proto_error *e = m->body;

		sum += field_len(e->text, sizeof(e->text));
		/* A client prints the code it got: any int must be safe. */
		sum += strlen(gpuq_strerror(e->code));
		sum += strlen(gpuq_err_name(e->code));
		break;
	}
	case PROTO_STATUS_OK: {
		const struct proto_status_ok *st = m->body;

		if (st->nqueues > PROTO_MAX_QUEUES ||
		    m->hdr.body_len != sizeof(*st) +
					       st->nqueues * sizeof(st->q[0]))
			fail("STATUS_OK accepted with a bad queue count");
		for (uint32_t i = 0; i < st->nqueues; i++) {
			const struct proto_qstat *q = &st->q[i];

			sum += field_len(q->name, IPC_NAME_MAX);
			sum += field_len(q->handler, IPC_HANDLER_MAX);
			sum += q->capacity + q->depth + q->enqueued;
		}
		break;
	}
#ifdef PROTO_DLQ_MAX_ITEMS
	case PROTO_DLQ:
		sum += field_len(((const struct proto_dlq_req *)m->body)->name,
				 IPC_NAME_MAX);
		break;
	case PROTO_DLQ_OK: {
		const struct proto_dlq_ok *d = m->body;
		const uint8_t *data;

		if (d->nitems > PROTO_DLQ_MAX_ITEMS ||
		    d->data_len > PROTO_DLQ_MAX_DATA ||
		    (d->data_len && d->nitems != 1) ||
		    m->hdr.body_len != sizeof(*d) +
					       d->nitems * sizeof(d->items[0]) +
					       d->data_len)
			fail("DLQ_OK accepted with bad counts");
		for (uint32_t i = 0; i < d->nitems; i++)
			sum += d->items[i].id + d->items[i].len;
		/* The payload follows the items, as gpuqctl reads it. */
		data = (const uint8_t *)&d->items[d->nitems];
		for (uint32_t i = 0; i < d->data_len; i++)
			sum += data[i];
		break;
	}
#endif
	default:
		break;
	}
	return sum;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* Bodies are read in place and need 8-byte alignment: libFuzzer's
	 * buffer is a heap block of exactly size bytes, so it is aligned and
	 * a read past its end is caught. */
	static _Alignas(8) uint8_t out[PROTO_MAX_MSG];
	struct proto_msg m;
	int rc, n;

	memset(&m, 0, sizeof(m));
	rc = proto_decode(data, size, &m);
	/* The documented error codes, and their texts, are all a caller
	 * can get. */
	if (rc != 0 && rc != GPUQ_EPROTO && rc != GPUQ_EVERSION)
		fail("undocumented error code");
	fuzz_proto_sink = strlen(gpuq_strerror(rc)) + strlen(gpuq_err_name(rc));
	if (rc)
		return 0;

	if (m.body != data + sizeof(struct proto_hdr) ||
	    m.hdr.body_len != size - sizeof(struct proto_hdr) ||
	    m.hdr.type == 0 || m.hdr.type >= PROTO_TYPE_MAX)
		fail("accepted message has an inconsistent header");
	fuzz_proto_sink += touch_body(&m);

	n = proto_encode(out, sizeof(out), m.hdr.type, m.hdr.seq, m.body,
			 m.hdr.body_len);
	if (n < 0 || (size_t)n != size || memcmp(out, data, size) != 0)
		fail("re-encoding an accepted message changed it");

	/* One byte short is never a whole message. */
	if (proto_decode(data, size - 1, &m) == 0)
		fail("truncated message accepted");
	return 0;
}
