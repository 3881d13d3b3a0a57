/*
 * kvwire.h - the key-value request and reply carried in messages to a
 * queue whose handler is `kv` (docs/protocol.md §13).  libgpuqclient
 * writes requests and reads replies (gpuq_kv_*); the kv handler, on either
 * backend, reads requests and writes replies.  Little-endian, packed, read
 * and written with memcpy (no alignment is assumed).
 *
 * Request:  u8 version (2), u8 0, u16 nops, then nops ops:
 *           u8 op, u8 klen, u16 vlen, key[klen], value[vlen if PUT]
 *           (GET: vlen is the most value bytes wanted back; DEL: 0),
 *           then u16 off[nops], the offset of each op from the request's
 *           start.  The ops are contiguous: off[0] is 4, each op ends
 *           where the next begins, and the last where off[] begins.
 * Reply:    u16 nops, u16 0, then per op, in request order, a fixed-size
 *           record of gpuq_kvw_res_bytes(op, vlen) bytes:
 *           i32 status (0 or a GPUQ_E* code), u16 len (the value's full
 *           length, GET only), u16 n (value bytes returned: min(len, the
 *           request's vlen)), then, for a GET, vlen bytes: value[n] and
 *           zeros.
 * So a consumer can answer a message's operations in parallel (the CUDA
 * backend does, a lane of a warp per operation): off[] finds op i
 * without walking the ops before it, and every reply record's place
 * follows from the request alone.  Version 1 had neither: no offsets,
 * and replies packed tightly, each one's place depending on the answers
 * before it.
 */
#ifndef GPUQ_IPC_KVWIRE_H
#define GPUQ_IPC_KVWIRE_H

#include <stdint.h>
#include <string.h>

#include "ipc/hd.h"

#define GPUQ_KVW_VERSION 2
#define GPUQ_KVW_HDR 4     /* request and reply headers */
#define GPUQ_KVW_OP_HDR 4  /* op, klen, vlen */
#define GPUQ_KVW_RES_HDR 8 /* status, len, n */
#define GPUQ_KVW_VALUE_MAX 65535

enum gpuq_kvw_op { GPUQ_KVW_GET = 1, GPUQ_KVW_PUT = 2, GPUQ_KVW_DEL = 3 };

struct gpuq_kvw_op_hdr {
	uint8_t op, klen;
	uint16_t vlen;
};

struct gpuq_kvw_res_hdr {
	int32_t status;
	uint16_t len, n;
};

/* Request bytes of one op. */
GPUQ_HD uint32_t gpuq_kvw_op_bytes(uint32_t op, uint32_t klen, uint32_t vlen)
{
	return GPUQ_KVW_OP_HDR + klen + (op == GPUQ_KVW_PUT ? vlen : 0);
}

/* Reply bytes of one op: its fixed-size reply record. */
GPUQ_HD uint32_t gpuq_kvw_res_bytes(uint32_t op, uint32_t vlen)
{
	return GPUQ_KVW_RES_HDR + (op == GPUQ_KVW_GET ? vlen : 0);
}

/* Where off[i] is kept in a request of len bytes with nops ops (the
 * caller has checked that len >= GPUQ_KVW_HDR + 2 * nops). */
GPUQ_HD uint32_t gpuq_kvw_off_at(uint32_t len, uint32_t nops, uint32_t i)
{
	return len - 2 * (nops - i);
}

/* off[i] of a request. */
GPUQ_HD uint32_t gpuq_kvw_off(const uint8_t *p, uint32_t len, uint32_t nops,
			      uint32_t i)
{
	uint16_t v;
	memcpy(&v, p + gpuq_kvw_off_at(len, nops, i), 2);
	return v;
}

#endif
