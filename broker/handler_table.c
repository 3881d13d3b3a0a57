/* handler_table.c - names and result sizes of the built-in handlers. */
#include "config.h"

#include <string.h>

#include "broker/handler_table.h"
#include "broker/handlers.h"

static uint32_t echo_bytes(uint32_t slot) { return slot; }
static uint32_t crc_bytes(uint32_t slot) { (void)slot; return 4; }
static uint32_t vec_bytes(uint32_t slot)
{
	(void)slot;
	return sizeof(struct gpuq_vector_result);
}

static uint32_t keysum_bytes(uint32_t slot)
{
	(void)slot;
	return sizeof(struct gpuq_keysum_result);
}

/* Replies to gets carry values: room for four times the request. */
static uint32_t kv_bytes(uint32_t slot) { return 4 * slot; }

static const struct handler_info table[] = {
	{ "echo", GPUQ_H_ECHO, echo_bytes, "result = payload" },
	{ "checksum", GPUQ_H_CHECKSUM, crc_bytes,
	  "result = CRC32C of payload (4 bytes LE)" },
	{ "vector", GPUQ_H_VECTOR, vec_bytes,
	  "payload float32[]; result = sum, L2 norm, min, max (4 x float32)" },
	{ "keysum", GPUQ_H_KEYSUM, keysum_bytes,
	  "payload uint64 key + float32[]; per-key running count and sum in "
	  "the queue's table; result = count (uint64), sum (double)" },
	{ "kv", GPUQ_H_KV, kv_bytes,
	  "payload a batch of get/put/delete on the queue's table "
	  "(ipc/kvwire.h; gpuq_kv_* in the client); result = one status "
	  "(and value) per operation" },
	{ NULL, 0, NULL, NULL },
};

const struct handler_info *handler_lookup(const char *name)
{
	for (const struct handler_info *h = table; h->name; h++)
		if (!strcmp(h->name, name))
			return h;
	return NULL;
}

const struct handler_info *handler_all(void) { return table; }
