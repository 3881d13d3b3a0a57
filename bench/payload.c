/*
 * payload.c - the messages every system sends, the checks of what comes
 * back, and the built-in handlers run outside the broker for baselines.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"
#include "bench/reference.h"
#include "broker/handlers.h"
#include "libclient/gpuq.h"

uint32_t payload_handler_id(const char *name)
{
	if (!strcmp(name, "echo"))
		return GPUQ_H_ECHO;
	if (!strcmp(name, "checksum"))
		return GPUQ_H_CHECKSUM;
	if (!strcmp(name, "vector"))
		return GPUQ_H_VECTOR;
	/* A handler module's queue: driven like any other, but what it
	 * computes is unknown here, so no --verify and no baselines. */
	if (!strncmp(name, "module:", 7))
		return GPUQ_H_USER;
	return 0;
}

uint32_t payload_result_bytes(uint32_t handler, uint32_t size)
{
	switch (handler) {
	case GPUQ_H_ECHO:
		return size;
	case GPUQ_H_CHECKSUM:
		return 4;
	default:
		return sizeof(struct gpuq_vector_result);
	}
}

int payload_init(struct payload *p, uint32_t handler, uint32_t size, int idx)
{
	p->handler = handler;
	p->size = size;
	p->idx = idx;
	p->scratch = aligned_alloc(16, (size + 15) & ~15u);
	return p->scratch ? 0 : -ENOMEM;
}

void payload_free(struct payload *p)
{
	free(p->scratch);
	p->scratch = NULL;
}

/*
 * Cheap to make, so the producer's own work stays small next to the
 * system's: one byte value per message for echo and checksum (the whole
 * payload is still written, as a real producer would), small floats for
 * vector so that its sums are exact and never overflow.
 */
size_t payload_fill(void *ctx, uint64_t seq, void *buf, size_t cap)
{
	const struct payload *p = ctx;
	size_t n = p->size < cap ? p->size : cap;
	if (p->handler != GPUQ_H_VECTOR) {
		memset(buf, (int)((seq * 31u + (uint64_t)p->idx * 131u) & 0xff), n);
		return n;
	}
	for (size_t i = 0; i + 4 <= n; i += 4) {
		float f = (float)(int)((seq + i / 4 + (uint64_t)p->idx) & 255) - 128.0f;
		memcpy((uint8_t *)buf + i, &f, 4);
	}
	return n;
}

int payload_check(void *ctx, uint64_t seq, int status, const void *res,
		  size_t len)
{
	struct payload *p = ctx;
	size_t n = payload_fill(p, seq, p->scratch, p->size);
	float got[4];
	/* A handler failure is counted as failed by the loop; whether one
	 * was expected is the report's business (fault injection). */
	if (status)
		return 1;
	switch (p->handler) {
	case GPUQ_H_ECHO:
		return len == n && !memcmp(res, p->scratch, n);
	case GPUQ_H_CHECKSUM:
		return ref_crc_result_ok(p->scratch, n, 0, res, len);
	case GPUQ_H_VECTOR:
		if (len != sizeof(got) || n < 4)
			return 0;
		memcpy(got, res, sizeof(got));
		return ref_vector_ok((const float *)p->scratch, n / 4, got);
	default: /* a module's handler: nothing to check it against */
		return 0;
	}
	return 0;
}

int payload_handle(uint32_t handler, const void *data, uint32_t len,
		   uint64_t id, void *res, uint32_t cap, uint32_t *res_len)
{
	struct gpuq_hmsg m = { .data = data, .len = len, .id = id };
	struct gpuq_hres r = { .data = res, .cap = cap };
	int rc = gpuq_handler_run(handler, &m, &r);
	*res_len = rc ? 0 : r.len;
	return rc ? GPUQ_EHANDLER : 0;
}
