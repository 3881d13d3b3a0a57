/*
 * kvtable.h - the broker's concurrent hash table, written once.
 *
 * Like handlers.h this compiles as C11 (the CPU backend, the tests) and as
 * CUDA C++ (the GPU backend, where the table lives in VRAM), so both
 * backends give the same answers for the same operations.
 *
 * Shape.  Open addressing over buckets of GPUQ_KVT_BUCKET slots.  A key
 * lives anywhere in the GPUQ_KVT_PROBE buckets from its home bucket on,
 * its window: GPUQ_KVT_WINDOW = 32 slots, one per lane of a warp.  Keys
 * never move, so there is no relocation to race with, and no tombstones:
 * every search looks at the whole window, so a deleted slot is simply
 * empty.  A window with no empty slot left is GPUQ_ETABLEFULL for the keys
 * homed there; nothing is ever overwritten to make room.
 *
 * Concurrency.  Every write to a key (insert, update, delete, cas, and the
 * read-modify-write of gpuq_kvt_acquire) holds its home bucket's lock, so
 * writes to one key are serialised and an insert's "is it absent?" scan
 * cannot race another insert of the same key.  A writer that needs a new
 * slot claims an empty one by compare-and-swap on its control word, since
 * a writer of another key, homed elsewhere, may want the same slot.
 * Lookups take no lock: each slot's control word is a seqlock (odd while
 * the slot is being written), and a read that saw it change retries.
 * Every operation is linearizable per key (tests/check_kvtable.c checks
 * histories of concurrent operations against a sequential model).
 *
 * Control word: seq << 32 | tag << 2 | state.  seq counts writes (odd:
 * one is in progress), tag is 30 bits of the key's hash (most mismatches
 * are rejected without touching the key), state is EMPTY or USED.
 */
#ifndef GPUQ_BROKER_KVTABLE_H
#define GPUQ_BROKER_KVTABLE_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h> /* sched_yield, host side */

#include "ipc/hd.h"
#include "libclient/gpuq.h"  /* error codes */

#include "ipc/atomics.h" /* ipc_cpu_relax, for the host side */
#ifdef __CUDACC__
/* C++ even where a .cu includes broker headers inside extern "C". */
extern "C++" {
#include <cuda/atomic>
}
#endif

#define GPUQ_KVT_KEY_MAX 32   /* bytes */
#define GPUQ_KVT_BUCKET 8     /* slots per bucket */
#define GPUQ_KVT_PROBE 4      /* buckets in a key's window */
#define GPUQ_KVT_WINDOW (GPUQ_KVT_BUCKET * GPUQ_KVT_PROBE)
#define GPUQ_KVT_VALUE_MAX 4096
#define GPUQ_KVT_SLOT_HDR 48  /* control word, lengths, key */

enum { GPUQ_KVT_EMPTY = 0, GPUQ_KVT_USED = 1 };

/* gpuq_kvt_put modes */
enum gpuq_kvt_mode {
	GPUQ_KVT_UPSERT = 0, /* insert or overwrite */
	GPUQ_KVT_INSERT = 1, /* only if absent, else GPUQ_EEXISTS */
	GPUQ_KVT_UPDATE = 2  /* only if present, else GPUQ_ENOKEY */
};

struct gpuq_kvt_slot {
	uint64_t ctrl;
	uint32_t vlen;
	uint8_t klen;
	uint8_t pad[3];
	uint8_t key[GPUQ_KVT_KEY_MAX];
	/* value_bytes of value follow (16-byte aligned) */
};

/* A table: plain memory and its geometry, passed by value to kernels. */
struct gpuq_kvt {
	uint8_t *slots;      /* nbuckets * GPUQ_KVT_BUCKET slots */
	uint32_t *locks;     /* one per bucket */
	uint64_t nbuckets;   /* a power of two */
	uint32_t value_bytes;
	uint32_t stride;     /* bytes per slot */
};

/* ---- atomics: C11/GCC builtins on the host, cuda::atomic_ref on the GPU
 * (the table is only ever touched by one side: device scope suffices) ---- */
#ifdef __CUDA_ARCH__
typedef cuda::atomic_ref<uint64_t, cuda::thread_scope_device> gpuq_kvt_a64;
typedef cuda::atomic_ref<uint32_t, cuda::thread_scope_device> gpuq_kvt_a32;
#endif

GPUQ_HD uint64_t gpuq_kvt_load(uint64_t *p)
{
#ifdef __CUDA_ARCH__
	return gpuq_kvt_a64(*p).load(cuda::memory_order_acquire);
#else
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
#endif
}

/* A load that orders nothing by itself: see gpuq_kvt_bucket_ctrl. */
GPUQ_HD uint64_t gpuq_kvt_load_rx(uint64_t *p)
{
#ifdef __CUDA_ARCH__
	return gpuq_kvt_a64(*p).load(cuda::memory_order_relaxed);
#else
	return __atomic_load_n(p, __ATOMIC_RELAXED);
#endif
}

GPUQ_HD void gpuq_kvt_store(uint64_t *p, uint64_t v)
{
#ifdef __CUDA_ARCH__
	gpuq_kvt_a64(*p).store(v, cuda::memory_order_release);
#else
	__atomic_store_n(p, v, __ATOMIC_RELEASE);
#endif
}

GPUQ_HD int gpuq_kvt_cas(uint64_t *p, uint64_t expect, uint64_t want)
{
#ifdef __CUDA_ARCH__
	return gpuq_kvt_a64(*p).compare_exchange_strong(
		expect, want, cuda::memory_order_acq_rel);
#else
	return __atomic_compare_exchange_n(p, &expect, want, 0, __ATOMIC_ACQ_REL,
					   __ATOMIC_ACQUIRE);
#endif
}

/* Orders the data reads of a seqlock read before its second control load. */
GPUQ_HD void gpuq_kvt_fence_acq(void)
{
#ifdef __CUDA_ARCH__
	cuda::atomic_thread_fence(cuda::memory_order_acquire,
				  cuda::thread_scope_device);
#else
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
#endif
}

/* Orders a writer's "odd" control store before its data writes. */
GPUQ_HD void gpuq_kvt_fence_rel(void)
{
#ifdef __CUDA_ARCH__
	cuda::atomic_thread_fence(cuda::memory_order_release,
				  cuda::thread_scope_device);
#else
	__atomic_thread_fence(__ATOMIC_RELEASE);
#endif
}

/* One wait of a spin loop: a pause, and after a while a yield, since the
 * holder may be a preempted thread (the CPU backend may run more
 * threads than cores); on the GPU a short sleep. */
GPUQ_HD void gpuq_kvt_backoff(unsigned *spins)
{
#ifdef __CUDA_ARCH__
	__nanosleep(*spins < 8 ? 32u << *spins : 4096u);
	(*spins)++;
#else
	if ((*spins)++ < 64)
		ipc_cpu_relax();
	else
		sched_yield();
#endif
}

GPUQ_HD void gpuq_kvt_lock(const struct gpuq_kvt *t, uint64_t bucket)
{
	uint32_t *l = &t->locks[bucket];
	unsigned spins = 0;
	uint32_t free_ = 0;
#ifdef __CUDA_ARCH__
	while (!gpuq_kvt_a32(*l).compare_exchange_weak(
		free_, 1u, cuda::memory_order_acquire)) {
#else
	while (!__atomic_compare_exchange_n(l, &free_, 1u, 1, __ATOMIC_ACQUIRE,
					    __ATOMIC_RELAXED)) {
#endif
		free_ = 0;
		gpuq_kvt_backoff(&spins);
	}
}

GPUQ_HD void gpuq_kvt_unlock(const struct gpuq_kvt *t, uint64_t bucket)
{
#ifdef __CUDA_ARCH__
	gpuq_kvt_a32(t->locks[bucket]).store(0u, cuda::memory_order_release);
#else
	__atomic_store_n(&t->locks[bucket], 0u, __ATOMIC_RELEASE);
#endif
}

/* ---- geometry ---- */

GPUQ_HD uint32_t gpuq_kvt_stride(uint32_t value_bytes)
{
	return GPUQ_KVT_SLOT_HDR + ((value_bytes + 15u) & ~15u);
}

/* Buckets for at least `slots` slots: a power of two, at least a window. */
GPUQ_HD uint64_t gpuq_kvt_buckets(uint64_t slots)
{
	uint64_t b = GPUQ_KVT_PROBE;
	while (b * GPUQ_KVT_BUCKET < slots)
		b *= 2;
	return b;
}

/* Bytes of slot memory and of lock memory for a table; both zeroed make an
 * empty table. */
GPUQ_HD size_t gpuq_kvt_slot_bytes(uint64_t nbuckets, uint32_t value_bytes)
{
	return (size_t)nbuckets * GPUQ_KVT_BUCKET * gpuq_kvt_stride(value_bytes);
}

GPUQ_HD size_t gpuq_kvt_lock_bytes(uint64_t nbuckets)
{
	return (size_t)nbuckets * sizeof(uint32_t);
}

/* A table's geometry for at least `slots` slots of values up to
 * value_bytes; its memory (gpuq_kvt_slot_bytes + gpuq_kvt_lock_bytes,
 * zeroed) is the caller's to provide. */
GPUQ_HD void gpuq_kvt_geometry(struct gpuq_kvt *t, uint64_t slots,
			       uint32_t value_bytes)
{
	t->nbuckets = gpuq_kvt_buckets(slots);
	t->value_bytes = value_bytes;
	t->stride = gpuq_kvt_stride(value_bytes);
}

#ifndef __CUDACC__
/* An empty table in host memory (calloc: large ones get their pages as
 * they are touched).  0 or -ENOMEM (then nothing is held). */
static inline int gpuq_kvt_alloc(struct gpuq_kvt *t, uint64_t slots,
				 uint32_t value_bytes)
{
	gpuq_kvt_geometry(t, slots, value_bytes);
	t->slots = (uint8_t *)calloc(1, gpuq_kvt_slot_bytes(t->nbuckets,
							     value_bytes));
	t->locks = (uint32_t *)calloc(1, gpuq_kvt_lock_bytes(t->nbuckets));
	if (t->slots && t->locks)
		return 0;
	free(t->slots);
	free(t->locks);
	memset(t, 0, sizeof(*t));
	return -ENOMEM;
}

static inline void gpuq_kvt_free(struct gpuq_kvt *t)
{
	free(t->slots);
	free(t->locks);
	memset(t, 0, sizeof(*t));
}
#endif

GPUQ_HD struct gpuq_kvt_slot *gpuq_kvt_slot_at(const struct gpuq_kvt *t,
					       uint64_t i)
{
	return (struct gpuq_kvt_slot *)(t->slots + (size_t)i * t->stride);
}

GPUQ_HD uint8_t *gpuq_kvt_value(struct gpuq_kvt_slot *s)
{
	return (uint8_t *)(s + 1);
}

/* 64-bit hash of a key (FNV-1a over the bytes, then a murmur finaliser so
 * the bucket bits and the tag bits are both well mixed). */
GPUQ_HD uint64_t gpuq_kvt_hash(const uint8_t *k, uint32_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (uint32_t i = 0; i < n; i++)
		h = (h ^ k[i]) * 0x100000001b3ull;
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ull;
	return h ^ (h >> 33);
}

/* memcmp() == 0, which device code lacks. */
GPUQ_HD int gpuq_kvt_memeq(const void *a, const void *b, uint32_t n)
{
	const uint8_t *x = (const uint8_t *)a, *y = (const uint8_t *)b;
	for (uint32_t i = 0; i < n; i++)
		if (x[i] != y[i])
			return 0;
	return 1;
}

#define GPUQ_KVT_STATE(c) ((uint32_t)(c) & 3u)
#define GPUQ_KVT_TAG(c) (((uint32_t)(c) >> 2) & 0x3fffffffu)
#define GPUQ_KVT_SEQ(c) ((uint32_t)((c) >> 32))
#define GPUQ_KVT_CTRL(seq, tag, st) \
	((uint64_t)(seq) << 32 | (uint64_t)((tag) & 0x3fffffffu) << 2 | (st))

/* Where a key lives: its home bucket and tag. */
struct gpuq_kvt_loc {
	uint64_t home;
	uint32_t tag;
};

GPUQ_HD int gpuq_kvt_locate(const struct gpuq_kvt *t, const void *key,
			    uint32_t klen, struct gpuq_kvt_loc *l)
{
	uint64_t h;
	if (klen == 0 || klen > GPUQ_KVT_KEY_MAX)
		return GPUQ_EKEYSIZE;
	h = gpuq_kvt_hash((const uint8_t *)key, klen);
	l->home = h & (t->nbuckets - 1);
	l->tag = (uint32_t)(h >> 34);
	return 0;
}

/* Slot index of the i-th slot of the window starting at home. */
GPUQ_HD uint64_t gpuq_kvt_window_slot(const struct gpuq_kvt *t, uint64_t home,
				      uint32_t i)
{
	uint64_t b = (home + i / GPUQ_KVT_BUCKET) & (t->nbuckets - 1);
	return b * GPUQ_KVT_BUCKET + i % GPUQ_KVT_BUCKET;
}

#ifdef __CUDA_ARCH__
#define GPUQ_KVT_UNROLL _Pragma("unroll")
#else
#define GPUQ_KVT_UNROLL
#endif

/*
 * The control words of bucket b (0 .. GPUQ_KVT_PROBE - 1) of the window
 * starting at home.  The loads are independent, so on the GPU all of them
 * are in flight at once, where acquire loads would each wait for the one
 * before (a window scan was a chain of 32 VRAM round trips); the one
 * acquire fence after them orders the slot reads that follow as acquire
 * loads would, since a load followed by an acquire fence acquires.
 */
GPUQ_HD void gpuq_kvt_bucket_ctrl(const struct gpuq_kvt *t, uint64_t home,
				  uint32_t b, uint64_t c[GPUQ_KVT_BUCKET])
{
	uint64_t first = ((home + b) & (t->nbuckets - 1)) * GPUQ_KVT_BUCKET;
	GPUQ_KVT_UNROLL
	for (uint32_t j = 0; j < GPUQ_KVT_BUCKET; j++)
		c[j] = gpuq_kvt_load_rx(&gpuq_kvt_slot_at(t, first + j)->ctrl);
	gpuq_kvt_fence_acq();
}

/* A slot may be claimed for a new key: empty and not mid-write. */
GPUQ_HD int gpuq_kvt_claimable(uint64_t c)
{
	return GPUQ_KVT_STATE(c) == GPUQ_KVT_EMPTY && !(GPUQ_KVT_SEQ(c) & 1u);
}

/* The lowest set bit's index (x != 0). */
GPUQ_HD uint32_t gpuq_kvt_ctz(uint32_t x)
{
#ifdef __CUDA_ARCH__
	return (uint32_t)__ffs((int)x) - 1u;
#else
	return (uint32_t)__builtin_ctz(x);
#endif
}

/*
 * The slots of a bucket, by control word, that may hold the key tagged
 * tag: a bit per slot.  All in registers, so that a warp's lanes, each
 * searching for its own key, pick their candidates without diverging and
 * then read their candidates' keys together; a loop that read a slot
 * where its tag matched ran the lanes one slot position after another.
 * used_only: only USED slots at rest (a writer holding the key's lock);
 * else also slots mid-write (a lookup waits those out).
 */
GPUQ_HD uint32_t gpuq_kvt_candidates(const uint64_t c[GPUQ_KVT_BUCKET],
				     uint32_t tag, int used_only)
{
	uint32_t m = 0;
	GPUQ_KVT_UNROLL
	for (uint32_t j = 0; j < GPUQ_KVT_BUCKET; j++) {
		uint32_t odd = GPUQ_KVT_SEQ(c[j]) & 1u;
		int used = GPUQ_KVT_STATE(c[j]) == GPUQ_KVT_USED;
		int may = used_only ? used && !odd : used || odd;
		m |= (uint32_t)(may && GPUQ_KVT_TAG(c[j]) == tag) << j;
	}
	return m;
}

/* Does slot s, whose control word was c, hold the key? */
GPUQ_HD int gpuq_kvt_holds(const struct gpuq_kvt_slot *s, uint64_t c,
			   uint32_t tag, const void *key, uint32_t klen)
{
	return GPUQ_KVT_STATE(c) == GPUQ_KVT_USED && (GPUQ_KVT_SEQ(c) & 1u) == 0 &&
	       GPUQ_KVT_TAG(c) == tag && s->klen == klen &&
	       gpuq_kvt_memeq(s->key, key, klen);
}

/*
 * The slot of the window that holds the key, or -1.  For a writer holding
 * the key's home lock the answer is stable (only it writes that key's
 * slots); *ctrl gets the slot's control word.  *empty gets the first empty
 * slot seen, or -1.
 */
GPUQ_HD int64_t gpuq_kvt_find_locked(const struct gpuq_kvt *t,
				     const struct gpuq_kvt_loc *l,
				     const void *key, uint32_t klen,
				     uint64_t *ctrl, int64_t *empty)
{
	*empty = -1;
	for (uint32_t b = 0; b < GPUQ_KVT_PROBE; b++) {
		uint64_t cb[GPUQ_KVT_BUCKET];
		uint32_t cand;
		gpuq_kvt_bucket_ctrl(t, l->home, b, cb);
		GPUQ_KVT_UNROLL
		for (uint32_t j = 0; j < GPUQ_KVT_BUCKET; j++)
			if (*empty < 0 && gpuq_kvt_claimable(cb[j]))
				*empty = (int64_t)gpuq_kvt_window_slot(
					t, l->home, b * GPUQ_KVT_BUCKET + j);
		cand = gpuq_kvt_candidates(cb, l->tag, 1);
		while (cand) {
			uint32_t j = gpuq_kvt_ctz(cand);
			uint64_t si = gpuq_kvt_window_slot(
				t, l->home, b * GPUQ_KVT_BUCKET + j);
			struct gpuq_kvt_slot *s = gpuq_kvt_slot_at(t, si);
			cand &= cand - 1;
			/* Another key's slot may change under us, but then
			 * it never held ours: re-reading the control word
			 * settles it. */
			if (gpuq_kvt_holds(s, cb[j], l->tag, key, klen)) {
				gpuq_kvt_fence_acq();
				if (gpuq_kvt_load(&s->ctrl) == cb[j]) {
					*ctrl = cb[j];
					return (int64_t)si;
				}
			}
		}
	}
	return -1;
}

/* Start writing a slot (odd seq), and finish (even seq, new state). */
GPUQ_HD void gpuq_kvt_write_begin(struct gpuq_kvt_slot *s, uint64_t c)
{
	gpuq_kvt_store(&s->ctrl, GPUQ_KVT_CTRL(GPUQ_KVT_SEQ(c) + 1u,
					       GPUQ_KVT_TAG(c), GPUQ_KVT_STATE(c)));
	gpuq_kvt_fence_rel();
}

GPUQ_HD void gpuq_kvt_write_end(struct gpuq_kvt_slot *s, uint64_t c_begin,
				uint32_t tag, uint32_t state)
{
	gpuq_kvt_store(&s->ctrl,
		       GPUQ_KVT_CTRL(GPUQ_KVT_SEQ(c_begin) + 2u, tag, state));
}

/* Claim slot si for the key if it is free: 1 with it mid-write (odd seq)
 * and *c_before its control word before the claim, else 0. */
GPUQ_HD int gpuq_kvt_try_claim(const struct gpuq_kvt *t,
			       const struct gpuq_kvt_loc *l, uint64_t si,
			       uint64_t *c_before)
{
	struct gpuq_kvt_slot *s = gpuq_kvt_slot_at(t, si);
	uint64_t c = gpuq_kvt_load(&s->ctrl);
	if (!gpuq_kvt_claimable(c) ||
	    !gpuq_kvt_cas(&s->ctrl, c,
			  GPUQ_KVT_CTRL(GPUQ_KVT_SEQ(c) + 1u, l->tag,
					GPUQ_KVT_EMPTY)))
		return 0;
	gpuq_kvt_fence_rel();
	*c_before = c;
	return 1;
}

/*
 * Claim an empty slot of the window for a new key (the caller holds the
 * key's home lock), leaving it mid-write (odd seq).  first: the first
 * empty slot gpuq_kvt_find_locked saw.  Returns the slot index and its
 * control word before the claim, or -1 when the window is full.
 */
GPUQ_HD int64_t gpuq_kvt_claim(const struct gpuq_kvt *t,
			       const struct gpuq_kvt_loc *l, int64_t first,
			       uint64_t *c_before)
{
	if (first < 0)
		return -1;
	/* The empty slot the search saw is most likely empty still. */
	if (gpuq_kvt_try_claim(t, l, (uint64_t)first, c_before))
		return first;
	for (uint32_t i = 0; i < GPUQ_KVT_WINDOW; i++) {
		uint64_t si = gpuq_kvt_window_slot(t, l->home, i);
		if (gpuq_kvt_try_claim(t, l, si, c_before))
			return (int64_t)si;
	}
	return -1;
}

/* ---- operations; each returns 0 or a negative gpuq code ---- */

/* gpuq_kvt_get at the i-th slot of the key's window, whose control word
 * was c: 0 with the value read, or GPUQ_ENOKEY if the slot does not hold
 * the key. */
GPUQ_HD int gpuq_kvt_get_slot(const struct gpuq_kvt *t,
			      const struct gpuq_kvt_loc *l, uint32_t i,
			      uint64_t c, const void *key, uint32_t klen,
			      void *out, uint32_t cap, uint32_t *vlen)
{
	struct gpuq_kvt_slot *s =
		gpuq_kvt_slot_at(t, gpuq_kvt_window_slot(t, l->home, i));
	unsigned spins = 0;
	for (;;) {
		uint32_t n;
		if (GPUQ_KVT_SEQ(c) & 1u) {
			/* A slot mid-write carries the tag of the key being
			 * written: wait only if that may be ours. */
			if (GPUQ_KVT_TAG(c) != l->tag)
				return GPUQ_ENOKEY;
			gpuq_kvt_backoff(&spins);
			c = gpuq_kvt_load(&s->ctrl);
			continue;
		}
		if (!gpuq_kvt_holds(s, c, l->tag, key, klen))
			return GPUQ_ENOKEY;
		n = s->vlen;
		if (n <= t->value_bytes) { /* else torn: the check retries */
			if (out)
				memcpy(out, gpuq_kvt_value(s), n < cap ? n : cap);
			gpuq_kvt_fence_acq();
		}
		uint64_t again = gpuq_kvt_load(&s->ctrl);
		if (again == c && n <= t->value_bytes) {
			*vlen = n;
			return 0;
		}
		c = again;
	}
}

/*
 * Look the key up without locking.  Copies up to cap bytes of the value to
 * out (out may be NULL with cap 0) and sets *vlen to its full length.
 * Errors: GPUQ_EKEYSIZE, GPUQ_ENOKEY.
 */
GPUQ_HD int gpuq_kvt_get(const struct gpuq_kvt *t, const void *key,
			 uint32_t klen, void *out, uint32_t cap, uint32_t *vlen)
{
	struct gpuq_kvt_loc l;
	int rc = gpuq_kvt_locate(t, key, klen, &l);
	if (rc)
		return rc;
	for (uint32_t b = 0; b < GPUQ_KVT_PROBE; b++) {
		uint64_t cb[GPUQ_KVT_BUCKET];
		uint32_t cand;
		gpuq_kvt_bucket_ctrl(t, l.home, b, cb);
		cand = gpuq_kvt_candidates(cb, l.tag, 0);
		while (cand) {
			uint32_t j = gpuq_kvt_ctz(cand);
			cand &= cand - 1;
			rc = gpuq_kvt_get_slot(t, &l, b * GPUQ_KVT_BUCKET + j,
					       cb[j], key, klen, out, cap, vlen);
			if (rc != GPUQ_ENOKEY)
				return rc;
		}
	}
	return GPUQ_ENOKEY;
}

/* A writer's hold on its key: where the key lives and, with the home lock
 * held, the slot that holds it (si, with its control word c) or -1 and
 * the window's first empty slot. */
struct gpuq_kvt_wr {
	struct gpuq_kvt_loc l;
	uint64_t c;
	int64_t si, empty;
};

/* The start of every write: locate the key, check the value's size, take
 * the home lock and find the key.  0 with the lock held, or GPUQ_EKEYSIZE
 * / GPUQ_EVALSIZE with nothing held. */
GPUQ_HD int gpuq_kvt_wr_begin(const struct gpuq_kvt *t, const void *key,
			      uint32_t klen, uint32_t vlen,
			      struct gpuq_kvt_wr *w)
{
	int rc = gpuq_kvt_locate(t, key, klen, &w->l);
	if (rc)
		return rc;
	if (vlen > t->value_bytes)
		return GPUQ_EVALSIZE;
	w->c = 0;
	gpuq_kvt_lock(t, w->l.home);
	w->si = gpuq_kvt_find_locked(t, &w->l, key, klen, &w->c, &w->empty);
	return 0;
}

/* Write a value into a slot the caller is writing (odd seq). */
GPUQ_HD void gpuq_kvt_fill(struct gpuq_kvt_slot *s, const void *key,
			   uint32_t klen, const void *val, uint32_t vlen)
{
	s->klen = (uint8_t)klen;
	memcpy(s->key, key, klen);
	s->vlen = vlen;
	if (vlen)
		memcpy(gpuq_kvt_value(s), val, vlen);
}

/*
 * Store a value under the key, as mode says.  Errors: GPUQ_EKEYSIZE,
 * GPUQ_EVALSIZE (vlen > the table's value size), GPUQ_EEXISTS (INSERT of
 * a present key), GPUQ_ENOKEY (UPDATE of an absent key), GPUQ_ETABLEFULL
 * (the key is new and its window has no empty slot; nothing was changed).
 */
GPUQ_HD int gpuq_kvt_put(const struct gpuq_kvt *t, const void *key,
			 uint32_t klen, const void *val, uint32_t vlen,
			 enum gpuq_kvt_mode mode)
{
	struct gpuq_kvt_wr w;
	int rc = gpuq_kvt_wr_begin(t, key, klen, vlen, &w);
	if (rc)
		return rc;
	if (w.si >= 0 && mode == GPUQ_KVT_INSERT) {
		rc = GPUQ_EEXISTS;
	} else if (w.si < 0 && mode == GPUQ_KVT_UPDATE) {
		rc = GPUQ_ENOKEY;
	} else {
		if (w.si < 0)
			w.si = gpuq_kvt_claim(t, &w.l, w.empty, &w.c);
		if (w.si < 0) {
			rc = GPUQ_ETABLEFULL;
		} else {
			struct gpuq_kvt_slot *s = gpuq_kvt_slot_at(t, (uint64_t)w.si);
			if (GPUQ_KVT_STATE(w.c) == GPUQ_KVT_USED)
				gpuq_kvt_write_begin(s, w.c);
			gpuq_kvt_fill(s, key, klen, val, vlen);
			gpuq_kvt_write_end(s, w.c, w.l.tag, GPUQ_KVT_USED);
		}
	}
	gpuq_kvt_unlock(t, w.l.home);
	return rc;
}

/* Remove the key.  Errors: GPUQ_EKEYSIZE, GPUQ_ENOKEY. */
GPUQ_HD int gpuq_kvt_del(const struct gpuq_kvt *t, const void *key,
			 uint32_t klen)
{
	struct gpuq_kvt_wr w;
	int rc = gpuq_kvt_wr_begin(t, key, klen, 0, &w);
	if (rc)
		return rc;
	if (w.si < 0)
		rc = GPUQ_ENOKEY;
	else
		gpuq_kvt_write_end(gpuq_kvt_slot_at(t, (uint64_t)w.si), w.c, 0,
				   GPUQ_KVT_EMPTY);
	gpuq_kvt_unlock(t, w.l.home);
	return rc;
}

/*
 * Compare-and-swap: if the key's value is exactly expect (elen bytes),
 * replace it with val.  Errors: GPUQ_EKEYSIZE, GPUQ_EVALSIZE, GPUQ_ENOKEY,
 * GPUQ_ECASFAIL (the value differs; nothing was changed).
 */
GPUQ_HD int gpuq_kvt_cas_value(const struct gpuq_kvt *t, const void *key,
			       uint32_t klen, const void *expect, uint32_t elen,
			       const void *val, uint32_t vlen)
{
	struct gpuq_kvt_wr w;
	int rc = gpuq_kvt_wr_begin(t, key, klen, vlen, &w);
	if (rc)
		return rc;
	if (w.si < 0) {
		rc = GPUQ_ENOKEY;
	} else {
		struct gpuq_kvt_slot *s = gpuq_kvt_slot_at(t, (uint64_t)w.si);
		if (s->vlen != elen ||
		    !gpuq_kvt_memeq(gpuq_kvt_value(s), expect, elen)) {
			rc = GPUQ_ECASFAIL;
		} else {
			gpuq_kvt_write_begin(s, w.c);
			gpuq_kvt_fill(s, key, klen, val, vlen);
			gpuq_kvt_write_end(s, w.c, w.l.tag, GPUQ_KVT_USED);
		}
	}
	gpuq_kvt_unlock(t, w.l.home);
	return rc;
}

/*
 * Read-modify-write of one key's value in place, for handler state:
 * gpuq_kvt_acquire locks the key's home bucket, finds the key (or, with
 * create, makes it with an all-zero value of vlen_new bytes) and returns
 * its value, which the caller may change; gpuq_kvt_release publishes it
 * with its new length and unlocks.  Nothing else may be called on the
 * table between the two.  *created says whether the key was new.
 * Errors: GPUQ_EKEYSIZE, GPUQ_EVALSIZE, GPUQ_ENOKEY (absent, !create),
 * GPUQ_ETABLEFULL.  On error nothing is held.
 */
struct gpuq_kvt_hold {
	struct gpuq_kvt_slot *slot;
	uint64_t ctrl; /* the control word when acquired */
	uint64_t home;
	uint32_t tag;
};

GPUQ_HD int gpuq_kvt_acquire(const struct gpuq_kvt *t, const void *key,
			     uint32_t klen, int create, uint32_t vlen_new,
			     struct gpuq_kvt_hold *h, uint8_t **value,
			     uint32_t *vlen, int *created)
{
	struct gpuq_kvt_wr w;
	struct gpuq_kvt_slot *s;
	int rc = gpuq_kvt_wr_begin(t, key, klen, vlen_new, &w);
	if (rc)
		return rc;
	*created = w.si < 0;
	if (w.si < 0 && !create)
		rc = GPUQ_ENOKEY;
	else if (w.si < 0 &&
		 (w.si = gpuq_kvt_claim(t, &w.l, w.empty, &w.c)) < 0)
		rc = GPUQ_ETABLEFULL;
	if (rc) {
		gpuq_kvt_unlock(t, w.l.home);
		return rc;
	}
	s = gpuq_kvt_slot_at(t, (uint64_t)w.si);
	if (*created) {
		uint8_t zero[1] = { 0 };
		gpuq_kvt_fill(s, key, klen, zero, 0);
		memset(gpuq_kvt_value(s), 0, vlen_new);
		s->vlen = vlen_new;
	} else {
		gpuq_kvt_write_begin(s, w.c);
	}
	h->slot = s;
	h->ctrl = w.c;
	h->home = w.l.home;
	h->tag = w.l.tag;
	*value = gpuq_kvt_value(s);
	*vlen = s->vlen;
	return 0;
}

/* vlen: the value's new length (<= the table's value size). */
GPUQ_HD void gpuq_kvt_release(const struct gpuq_kvt *t,
			      const struct gpuq_kvt_hold *h, uint32_t vlen)
{
	h->slot->vlen = vlen <= t->value_bytes ? vlen : t->value_bytes;
	gpuq_kvt_write_end(h->slot, h->ctrl, h->tag, GPUQ_KVT_USED);
	gpuq_kvt_unlock(t, h->home);
}

/* Give up a held key and delete it (gpuq_kvt_release's alternative). */
GPUQ_HD void gpuq_kvt_release_delete(const struct gpuq_kvt *t,
				     const struct gpuq_kvt_hold *h)
{
	gpuq_kvt_write_end(h->slot, h->ctrl, 0, GPUQ_KVT_EMPTY);
	gpuq_kvt_unlock(t, h->home);
}

/*
 * The key held by slot i, read without locking (for sweeps that then
 * acquire it): copies it to key (GPUQ_KVT_KEY_MAX bytes) and sets *klen.
 * Returns 0, or GPUQ_ENOKEY if the slot is empty.
 */
GPUQ_HD int gpuq_kvt_slot_key(const struct gpuq_kvt *t, uint64_t i,
			      uint8_t *key, uint32_t *klen)
{
	struct gpuq_kvt_slot *s = gpuq_kvt_slot_at(t, i);
	unsigned spins = 0;
	for (;;) {
		uint64_t c = gpuq_kvt_load(&s->ctrl);
		uint32_t n;
		if (GPUQ_KVT_SEQ(c) & 1u) {
			gpuq_kvt_backoff(&spins);
			continue;
		}
		if (GPUQ_KVT_STATE(c) != GPUQ_KVT_USED)
			return GPUQ_ENOKEY;
		n = s->klen;
		if (n == 0 || n > GPUQ_KVT_KEY_MAX)
			continue; /* torn; re-read */
		memcpy(key, s->key, n);
		gpuq_kvt_fence_acq();
		if (gpuq_kvt_load(&s->ctrl) == c) {
			*klen = n;
			return 0;
		}
	}
}

/* 1 if slot i holds a key (for counts; a stale answer is fine there). */
GPUQ_HD uint32_t gpuq_kvt_slot_used(const struct gpuq_kvt *t, uint64_t i)
{
	return GPUQ_KVT_STATE(gpuq_kvt_load(&gpuq_kvt_slot_at(t, i)->ctrl)) ==
	       GPUQ_KVT_USED;
}

/* Slots in use (a scan; for stats, not for the hot path).  The GPU's
 * housekeeping counts the same way, spread over its threads
 * (gpu/maint.cuh). */
GPUQ_HD uint64_t gpuq_kvt_count(const struct gpuq_kvt *t)
{
	uint64_t n = 0;
	for (uint64_t i = 0; i < t->nbuckets * GPUQ_KVT_BUCKET; i++)
		n += gpuq_kvt_slot_used(t, i);
	return n;
}

#endif
