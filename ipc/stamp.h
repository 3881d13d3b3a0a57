/*
 * stamp.h - the stamped slot format: a payload that proves itself complete.
 *
 * Why it exists.  A consumer normally reads a slot's state word, and only
 * once it says READY(t) may it read the payload: the producer wrote the
 * payload first and release-stored the state after it.  On the CUDA backend
 * each of those reads is a PCIe round trip (~1.3 us), and the second waits
 * for the first, which puts a lone message's round trip near 9 us.
 *
 * On a queue with stamped=1 the producer writes the payload as 16-byte
 * chunks, each holding 12 payload bytes and the 4-byte stamp of the ticket
 * (ipc_stamp(t)), and the message header's two 16-byte chunks carry the
 * stamp too.  Aligned 16-byte stores and loads are single-copy atomic
 * between the CPU and the GPU (BRIEF §2), so a consumer may read the state
 * word and the whole slot at once, in one trip: if the state says READY(t)
 * and every chunk the message uses carries t's stamp, the bytes it holds are
 * t's, in whatever order the reads were served.  If any chunk is stale it
 * falls back to reading the slot again after the state (the usual order).
 * The state word protocol itself is unchanged: stamps only let a consumer
 * trust a read it made early.
 *
 * A stamp differs from the previous lap's (t - capacity) and, on the first
 * lap, from the zeros the ring starts with.  Chunks past a message's length
 * may keep an older lap's stamp; only the header and the chunks that hold
 * its len bytes are checked.
 *
 * The cost: payload room per slot grows by a third (12 of every 16 bytes),
 * and a producer cannot write the slot in place (loans are refused), so
 * stamps are for queues that want the lowest latency, not the most bytes.
 */
#ifndef GPUQ_IPC_STAMP_H
#define GPUQ_IPC_STAMP_H

#include <stdint.h>
#include <string.h>

#include "ipc/hd.h"

#if defined(__x86_64__)
#include <emmintrin.h>
/* The format needs single-copy atomic 16-byte stores on the host.  Also
 * in nvcc's device pass, which parses a .cu file's host functions too (and
 * compiles no SSE into device code): gpuq-bench floor's producer, a host
 * function in a .cu file, writes and reads chunks with these helpers. */
#define IPC_HAVE_STAMPS 1
#else
#define IPC_HAVE_STAMPS 0
#endif

#define IPC_STAMP_DATA 12u  /* payload bytes per 16-byte chunk */
#define IPC_STAMP_CHUNK 16u

/*
 * The stamp of ticket (or, for a completion entry, message id) t:
 * t mod (2^32 - 1), plus 1.  Never 0, the value of memory never written.
 * And because the modulus is odd, two tickets of one slot, a multiple of
 * the (power-of-two) capacity apart, share a stamp only 2^32 - 1 laps
 * apart: about 2.8e14 tickets at capacity 65536, weeks at 10^8 a second.
 * (t + 1 would repeat every 2^32 tickets, 43 s at that rate, so a chunk
 * left stale that long, behind a run of shorter messages, could pass.)
 */
GPUQ_HD uint32_t ipc_stamp(uint64_t t)
{
	uint64_t s = (t & 0xffffffffu) + (t >> 32); /* congruent, < 2^33 */
	s = (s & 0xffffffffu) + (s >> 32);          /* congruent, < 2^32 */
	return s == 0xffffffffu ? 1u : (uint32_t)s + 1u;
}

/* Chunks that hold len payload bytes. */
GPUQ_HD uint32_t ipc_stamp_chunks(uint32_t len)
{
	return (len + IPC_STAMP_DATA - 1) / IPC_STAMP_DATA;
}

/* Bytes of slot that len payload bytes take in the stamped format. */
GPUQ_HD uint32_t ipc_stamp_bytes(uint32_t len)
{
	return ipc_stamp_chunks(len) * IPC_STAMP_CHUNK;
}

#if IPC_HAVE_STAMPS
/* One 16-byte chunk, stored with a single SSE store. */
static inline void ipc_chunk_store(void *dst, const void *src16)
{
	_mm_store_si128((__m128i *)dst, _mm_loadu_si128((const __m128i *)src16));
}

/* One 16-byte chunk, read with a single SSE load.  The empty asm pins the
 * value in a register, so the compiler cannot read src a second time for
 * any part of it: a chunk is checked and used from the one load. */
static inline void ipc_chunk_load(void *dst16, const void *src)
{
	__m128i v = _mm_load_si128((const __m128i *)src);
	__asm__ volatile("" : "+x"(v));
	_mm_storeu_si128((__m128i *)dst16, v);
}

/*
 * For a reader racing the writer (a client reading a stamped completion
 * entry): gather the len payload bytes of the stamped chunks at src into
 * dst, each chunk checked and copied from one load.  1 if every chunk
 * carried stamp; 0 if some chunk is not stamp's yet (dst is then partly
 * written and means nothing).
 */
static inline int ipc_stamp_gather(void *dst, const void *src, uint32_t len,
				   uint32_t stamp)
{
	const uint8_t *s = (const uint8_t *)src;
	uint8_t *d = (uint8_t *)dst;
	for (uint32_t off = 0; off < len; off += IPC_STAMP_DATA,
		      s += IPC_STAMP_CHUNK) {
		uint8_t c[IPC_STAMP_CHUNK];
		uint32_t v;
		ipc_chunk_load(c, s);
		memcpy(&v, c + IPC_STAMP_DATA, 4);
		if (v != stamp)
			return 0;
		memcpy(d + off, c,
		       len - off < IPC_STAMP_DATA ? len - off : IPC_STAMP_DATA);
	}
	return 1;
}

/*
 * Write len bytes of src to dst (16-byte aligned) as stamped chunks.  Full
 * chunks take an unaligned 16-byte load of src and the stamp blended over
 * its last 4 bytes; the tail goes through a zeroed buffer, so nothing past
 * src + len is read.
 */
static inline void ipc_stamp_write(void *dst, const void *src, uint32_t len,
				   uint32_t stamp)
{
	const uint8_t *s = (const uint8_t *)src;
	__m128i *d = (__m128i *)dst;
	const __m128i keep = _mm_set_epi32(0, -1, -1, -1);
	const __m128i st = _mm_set_epi32((int)stamp, 0, 0, 0);
	uint32_t j = 0, off = 0;
	for (; off + IPC_STAMP_CHUNK <= len; j++, off += IPC_STAMP_DATA) {
		__m128i v = _mm_loadu_si128((const __m128i *)(s + off));
		_mm_store_si128(d + j, _mm_or_si128(_mm_and_si128(v, keep), st));
	}
	for (; off < len; j++, off += IPC_STAMP_DATA) {
		uint8_t tmp[IPC_STAMP_CHUNK] = { 0 };
		uint32_t n = len - off < IPC_STAMP_DATA ? len - off : IPC_STAMP_DATA;
		memcpy(tmp, s + off, n);
		memcpy(tmp + IPC_STAMP_DATA, &stamp, 4);
		ipc_chunk_store(d + j, tmp);
	}
}
#endif

/* The payload bytes of a stamped slot, gathered into dst (len bytes). */
static inline void ipc_stamp_read(void *dst, const void *src, uint32_t len)
{
	const uint8_t *s = (const uint8_t *)src;
	uint8_t *d = (uint8_t *)dst;
	for (uint32_t off = 0, j = 0; off < len; j++, off += IPC_STAMP_DATA)
		memcpy(d + off, s + (size_t)j * IPC_STAMP_CHUNK,
		       len - off < IPC_STAMP_DATA ? len - off : IPC_STAMP_DATA);
}

/* 1 if every chunk holding len bytes at src carries stamp. */
static inline int ipc_stamp_check(const void *src, uint32_t len,
				  uint32_t stamp)
{
	const uint8_t *s = (const uint8_t *)src;
	for (uint32_t j = 0; j < ipc_stamp_chunks(len); j++) {
		uint32_t v;
		memcpy(&v, s + (size_t)j * IPC_STAMP_CHUNK + IPC_STAMP_DATA, 4);
		if (v != stamp)
			return 0;
	}
	return 1;
}

#endif
