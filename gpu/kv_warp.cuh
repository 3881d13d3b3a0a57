// kv_warp.cuh - the kv handler (broker/handlers.h) run by a whole warp on
// the CUDA backend: a message's operations are answered a lane each, up to
// 32 at a time, through the same per-op code as the CPU backend
// (gpuq_kv_op).
//
// Why: one thread answering a message's 100-odd operations one after
// another spends each on a chain of dependent VRAM round trips (hash,
// lock, window scan, seqlock check), and on an H200 that made the KV API
// slower on the GPU than on host threads.  Lanes of a warp are independent
// threads to the table, whose operations are linearizable whoever runs
// them; what a message adds is order: two operations on one key must take
// effect in request order.  The request's offset table finds each lane's
// op without a walk over the ops before it (a walk was a chain of
// dependent loads as long as the message).  So a round of 32 runs in parallel only when
// no two of its operations share a key with a write among them; otherwise
// its lanes take turns.  The reply records have fixed places
// (ipc/kvwire.h), so no lane waits for another's answer to know where to
// write its own.
#ifndef GPUQ_GPU_KV_WARP_CUH
#define GPUQ_GPU_KV_WARP_CUH

#include <stdint.h>

#include "broker/handlers.h"

namespace gpuq_dev {

constexpr unsigned FULL_WARP = 0xffffffffu;

// Pull a payload's cache lines into L1, a line per lane, all at once, so
// that the reads of the offset table and op headers below find them there.
__device__ inline void kv_prefetch(const uint8_t *p, uint32_t len,
				   uint32_t lane)
{
	for (uint32_t o = lane * 128; o < len; o += 32 * 128)
		asm volatile("prefetch.L1 [%0];" ::"l"(p + o));
}

// Sum of v over the warp's lanes, and (*before) over the lanes below this
// one.
__device__ inline uint32_t warp_scan(uint32_t v, uint32_t lane,
				     uint32_t *before)
{
	uint32_t x = v;
	for (uint32_t d = 1; d < 32; d *= 2) {
		uint32_t y = __shfl_up_sync(FULL_WARP, x, d);
		if (lane >= d)
			x += y;
	}
	*before = x - v;
	return __shfl_sync(FULL_WARP, x, 31);
}

// gpuq_kv_request_ok by a warp, 32 ops at a time, a lane each.
__device__ inline bool kv_warp_ok(const uint8_t *p, uint32_t len,
				  uint32_t cap, uint32_t nops, uint32_t lane)
{
	uint32_t need = GPUQ_KVW_HDR, before;
	for (uint32_t base = 0; base < nops; base += 32) {
		uint32_t i = base + lane, rb = 0;
		bool ok = i >= nops || gpuq_kv_op_ok(p, len, nops, i, &rb);
		if (!__all_sync(FULL_WARP, ok))
			return false;
		need += warp_scan(rb, lane, &before);
		if (need > cap)
			return false;
	}
	return true;
}

// Would running the active lanes' operations at once reorder two
// operations on one key?  Keys are compared by hash: a hash shared by two
// keys only costs a round its parallelism.
__device__ inline bool kv_clash(bool active, uint64_t h, bool write)
{
	unsigned act = __ballot_sync(FULL_WARP, active);
	unsigned writers = __ballot_sync(FULL_WARP, active && write);
	unsigned same = __match_any_sync(FULL_WARP, h) & act;
	return __any_sync(FULL_WARP,
			  active && __popc(same) > 1 && (same & writers));
}

// gpuq_handler_kv by all 32 lanes of a warp, which pass the same
// arguments and get the same result: 0 with *out_len reply bytes, or 1
// for a malformed request (nothing run).  Rounds of 32 ops go in request
// order; within a round, lanes run their ops at once unless two share a
// key, and then one after another.
__device__ inline int kv_warp(const struct gpuq_kvt *t, const uint8_t *p,
			      uint32_t len, uint8_t *out, uint32_t cap,
			      uint32_t *out_len)
{
	const uint32_t lane = threadIdx.x % 32;
	uint32_t rat = GPUQ_KVW_HDR;
	uint16_t nops;
	kv_prefetch(p, len, lane);
	if (!t->slots || !gpuq_kv_header_ok(p, len, cap, &nops) ||
	    !kv_warp_ok(p, len, cap, nops, lane))
		return 1;
	if (lane == 0)
		gpuq_kv_reply_hdr(p, out);
	for (uint32_t base = 0; base < nops; base += 32) {
		uint32_t i = base + lane, off = 0, rb = 0, before;
		struct gpuq_kvw_op_hdr o = { 0, 0, 0 };
		bool active = i < nops;
		uint64_t h = 0;
		if (active) {
			off = gpuq_kvw_off(p, len, nops, i);
			memcpy(&o, p + off, sizeof(o));
			rb = gpuq_kvw_res_bytes(o.op, o.vlen);
			h = gpuq_kvt_hash(p + off + GPUQ_KVW_OP_HDR, o.klen);
		}
		uint32_t sum = warp_scan(rb, lane, &before);
		if (kv_clash(active, h, o.op != GPUQ_KVW_GET)) {
			for (uint32_t j = 0; j < 32 && base + j < nops; j++) {
				if (j == lane)
					gpuq_kv_op(t, p + off, out + rat + before);
				__syncwarp(); // orders lane j's writes before j + 1
			}
		} else if (active) {
			gpuq_kv_op(t, p + off, out + rat + before);
		}
		rat += sum;
		__syncwarp(); // this round's writes before the next round
	}
	*out_len = rat;
	return 0;
}

} // namespace gpuq_dev

#endif
