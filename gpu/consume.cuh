// consume.cuh - the consumer kernels of the CUDA backend, as source.
//
// gpuqd compiles this with its built-in handlers (gpu/backend_cuda.cu), and
// a user handler module compiles the very same code around its own handler
// (gpu/gpuq_handler.cuh), so a loaded handler gets the same retries, dead
// letters, pause and drain behaviour as a built-in one.
//
// Producers never touch CUDA: they write slots in host shared memory, which
// gpuqd registers as mapped pinned memory, and the kernels pull them over
// PCIe.  Every shared word keeps a single writer: the kernels write only
// results, completion marks, FREE states and their own worker counters,
// never with read-modify-write on host memory (not atomic over PCIe).
//
// Unordered queues: G worker blocks take windows of W tickets (W = the
// block's threads; in the kv kernel W = its warps, so that the messages in
// flight spread over blocks rather than queue up in one), striped
// (block b takes windows b, b+G, ...), plus one pump thread that
// mirrors the host head and stop words into VRAM.  Per round a block
//   1. reads the state words of its reserved, unfinished tickets (one
//      coalesced read);
//   2. copies the published slots into the VRAM ring, all threads together,
//      16 bytes a lane and many loads in flight (a thread copying its own
//      slot serially leaves the link idle between dependent reads);
//   3. runs the handler, one thread per message (a warp per message in
//      gpuqd's kv kernel: gpu/kv_warp.cuh), building the completion entry
//      in VRAM;
//   4. writes the entries to the producers' completion areas, again all
//      threads together, then one system fence, then the DONE marks and the
//      FREE states.
// (design.md §10 numbers these steps 2, 5, 6 and 7-8.)  A lone producer's
// next message, found by a probe, skips 2-4: the probing warp runs it alone
// (lone_ticket, design.md §10 step 5a).
// Ordered queues: one thread per ring walks it in ticket order.
// Either kind keeps the queue's tables with threads it has to spare
// (gpu/maint.cuh).
#ifndef GPUQ_GPU_CONSUME_CUH
#define GPUQ_GPU_CONSUME_CUH

#include <cuda/atomic>
#include <stdint.h>

#include "gpu/kargs.h"
#include "gpu/kv_warp.cuh"
#include "gpu/maint.cuh"
#include "ipc/stamp.h"
#include "broker/handlers.h"
#include "libclient/gpuq.h"

namespace gpuq_dev {

// Polling intervals (see consume_windowed): right after new reservations,
// the longest backoff while reserved tickets are still being written, and
// the wait of a block whose window is far from the head.  The ordered
// kernel backs off up to NEAR_SLEEP_NS.
constexpr unsigned POLL_SLEEP_NS = 200;
constexpr unsigned WAIT_SLEEP_NS = 4096;
constexpr unsigned NEAR_SLEEP_NS = 512;
constexpr unsigned FAR_SLEEP_NS = 4096;
constexpr unsigned PUMP_SLEEP_NS = 256;
constexpr unsigned HOST_WAIT_SLEEP_NS = 20000;
constexpr unsigned MAX_WINDOW = 1024;
// The most threads a window of a queue with hash tables may have.
constexpr unsigned TABLES_MAX_WINDOW = 512;
// Eager polling (see look_ticket): how many tickets past the mirrored head
// a block reads directly, and for how many rounds without progress after
// its last message it keeps doing so.
constexpr unsigned EAGER_AHEAD = 32;
constexpr unsigned EAGER_ROUNDS = 4096;
// The pause word (hdr.paused | pause_gen << 32) as the pump mirrors it:
// bit 0 paused, bit 1 set once the pump has read it at all.
constexpr uint64_t PAUSE_ON = 1, PAUSE_MIRRORED = 2;
constexpr unsigned PAUSED_SLEEP_NS = 2048;
// Stamped queues (ipc/stamp.h): one warp reads a slot ahead, at most
// SPEC_PER_LANE 16-byte chunks a lane (all loads in flight at once).
constexpr unsigned SPEC_PER_LANE = 4, SPEC_MAX_CHUNKS = 32 * SPEC_PER_LANE;
// Probing (see probe_next): the gap between a probe and the next, the
// most probes in one round, and for how many rounds without progress after
// its last message a block keeps probing (a probing round lasts about
// PROBE_MAX * PROBE_GAP_NS, so some 8 ms).
constexpr unsigned PROBE_GAP_NS = 500, PROBE_MAX = 32, PROBE_ROUNDS = 512;
constexpr uint64_t NO_TICKET = ~0ull;
// A lone stamped message a probe took runs from shared memory (see
// lone_ticket): its slot (header and the payload a probe can hold, 30
// stamped chunks of 12 bytes, rounded up to 16) and its completion entry
// (header and up to FAST_RESULT_MAX result bytes, which stamped_cq_chunk
// reads 12 at a time, so a multiple of 12 that rounds up to 16 in room).
constexpr unsigned FAST_RESULT_MAX = 504;
constexpr unsigned FAST_SLOT_CHUNKS = 2 + (30 * 12 + 15) / 16;
constexpr unsigned FAST_STAGE_CHUNKS = 2 + (FAST_RESULT_MAX + 15) / 16;

typedef cuda::atomic_ref<uint64_t, cuda::thread_scope_system> sys_u64;

__device__ inline uint64_t load_acq(uint64_t *p)
{
	return sys_u64(*p).load(cuda::memory_order_acquire);
}

__device__ inline void store_rel(uint64_t *p, uint64_t v)
{
	sys_u64(*p).store(v, cuda::memory_order_release);
}

__device__ inline unsigned backoff(unsigned sleep, unsigned cap)
{
	sleep = sleep ? sleep * 2 : 32;
	return sleep < cap ? sleep : cap;
}

__device__ inline size_t slot_index(const kargs &a, uint32_t ring, uint64_t t)
{
	return (size_t)ring * a.capacity + (t & a.mask);
}

__device__ inline uint32_t host_stop(const kargs &a)
{
	return *(volatile uint32_t *)a.stop;
}

// Copy a message that failed every attempt into this worker's dead-letter
// ring at position p (taken by the caller), waiting while the ring is full:
// a dead letter is never dropped.  Returns false if stopped while waiting.
__device__ inline bool dead_letter(const kargs &a, uint32_t worker,
				   uint64_t p, uint32_t ring, uint64_t t,
				   const struct ipc_msg_hdr *m,
				   const uint8_t *payload, int status,
				   uint32_t attempts)
{
	struct ipc_worker *me = &a.workers[worker];
	unsigned sleep = 0;
	while (p - load_acq(&me->dlq_tail) >= a.dlq_per_worker) {
		if (host_stop(a))
			return false;
		__nanosleep(sleep = backoff(sleep, HOST_WAIT_SLEEP_NS));
	}
	struct ipc_dlq_entry *d = (struct ipc_dlq_entry *)(
		a.dlq + ((size_t)worker * a.dlq_per_worker + (p & a.dlq_mask)) *
				a.dlq_stride);
	ipc_dlq_fill(d, m, t, status, attempts, a.clients[m->client].pid, ring);
	// Both sides are 16-byte aligned; the tail is copied whole because
	// the dead-letter stride has room for a full slot.
	const uint4 *src = (const uint4 *)payload;
	uint4 *dst = (uint4 *)(d + 1);
	for (uint32_t i = 0; i < (m->len + 15) / 16; i++)
		dst[i] = src[i];
	__threadfence_system();
	store_rel(&d->seq, p + 1);
	return true;
}

// Counters of one worker, kept in shared memory (atomics), published by
// one thread.
struct counts {
	unsigned done, dead, skip, retried, garbled;
};

// Per ticket of a round: what step 2 copies (and that a stopped kernel
// must not release it).  COPY_HAVE: in the VRAM ring already, read ahead
// with its stamps (spec_read).
enum { COPY_NONE = 0, COPY_ALL = 1, COPY_HDR = 2, KEEP_STOPPED = 4,
       COPY_HAVE = 8 };

// What a ticket's round produced, for step 4.
enum outcome { OUT_NONE, OUT_RESULT, OUT_DEAD, OUT_GARBLED, OUT_STOPPED };

// A message's completion entry, built in the staging area; *out_bytes:
// how much of it step 4 copies.  seq: ordered queues run one ticket at a
// time per worker, so the worker's own counter orders its completions;
// the windowed kernel leaves it 0 (no order is promised there).
__device__ inline void stage_completion(struct ipc_cq_entry *e, int status,
					uint32_t len, uint32_t attempts,
					uint32_t worker, uint64_t seq,
					uint32_t *out_bytes)
{
	e->status = status;
	e->len = len;
	e->attempts = (uint16_t)attempts;
	e->worker = (uint16_t)worker;
	e->seq = seq;
	e->stamp = 0; // copy_out stamps it on a stamped-result queue
	*out_bytes = IPC_CQ_HDR_BYTES + len;
}

// A published ticket whose slot is already in the VRAM ring: its message,
// and its completion entry being built in the staging area.
struct ticket {
	const struct ipc_msg_hdr *m;
	const uint8_t *payload;
	struct ipc_cq_entry *e;
	uint32_t len;
	bool noresult;
};

// Ticket t of ring, opened for step 3; false if its header is garbled.
// A bad header must never steer a write outside the completion areas;
// index max_clients is the broker's own, which never wants results.
// The slot at vslot and the entry at stage may be in VRAM or, for a lone
// message a probe took (lone_ticket), in shared memory (the handler gets
// plain pointers).
__device__ inline bool open_ticket_at(const kargs &a, const uint8_t *vslot,
				      uint8_t *stage, struct ticket *k)
{
	k->m = (const struct ipc_msg_hdr *)vslot;
	k->payload = (const uint8_t *)(k->m + 1);
	k->e = (struct ipc_cq_entry *)stage;
	k->len = k->m->len;
	k->noresult = k->m->flags & IPC_MSG_NORESULT;
	uint32_t client = k->m->client;
	return !(client > a.max_clients || k->len == 0 ||
		 k->len > a.slot_bytes ||
		 (client == a.max_clients && !k->noresult));
}

__device__ inline bool open_ticket(const kargs &a, uint32_t ring, uint64_t t,
				   struct ticket *k)
{
	size_t si = slot_index(a, ring, t);
	return open_ticket_at(a, a.vram + si * a.slot_stride,
			      a.stage + si * a.stage_stride, k);
}

// The end of step 3 for a ticket whose handler returned rc after attempts
// runs, with len result bytes: the retries counted, a final failure
// dead-lettered, and the completion entry built (*out_bytes: how much of
// it step 4 copies; left alone when no completion is wanted).
__device__ inline enum outcome finish_ticket(const kargs &a, uint32_t worker,
					     uint32_t ring, uint64_t t,
					     const struct ticket &k, int rc,
					     uint32_t attempts, uint32_t len,
					     unsigned long long *dlq_next,
					     unsigned *retried, uint64_t seq,
					     uint32_t *out_bytes)
{
	if (attempts > 1)
		atomicAdd(retried, attempts - 1);
	if (rc && !dead_letter(a, worker, atomicAdd(dlq_next, 1ull), ring, t,
			       k.m, k.payload, rc, attempts))
		return OUT_STOPPED;
	if (!k.noresult)
		stage_completion(k.e, rc ? GPUQ_EHANDLER : 0, rc ? 0 : len,
				 attempts, worker, seq, out_bytes);
	return rc ? OUT_DEAD : OUT_RESULT;
}

// Step 3 for one published ticket: run the handler (with retries),
// dead-letter a final failure, and build the completion entry in the
// staging area.  *out_bytes gets how many bytes of that entry step 4 must
// copy (0: no completion is wanted).  TABLES: the queue has hash tables
// (handler state, exactly-once); without them the table code is compiled
// out, which keeps the kernel's register count, and so its window size,
// what it was.  fslot/fstage: the slot and the entry in shared memory
// instead (lone_ticket), where the VRAM ring and staging area are not used.
template <bool TABLES>
__device__ inline enum outcome run_ticket(const kargs &a, uint32_t worker,
					  uint32_t ring, uint64_t t,
					  unsigned long long *dlq_next,
					  unsigned *retried, uint64_t seq,
					  uint32_t *out_bytes,
					  const uint4 *fslot = nullptr,
					  uint4 *fstage = nullptr)
{
	struct ticket k;
	uint32_t attempts;
	*out_bytes = 0;
	if (!(fslot ? open_ticket_at(a, (const uint8_t *)fslot,
				     (uint8_t *)fstage, &k)
		    : open_ticket(a, ring, t, &k)))
		return OUT_GARBLED;
	struct gpuq_hmsg in = { k.payload, k.len, 1, k.m->id, k.m->key, NULL };
	struct gpuq_hres res = { (uint8_t *)(k.e + 1), a.result_bytes, 0 };
	struct gpuq_fault f = { a.fault_ppm, a.fault_attempts };
	int rc;
	if (TABLES) {
		// Copies: taking the address of a kernel parameter would move
		// all of kargs to local memory.
		struct gpuq_kvt table = a.table, once = a.once;
		int refused = 0, replayed;
		in.table = table.slots ? &table : NULL;
		if (once.slots)
			rc = gpuq_handle_once(a.handler, &in, &res, &f,
					      a.max_attempts, &attempts, &once,
					      gpuq_once_now_ns(), a.once_window_ns,
					      &refused, &replayed);
		else
			rc = gpuq_handle(a.handler, &in, &res, &f,
					 a.max_attempts, &attempts);
		if (refused) {
			// Not run and not a handler failure: no dead letter,
			// the producer gets the reason (as on the CPU backend).
			if (!k.noresult)
				stage_completion(k.e, refused, 0, 0, worker, seq,
						 out_bytes);
			return OUT_RESULT;
		}
	} else {
		rc = gpuq_handle(a.handler, &in, &res, &f, a.max_attempts,
				 &attempts);
	}
	return finish_ticket(a, worker, ring, t, k, rc, attempts, res.len,
			     dlq_next, retried, seq, out_bytes);
}

// run_ticket for a queue of the kv kernel, by all 32 lanes of a warp; the
// same outcome in each.  A malformed request would fail every attempt
// alike, so it counts max_attempts, as gpuq_handle would, without the
// re-runs.
__device__ inline enum outcome run_ticket_kv(const kargs &a, uint32_t worker,
					     uint64_t t,
					     unsigned long long *dlq_next,
					     unsigned *retried,
					     uint32_t *out_bytes)
{
	struct ticket k;
	uint32_t res_len = 0, nb = 0;
	enum outcome o = OUT_RESULT;
	*out_bytes = 0;
	if (!open_ticket(a, 0, t, &k))
		return OUT_GARBLED;
	struct gpuq_kvt table = a.table; // a copy: see run_ticket
	int rc = kv_warp(&table, k.payload, k.len, (uint8_t *)(k.e + 1),
			 a.result_bytes, &res_len);
	if (threadIdx.x % 32 == 0)
		o = finish_ticket(a, worker, 0, t, k, rc,
				  rc ? a.max_attempts : 1, res_len, dlq_next,
				  retried, 0, &nb);
	*out_bytes = __shfl_sync(FULL_WARP, nb, 0);
	return (enum outcome)__shfl_sync(FULL_WARP, (int)o, 0);
}

__device__ inline struct ipc_cq_entry *cq_entry(const kargs &a,
						const struct ipc_msg_hdr *m)
{
	return (struct ipc_cq_entry *)(a.cq + ((size_t)m->client * a.cq_capacity +
					       (m->id & a.cq_mask)) *
						      a.cq_stride);
}

// 16-byte chunks of a stamped slot or completion entry with len payload
// bytes: its two header chunks (a slot's and an entry's header are both 32
// bytes), then 12 payload bytes and the stamp a chunk.
__device__ inline uint32_t stamped_chunks(uint32_t len)
{
	return IPC_MSG_HDR_BYTES / 16 + ipc_stamp_chunks(len);
}

// 16-byte chunks of a host slot that copy_in reads.
__device__ inline uint32_t slot_chunks(const kargs &a)
{
	return a.stamped ? stamped_chunks(a.slot_bytes)
			 : (IPC_MSG_HDR_BYTES + a.slot_bytes + 15) / 16;
}

// Put chunk j of a host slot, read as v, into the VRAM slot at dst: as it
// is for a plain slot and for the header, but a stamped payload chunk
// gives its 12 payload bytes alone, so the VRAM ring holds the payload
// contiguous, as handlers expect.
__device__ inline void put_chunk(const kargs &a, uint8_t *vslot, uint32_t j,
				 uint4 v)
{
	if (!a.stamped || j < 2) {
		*(uint4 *)(vslot + (size_t)j * 16) = v;
		return;
	}
	uint32_t *d = (uint32_t *)(vslot + IPC_MSG_HDR_BYTES +
				   (size_t)(j - 2) * IPC_STAMP_DATA);
	d[0] = v.x;
	d[1] = v.y;
	d[2] = v.z;
}

// Step 2: copy the slots of tickets from + list[i] (i < n) from host
// memory to the VRAM ring, 16-byte chunks: header and payload where the
// flag is COPY_ALL, the header alone where it is COPY_HDR (a GPU producer
// already put the payload in the VRAM ring), nothing where it is 0.  All
// nthreads threads take part; loads are issued UNROLL at a time so that
// many PCIe reads are in flight per thread.  __ldcv: the slot's bytes
// change every lap, so no cached copy may be used.
template <int UNROLL>
__device__ inline void copy_in(const kargs &a, uint32_t ring, uint64_t from,
			       const uint16_t *list, uint32_t n,
			       const uint8_t *flag, uint32_t tid,
			       uint32_t nthreads)
{
	const uint32_t per = slot_chunks(a);
	const uint32_t total = n * per;
	for (uint32_t base = tid; base < total; base += nthreads * UNROLL) {
		uint4 v[UNROLL];
		size_t off[UNROLL];
		uint32_t jj[UNROLL];
		bool ok[UNROLL];
#pragma unroll
		for (int u = 0; u < UNROLL; u++) {
			uint32_t c = base + u * nthreads;
			uint32_t i = c / per;
			uint32_t k = c < total ? list[i] : 0;
			uint32_t j = c - i * per;
			ok[u] = c < total &&
				(flag[k] == COPY_ALL ||
				 (flag[k] == COPY_HDR && j < IPC_MSG_HDR_BYTES / 16));
			off[u] = slot_index(a, ring, from + k) * a.slot_stride;
			jj[u] = j;
			if (ok[u])
				v[u] = __ldcv((const uint4 *)(a.slots + off[u] +
							     (size_t)j * 16));
		}
#pragma unroll
		for (int u = 0; u < UNROLL; u++)
			if (ok[u])
				put_chunk(a, a.vram + off[u], jj[u], v[u]);
	}
}

// Chunk j of message id's completion entry in the stamped format (ipc/cq.h),
// from its staged entry src: done in chunk 0, the stamp in chunk 1, then
// 12 result bytes and the stamp a chunk.
__device__ inline uint4 stamped_cq_chunk(const uint4 *src, uint32_t j,
					 uint64_t id)
{
	if (j == 0) {
		uint4 v = src[0];
		v.x = (uint32_t)(id + 1);
		v.y = (uint32_t)((id + 1) >> 32);
		return v;
	}
	if (j == 1) {
		uint4 v = src[1];
		v.w = ipc_stamp(id);
		return v;
	}
	const uint32_t *w = (const uint32_t *)(src + 2) + 3 * (j - 2);
	return make_uint4(w[0], w[1], w[2], ipc_stamp(id));
}

// Chunks of a completion entry of bytes staged bytes (header and result)
// in the producer's area.
__device__ inline uint32_t cq_chunks(const kargs &a, uint32_t bytes)
{
	return a.cq_stamped ? stamped_chunks(bytes - IPC_CQ_HDR_BYTES)
			    : (bytes + 15) / 16;
}

// Chunk j of message m's stamped entry, staged at src, to its producer's
// completion area.  Written through the L2 (st.global.wt), as the FREE
// state (release_ticket): the frontier's fence at the round's end then has
// less to wait for, and a lone message's round trip was 0.1-0.2 us shorter
// (benchmarking.md §8.5).
__device__ inline void put_stamped_cq_chunk(const kargs &a,
					    const struct ipc_msg_hdr *m,
					    const uint4 *src, uint32_t j)
{
	__stwt((uint4 *)cq_entry(a, m) + j, stamped_cq_chunk(src, j, m->id));
}

// Step 4: copy the completion entries built in step 3 (bytes[k] of ticket
// from + k, for k = list[i], i < n; 0 for none) to the producers'
// completion areas.  A plain entry's first chunk skips the DONE word,
// which is written last, after the fence; a stamped entry is written whole
// here, DONE and all, and needs no fence.
__device__ inline void copy_out(const kargs &a, uint32_t ring, uint64_t from,
				const uint16_t *list, uint32_t n,
				const uint32_t *bytes, uint32_t tid,
				uint32_t nthreads)
{
	// Chunks of the largest entry: a result of result_bytes.
	const uint32_t per = cq_chunks(a, IPC_CQ_HDR_BYTES + a.result_bytes);
	const uint32_t total = n * per;
	for (uint32_t c = tid; c < total; c += nthreads) {
		uint32_t i = c / per, j = c - i * per, k = list[i];
		if (!bytes[k] || j >= cq_chunks(a, bytes[k]))
			continue;
		size_t si = slot_index(a, ring, from + k);
		const struct ipc_msg_hdr *m = (const struct ipc_msg_hdr *)(
			a.vram + si * a.slot_stride);
		const uint4 *src = (const uint4 *)(a.stage + si * a.stage_stride);
		uint4 *dst = (uint4 *)cq_entry(a, m);
		if (a.cq_stamped) {
			put_stamped_cq_chunk(a, m, src, j);
		} else if (j == 0) {
			uint4 v = src[0];
			((uint2 *)dst)[1] = make_uint2(v.z, v.w);
		} else {
			dst[j] = src[j];
		}
	}
}

// The last step for ticket from + k once its entry is visible: the DONE
// mark (if a completion is wanted and the entry is plain), then the slot
// back to its producer.
__device__ inline void release_ticket(const kargs &a, uint32_t ring,
				      uint64_t t, uint32_t bytes)
{
	size_t si = slot_index(a, ring, t);
	if (bytes && !a.cq_stamped) {
		const struct ipc_msg_hdr *m =
			(const struct ipc_msg_hdr *)(a.vram + si * a.slot_stride);
		*(volatile uint64_t *)&cq_entry(a, m)->done = m->id + 1;
	}
	// Written through, see copy_out.  Nothing orders it against the done
	// word above: FREE lets a producer reuse the slot, whose bytes the
	// copy-in took long before, and says nothing about the result.
	__stwt((unsigned long long *)&a.states[si],
	       (unsigned long long)IPC_STATE(t + a.capacity, IPC_FREE));
}

// Thread 0 publishes a worker's counters: totals of finished windows plus
// what the current one has done so far, so stats never wait for a window to
// fill (one held-back ticket would otherwise freeze them).  No fence: they
// are statistics, read relaxed, and nothing is ordered by them (each dead
// letter has its own seq word; the frontier, me->cur, is a release store).
// A fence here held up the block's next look by a PCIe trip: a lone
// message's round trip was 1 to 1.5 us longer with it.
__device__ inline void publish_counters(struct ipc_worker *me,
					const struct counts &tot,
					const struct counts &now,
					unsigned long long dlq_next)
{
	me->completed = (uint64_t)tot.done + now.done - now.skip;
	me->dead_lettered = (uint64_t)tot.dead + now.dead;
	me->skipped = (uint64_t)tot.skip + now.skip;
	me->retried = (uint64_t)tot.retried + now.retried;
	me->garbled = (uint64_t)tot.garbled + now.garbled;
	me->dlq_head = dlq_next;
}

__device__ inline void add_counts(struct counts *tot, const struct counts &c)
{
	tot->skip += c.skip;
	tot->done += c.done - c.skip;
	tot->dead += c.dead;
	tot->retried += c.retried;
	tot->garbled += c.garbled;
}

__device__ inline struct counts read_counts(struct counts *c)
{
	struct counts r;
	r.done = atomicAdd(&c->done, 0);
	r.dead = atomicAdd(&c->dead, 0);
	r.skip = atomicAdd(&c->skip, 0);
	r.retried = atomicAdd(&c->retried, 0);
	r.garbled = atomicAdd(&c->garbled, 0);
	return r;
}

// Is ticket t published?  Only tickets below the head are read, so an idle
// window costs no PCIe traffic at all; but while eager (a message went
// through recently) the first EAGER_AHEAD tickets past the head are read
// too.  That takes the head's trip through the pump (a PCIe read of the
// head, then the VRAM mirror) and the separate look after it off a lone
// message's round trip: its state word is seen READY directly.  A state
// word is only ever READY for its own ticket once published, so reading
// it early is safe; it costs one small read a round, for a short while.
enum look { LOOK_WAIT, LOOK_READY, LOOK_READY_VRAM, LOOK_SKIP, LOOK_END };

// Does a look at head word h read ticket t's state word?
__device__ inline bool looks_at(uint64_t t, uint64_t h, bool eager)
{
	uint64_t hn = h & ~IPC_HEAD_CLOSED;
	return t < hn || (eager && !(h & IPC_HEAD_CLOSED) &&
			  t - hn < EAGER_AHEAD);
}

__device__ inline enum look look_ticket(const kargs &a, uint32_t ring,
					uint64_t t, uint64_t h, bool stop,
					bool eager)
{
	if (looks_at(t, h, eager)) {
		uint64_t s = load_acq(&a.states[slot_index(a, ring, t)]);
		if (s == IPC_STATE(t, IPC_READY))
			return LOOK_READY;
		if (s == IPC_STATE(t, IPC_READY_VRAM))
			return LOOK_READY_VRAM;
		if (s == IPC_STATE(t, IPC_SKIP))
			return LOOK_SKIP;
	} else if (h & IPC_HEAD_CLOSED) {
		return LOOK_END; // intake closed below this ticket
	}
	return stop ? LOOK_END : LOOK_WAIT; // stop: forced, after a drain timeout
}

// The pump: one thread mirroring the host's head and stop words into VRAM,
// until stopped or every worker block has returned.
__device__ inline void pump(const kargs &a)
{
	volatile struct gpuq_dctl *d = a.dctl;
	uint64_t shown = 0, pshown = 0;
	unsigned sleep = 0;
	for (;;) {
		// The pause word first: the head's acquire load would hold it
		// back a trip.  PAUSE_MIRRORED marks the mirror as read once.
		uint64_t pw = *(volatile uint64_t *)a.pause | PAUSE_MIRRORED;
		uint64_t h = load_acq(&a.ctl[0].head);
		uint32_t stop = host_stop(a);
		if (pw != pshown) {
			d->pause = pshown = pw;
			__threadfence();
		}
		if (h != shown) {
			d->head = shown = h;
			__threadfence();
			sleep = 0;
		}
		if (stop) {
			d->stop = 1;
			__threadfence();
			return;
		}
		if (d->exited == a.nworkers)
			return;
		__nanosleep(sleep = backoff(sleep, PUMP_SLEEP_NS));
	}
}

// Per-block shared state of the windowed kernel.
struct wshared {
	struct counts c;
	unsigned long long head, low, dlq;
	unsigned long long pw;        // the pause word this round started with
	unsigned long long spec_t;    // ticket read ahead, or NO_TICKET
	unsigned spec_bad, spec_len;  // its first stale chunk; its length
	int spec_hit;                 // its owner found it READY and whole
	int probe;                    // this round probes spec_t (probe_next)
	int probe_hit;                // and found it READY and whole
	uint4 spec_buf[SPEC_MAX_CHUNKS]; // its slot as read
	uint4 fast_slot[FAST_SLOT_CHUNKS];   // a probe's message, unstamped
	uint4 fast_stage[FAST_STAGE_CHUNKS]; // and its completion entry
	int lone, lone_out;           // lone_ticket ran, and its outcome
	long long lone_cycles;        // and how long (GPUQ_CUDA_PROFILE)
	int stop, paused, eager;
	unsigned ntake;               // tickets taken this round
	uint16_t list[MAX_WINDOW];    // their offsets in the window
	uint8_t flag[MAX_WINDOW];     // COPY_* for step 2, or KEEP_STOPPED
	uint32_t bytes[MAX_WINDOW];   // completion bytes to copy this round
	unsigned long long prof[GPUQ_PROF_N]; // GPUQ_CUDA_PROFILE, thread 0's
};

// Step 3's bookkeeping for ticket ws + k of the window: its outcome in the
// block's counters, and the completion bytes step 4 copies (nb).
__device__ inline void note_outcome(struct wshared &s, uint32_t k,
				    enum outcome o, uint32_t nb, bool *end)
{
	if (o == OUT_STOPPED) {
		s.flag[k] = KEEP_STOPPED; // the kernel is stopping
		*end = true;
	} else if (o == OUT_DEAD) {
		atomicAdd(&s.c.dead, 1);
	} else if (o == OUT_GARBLED) {
		atomicAdd(&s.c.garbled, 1);
	}
	s.bytes[k] = nb;
}

// Step 3 of the kv kernel: warp w of the block takes the published
// tickets listed at w, w + warps, ...; each of its lanes then answers
// some of a message's operations (gpu/kv_warp.cuh).
__device__ inline void kv_round(const kargs &a, struct wshared &s,
				uint32_t worker, uint64_t ws, uint32_t ntake,
				bool *end)
{
	const uint32_t warp = threadIdx.x / 32, warps = blockDim.x / 32;
	for (uint32_t i = warp; i < ntake; i += warps) {
		uint32_t k = s.list[i], nb;
		if (s.flag[k] == COPY_NONE)
			continue; // skipped: counted by its own thread
		enum outcome o = run_ticket_kv(a, worker, ws + k, &s.dlq,
					       &s.c.retried, &nb);
		if (threadIdx.x % 32 == 0)
			note_outcome(s, k, o, nb, end);
	}
}

// Lanes of the last warp of a block of nthreads threads, the one that
// reads ahead: fewer than 32 where the window is not a multiple of 32 (a
// small ring's), and every chunk must have a lane.
__device__ inline uint32_t spec_lanes(uint32_t nthreads)
{
	return nthreads - (nthreads - 1) / 32 * 32;
}

// Stamped queues (ipc/stamp.h): the last warp of the block reads the
// whole slot of ticket s.spec_t (the window's lowest unfinished one, which
// a lone producer's next message takes) while the block looks at the
// state words, so a message is in hand one PCIe trip after it was
// published, not two.  The chunks wait in shared memory: the ticket's
// VRAM slot may still hold ticket t - capacity, in flight in another
// block, until the ticket is known published (spec_put).  s.spec_bad gets
// the first chunk not stamped for the ticket and s.spec_len the header's
// length.  Whether the read counts is up to spec_hit, once the ticket's
// state word has been seen READY.  One read a round; a block that waits
// for a lone producer's next message probes instead (probe_next).
__device__ inline void spec_read(const kargs &a, struct wshared &s,
				 uint32_t nthreads)
{
	const uint32_t n = slot_chunks(a), lane = threadIdx.x % 32;
	const uint32_t lanes = spec_lanes(nthreads);
	const uint64_t st = s.spec_t;
	if (st == NO_TICKET || threadIdx.x / 32 != (nthreads - 1) / 32)
		return;
	const size_t off = slot_index(a, 0, st) * a.slot_stride;
	const uint32_t stamp = ipc_stamp(st);
	uint4 v[SPEC_PER_LANE];
#pragma unroll
	for (uint32_t u = 0; u < SPEC_PER_LANE; u++)
		if (lane + lanes * u < n)
			v[u] = __ldcv((const uint4 *)(a.slots + off) + lane +
				      lanes * u);
#pragma unroll
	for (uint32_t u = 0; u < SPEC_PER_LANE; u++) {
		uint32_t j = lane + lanes * u;
		if (j >= n)
			continue;
		if (v[u].w != stamp)
			atomicMin(&s.spec_bad, j);
		if (j == 0)
			s.spec_len = v[u].z;
		s.spec_buf[j] = v[u];
	}
}

// A read-ahead that hit goes to its VRAM slot, all threads together.
__device__ inline void spec_put(const kargs &a, const struct wshared &s,
				uint32_t tid, uint32_t nthreads)
{
	const uint32_t n = slot_chunks(a);
	uint8_t *vslot = a.vram + slot_index(a, 0, s.spec_t) * a.slot_stride;
	for (uint32_t j = tid; j < n; j += nthreads)
		put_chunk(a, vslot, j, s.spec_buf[j]);
}

// Did the read-ahead get ticket t whole?  Only for the thread whose ticket
// it is, after its state word said READY: the header and every chunk of
// its length carry t's stamp, so those bytes are t's whatever order the
// loads were served in.  A length out of range is left to the copy (and
// to open_ticket, which calls it garbled).
__device__ inline bool spec_hit(const kargs &a, const struct wshared &s,
				uint64_t t)
{
	return t == s.spec_t && s.spec_len <= a.slot_bytes &&
	       s.spec_bad >= stamped_chunks(s.spec_len);
}

// One probe of ticket st: its state word (lane 0, in st0) and chunk `lane`
// of its slot (lanes below n), relaxed: the stamps, not the order of the
// loads, say whether the bytes are st's.
__device__ inline void probe_load(const kargs &a, uint64_t st, uint32_t n,
				  uint32_t lane, uint4 *v, uint64_t *st0)
{
	const size_t si = slot_index(a, 0, st);
	if (lane < n)
		*v = __ldcv((const uint4 *)(a.slots + si * a.slot_stride) + lane);
	if (lane == 0)
		*st0 = __ldcv((const unsigned long long *)&a.states[si]);
}

// What probe (v, st0) says of ticket st: PROBE_HIT when it is READY and
// whole, PROBE_OTHER when it was published otherwise (READY_VRAM, SKIP:
// the look takes those), else PROBE_NOT_YET.  Every lane of the probing
// warp (mask) calls it.  The length comes from chunk 0 (lane 0); chunks
// past it need no stamp.  A length out of range is never whole (the look
// and the copy then deal with it, and open_ticket calls it garbled).
enum probe { PROBE_NOT_YET, PROBE_HIT, PROBE_OTHER };
__device__ inline enum probe probe_says(const kargs &a, uint64_t st,
					uint32_t n, uint32_t lane,
					uint32_t mask, uint4 v, uint64_t st0)
{
	const uint32_t len = __shfl_sync(mask, v.z, 0);
	const uint64_t state = __shfl_sync(mask, st0, 0);
	const bool mine = lane >= n || lane >= stamped_chunks(len) ||
			  v.w == ipc_stamp(st);
	const bool whole = __all_sync(mask, mine) && len <= a.slot_bytes;
	if (state == IPC_STATE(st, IPC_READY))
		return whole ? PROBE_HIT : PROBE_NOT_YET;
	return state == IPC_STATE(st, IPC_READY_VRAM) ||
			       state == IPC_STATE(st, IPC_SKIP)
		       ? PROBE_OTHER
		       : PROBE_NOT_YET;
}

// Should a probe loop end without its ticket?  When the pump shows a
// reservation past it (more than a lone producer's message: the round's
// looks take those), intake closed, the kernel stopping or a new pause
// word (to be confirmed at the top of a round).
__device__ inline bool probe_leave(const kargs &a, uint64_t st, uint64_t pw)
{
	volatile struct gpuq_dctl *d = a.dctl;
	uint64_t h = d->head;
	return (h & IPC_HEAD_CLOSED) || (h & ~IPC_HEAD_CLOSED) > st + 1 ||
	       d->stop || d->pause != pw;
}

// A lone producer's next message: the last warp probes ticket s.spec_t
// (its state word and whole slot, relaxed loads), meaning to keep two
// probes in flight PROBE_GAP_NS apart (as compiled, the loop copies the
// last probe's registers before it issues the next, which waits for that
// probe; unrolled, it made the round trip longer, not shorter, and 1500
// ns between probes did nothing: benchmarking.md §8.5),
// until one finds it READY and whole or
// probe_leave says stop, at most PROBE_MAX probes.  A hit goes to
// s.spec_buf as a read-ahead does, and the block takes it at once, with
// no look (which would cost it another PCIe trip).  A message that comes
// while the block waits is seen by the next probe to reach it, not by the
// next round's look; that shortens the round trip's tail, not its median
// (design.md §10).  The loads are relaxed on purpose: an acquire load
// holds back every load after it, so acquire probes would not overlap
// (gpuq-bench floor: acquire probes 0.5-1 us slower, benchmarking.md
// §8.4).
__device__ inline void probe_next(const kargs &a, struct wshared &s,
				  uint32_t nthreads)
{
	const uint64_t pw = s.pw;
	const uint32_t n = slot_chunks(a), lane = threadIdx.x % 32;
	const uint32_t lanes = spec_lanes(nthreads);
	const uint32_t mask = lanes >= 32 ? ~0u : (1u << lanes) - 1;
	const uint64_t st = s.spec_t;
	if (threadIdx.x / 32 != (nthreads - 1) / 32)
		return;
	uint4 va = make_uint4(0, 0, 0, 0), vb = va, v = va;
	uint64_t sa = 0, sb = 0;
	enum probe p = PROBE_NOT_YET;
	probe_load(a, st, n, lane, &va, &sa);
	__nanosleep(PROBE_GAP_NS);
	for (uint32_t k = 0; k < PROBE_MAX; k += 2) {
		probe_load(a, st, n, lane, &vb, &sb);
		if ((p = probe_says(a, st, n, lane, mask, va, sa))) {
			v = va;
			break;
		}
		__nanosleep(PROBE_GAP_NS);
		probe_load(a, st, n, lane, &va, &sa);
		if ((p = probe_says(a, st, n, lane, mask, vb, sb))) {
			v = vb;
			break;
		}
		if (probe_leave(a, st, pw))
			break;
		__nanosleep(PROBE_GAP_NS);
	}
	const bool hit = p == PROBE_HIT;
	if (lane < n)
		s.spec_buf[lane] = v;
	if (lane == 0) {
		s.spec_len = v.z;
		s.spec_bad = hit ? ~0u : 0; // a miss is never used
		s.probe_hit = hit;
	}
}

// Profiling (GPUQ_CUDA_PROFILE): thread 0 adds the cycles since *c0 to
// counter i, in shared memory (s.prof), which prof_flush copies to VRAM
// at each window's end.  The counters were in VRAM once: each update read
// VRAM in the middle of the round (a few hundred ns), which the next step
// was charged for, or held up.
__device__ inline void prof_lap(unsigned long long *prof, int i, long long *c0)
{
	if (!prof)
		return;
	long long c = clock64();
	prof[i] += (unsigned long long)(c - *c0);
	*c0 = clock64();
}

// Thread 0: the block's profile counters, totals so far, to a.prof (stores
// only, once a window).
__device__ inline void prof_flush(const kargs &a, const struct wshared &s,
				  uint32_t worker)
{
	if (!a.prof)
		return;
	unsigned long long *p = a.prof + (size_t)worker * GPUQ_PROF_N;
	for (int i = 0; i < GPUQ_PROF_N; i++)
		p[i] = s.prof[i];
}

// A lone message that a probe took, run by the probing warp alone from
// shared memory (design.md §10, step 5a): the probe's copy goes without
// its stamps to s.fast_slot, lane 0 runs the ticket (handler, retries,
// dead letter) and builds the entry in s.fast_stage, the warp copies the
// entry out, and lane 0 counts the ticket and gives the slot back.  The
// rest of the round is skipped: for one ticket, its barriers and its
// loops over the window cost more than the work (benchmarking.md §8.6).
template <bool TABLES>
__device__ inline void lone_ticket(const kargs &a, struct wshared &s,
				   uint32_t worker)
{
	const uint32_t lane = threadIdx.x % 32;
	const uint64_t t = s.spec_t;
	const long long c0 = a.prof ? clock64() : 0;
	if (lane < slot_chunks(a))
		put_chunk(a, (uint8_t *)s.fast_slot, lane, s.spec_buf[lane]);
	__syncwarp();
	uint32_t nb = 0;
	enum outcome o = OUT_RESULT;
	if (lane == 0)
		o = run_ticket<TABLES>(a, worker, 0, t, &s.dlq, &s.c.retried,
				       0, &nb, s.fast_slot, s.fast_stage);
	__syncwarp(); // orders lane 0's entry in s.fast_stage before the copy
	nb = __shfl_sync(FULL_WARP, nb, 0);
	o = (enum outcome)__shfl_sync(FULL_WARP, (int)o, 0);
	// The entry, restamped (copy_out's stamped case, for one entry whose
	// size the warp knows: copy_out's walk of a round's list cost this
	// path 0.35 us, benchmarking.md §8.6).
	const struct ipc_msg_hdr *m = (const struct ipc_msg_hdr *)s.fast_slot;
	const uint32_t nc = nb ? cq_chunks(a, nb) : 0;
	for (uint32_t j = lane; j < nc; j += 32)
		put_stamped_cq_chunk(a, m, s.fast_stage, j);
	if (lane != 0)
		return;
	// Counted before the release, as in window_round; the outcome's own
	// counts are the ticket's thread's, after the barrier (note_outcome).
	atomicAdd(&s.c.done, 1u);
	if (o != OUT_STOPPED)
		release_ticket(a, 0, t, nb);
	s.lone_out = o;
	s.lone = 1;
	if (a.prof)
		s.lone_cycles = clock64() - c0;
}

// One round of a window: steps 1-4 for every thread's ticket.  Returns this
// thread's look; *took says whether it finished its ticket this round.
// KV: the kv kernel (gpuq_consume_windowed_kv, gpuqd's own), whose step 3
// runs messages a warp each (kv_round) and has no thread-per-message path.
template <bool TABLES, bool KV>
__device__ inline enum look window_round(const kargs &a, struct wshared &s,
					 uint32_t worker, uint64_t ws, uint64_t t,
					 bool finished, bool *took, bool *end)
{
	const uint32_t tid = threadIdx.x, W = blockDim.x;
	unsigned long long *prof = a.prof && tid == 0 ? s.prof : NULL;
	long long c0 = prof ? clock64() : 0;
	// The read-ahead's loads go first: the look's acquire load would hold
	// back any load after it until it returns.  A probing round probes
	// first; the block looks only if the probe missed.
	if (!KV && s.probe) {
		probe_next(a, s, W);
		// A hit with a stamped result that fits: the probing warp runs
		// it alone, and the others only wait for it.
		if (!TABLES && a.cq_stamped && a.result_bytes <= FAST_RESULT_MAX &&
		    tid / 32 == (W - 1) / 32) {
			__syncwarp();
			if (s.probe_hit)
				lone_ticket<TABLES>(a, s, worker);
		}
		__syncthreads();
		if (s.lone) {
			const bool mine = t == s.spec_t;
			*took = mine;
			if (mine) // its counts, and *end if the kernel is stopping
				note_outcome(s, tid, (enum outcome)s.lone_out, 0,
					     end);
			if (prof) {
				prof_lap(prof, GPUQ_PROF_LOOK, &c0);
				prof[GPUQ_PROF_LOOK] -= s.lone_cycles;
				prof[GPUQ_PROF_HANDLER] += s.lone_cycles;
				prof[GPUQ_PROF_WORK_ROUNDS]++;
				prof[GPUQ_PROF_TICKETS]++;
				prof[GPUQ_PROF_SPEC_HITS]++;
			}
			return mine ? LOOK_READY : LOOK_WAIT;
		}
	} else if (!KV) {
		spec_read(a, s, W);
	}
	// After a hit the others do not look either: their looks would hold
	// the hit back a PCIe trip, and the next round looks anyway.
	enum look l = finished	      ? LOOK_WAIT
		      : !s.probe_hit ? look_ticket(a, 0, t, s.head, s.stop,
						   s.eager)
		      : t == s.spec_t ? LOOK_READY
				      : LOOK_WAIT;
	bool published = l == LOOK_READY || l == LOOK_READY_VRAM;
	bool ready = published || l == LOOK_SKIP;
	bool any = __syncthreads_or(ready);
	*took = false;
	if (!any) {
		if (prof)
			prof[GPUQ_PROF_IDLE_ROUNDS]++;
		return l;
	}
	prof_lap(prof, GPUQ_PROF_LOOK, &c0);
	// The published tickets, listed, so the copies loop over them alone
	// rather than over the whole window.
	s.flag[tid] = l == LOOK_READY ? COPY_ALL
				      : l == LOOK_READY_VRAM ? COPY_HDR : COPY_NONE;
	if (l == LOOK_READY && spec_hit(a, s, t)) {
		s.flag[tid] = COPY_HAVE;
		s.spec_hit = 1;
	}
	s.bytes[tid] = 0;
	if (ready)
		s.list[atomicAdd(&s.ntake, 1u)] = (uint16_t)tid;
	__syncthreads();
	const uint32_t ntake = s.ntake;
	if (s.spec_hit)
		spec_put(a, s, tid, W);
	copy_in<4>(a, 0, ws, s.list, ntake, s.flag, tid, W);
	__syncthreads();
	prof_lap(prof, GPUQ_PROF_COPY_IN, &c0);
	// Every published or skipped ticket is taken this round.
	if (KV) {
		if (ready && !published)
			atomicAdd(&s.c.skip, 1);
		kv_round(a, s, worker, ws, ntake, end);
	} else if (published) {
		uint32_t nb;
		enum outcome o = run_ticket<TABLES>(a, worker, 0, t, &s.dlq,
					    &s.c.retried, 0, &nb);
		note_outcome(s, tid, o, nb, end);
	} else if (ready) {
		atomicAdd(&s.c.skip, 1);
	}
	__syncthreads();
	prof_lap(prof, GPUQ_PROF_HANDLER, &c0);
	copy_out(a, 0, ws, s.list, ntake, s.bytes, tid, W);
	__syncthreads();
	prof_lap(prof, GPUQ_PROF_COPY_OUT, &c0);
	// One warp fences (a system fence per warp of the block cost ~10 us a
	// round) and then releases every ticket: the fence orders the whole
	// block's entry writes, which the barrier put before it, ahead of the
	// DONE marks.  Stamped entries prove themselves and skip it.
	if (tid < 32) {
		if (!a.cq_stamped)
			__threadfence_system();
		prof_lap(prof, GPUQ_PROF_FENCE, &c0); // thread 0 only
		if (tid == 0)
			atomicAdd(&s.c.done, ntake); // counted before release
		__syncwarp();
		for (uint32_t i = tid; i < ntake; i += 32) {
			uint32_t k = s.list[i];
			if (s.flag[k] != KEEP_STOPPED)
				release_ticket(a, 0, ws + k, s.bytes[k]);
		}
	}
	// A ticket given up because the kernel is stopping counts as done for
	// this block (it is not released; the drain has timed out).
	if (ready)
		*took = true;
	if (prof) {
		// Counted after the last lap: each is a VRAM read and write.
		prof_lap(prof, GPUQ_PROF_RELEASE, &c0);
		prof[GPUQ_PROF_WORK_ROUNDS]++;
		prof[GPUQ_PROF_TICKETS] += ntake;
		prof[GPUQ_PROF_SPEC_HITS] += s.spec_hit;
	}
	return l;
}

// Confirm pause generation gen to the broker (ipc_worker.pause_ack), once.
__device__ inline void ack_pause(struct ipc_worker *me, uint64_t gen,
				 uint64_t *acked)
{
	if (gen != *acked) {
		*acked = gen;
		*(volatile uint64_t *)&me->pause_ack = gen;
	}
}

// Is the queue paused for this block's next round?  From the pump's
// mirror, in VRAM.  A block that sees a new pause confirms it to the
// broker (ipc_worker.pause_ack): every look of its earlier rounds has
// returned by then, and it takes nothing until resumed, so once every
// block has confirmed, no message published later runs.  Until the pump
// has mirrored the word once, a block waits (and confirms nothing).
__device__ inline int paused_now(const kargs &a, struct ipc_worker *me,
				 uint64_t pw, int stop, uint64_t *acked)
{
	if (stop)
		return 0; // stopping: drain whatever is published
	if (!(pw & PAUSE_MIRRORED))
		return 1;
	if (!(pw & PAUSE_ON))
		return 0;
	ack_pause(me, pw >> 32, acked);
	return 1;
}

// Unordered queue: block 0 is the pump (first, so that it is resident
// before any worker waits on it), and keeps the tables; block 1 + w is
// worker w of G, which takes windows w, w + G, w + 2G, ...
template <bool TABLES, bool KV = false>
__device__ inline void consume_windowed(const kargs &a)
{
	__shared__ struct wshared s;
	gpuq_handlers_block_init();
	if (blockIdx.x == 0) {
		// Its warps past the pump's keep the tables (at least one:
		// gpuqd launches 64 threads or more where there are tables).
		if (threadIdx.x == 0)
			pump(a);
		else if (TABLES && a.maint && threadIdx.x >= 32)
			maint(a, 32, blockDim.x - 32);
		return;
	}
	// W tickets a window: one a thread, or in the kv kernel one a warp
	// (the threads past W own none).
	const uint32_t tid = threadIdx.x, W = a.window, worker = blockIdx.x - 1;
	struct ipc_worker *me = &a.workers[worker];
	struct counts tot = { 0, 0, 0, 0, 0 }, zero = { 0, 0, 0, 0, 0 };
	uint64_t cur_shown = 0, acked = me->pause_ack;
	unsigned shown = 0, quiet = EAGER_ROUNDS;
	// Read ahead only what one warp can: stamped slots of up to
	// SPEC_PER_LANE chunks a lane of it, and not in the kv kernel (big
	// messages).
	const bool spec = a.stamped && !KV &&
			  slot_chunks(a) <= SPEC_PER_LANE * spec_lanes(blockDim.x);
	// Probe (probe_next) slots of one chunk a lane of that warp.
	const bool may_probe = spec && slot_chunks(a) <= spec_lanes(blockDim.x);
	if (tid == 0) {
		s.dlq = me->dlq_head;
		for (int i = 0; i < GPUQ_PROF_N; i++)
			s.prof[i] = 0;
	}
	for (uint64_t win = worker;; win += a.nworkers) {
		uint64_t ws = win * W, t = ws + tid;
		unsigned sleep = 0;
		uint64_t last_reserved = 0;
		bool finished = tid >= W, end = false;
		uint64_t next = ws; // lowest unfinished ticket of the window
		if (tid == 0) {
			s.c = zero;
			shown = 0;
		}
		for (;;) {
			if (tid == 0) {
				volatile struct gpuq_dctl *d = a.dctl;
				s.head = d->head;
				s.stop = d->stop;
				s.pw = d->pause;
				s.paused = paused_now(a, me, s.pw, s.stop,
						      &acked);
				s.low = ~0ull;
				s.ntake = 0;
				s.eager = quiet < EAGER_ROUNDS;
				// Read ahead the slot this round's look reads.
				s.spec_t = spec && looks_at(next, s.head, s.eager)
						   ? next : NO_TICKET;
				s.spec_bad = ~0u;
				s.spec_len = 0;
				s.spec_hit = 0;
				// Probe while a lone producer's next message
				// is all this window waits for: the lowest
				// unfinished ticket is at most just reserved.
				uint64_t hn = s.head & ~IPC_HEAD_CLOSED;
				s.probe = may_probe && s.spec_t != NO_TICKET &&
					  quiet < PROBE_ROUNDS && !s.stop &&
					  !(s.head & IPC_HEAD_CLOSED) &&
					  next + 1 >= hn;
				s.probe_hit = 0;
				s.lone = 0;
			}
			__syncthreads();
			// The round's head, for the wait below: thread 0
			// rewrites s.head at the top of the next round while
			// other warps may still be at the bottom of this one.
			const uint64_t head = s.head;
			if (s.paused) {
				// Everyone has read s.paused before thread 0
				// may write the next round's.
				if (tid == 0)
					__nanosleep(PAUSED_SLEEP_NS);
				__syncthreads();
				continue;
			}
			bool took;
			enum look l = window_round<TABLES, KV>(
				a, s, worker, ws, t, finished, &took, &end);
			if (l == LOOK_END)
				finished = end = true;
			finished |= took;
			if (!finished)
				atomicMin(&s.low, (unsigned long long)t);
			bool all = __syncthreads_and(finished);
			bool progressed = __syncthreads_or(took);
			if (tid == 0) {
				long long c0 = a.prof ? clock64() : 0;
				// Publish what changed: counters so far, and the
				// lowest ticket this block has not finished (the
				// broker's consumed frontier).
				struct counts now = read_counts(&s.c);
				if (now.done != shown) {
					publish_counters(me, tot, now, s.dlq);
					shown = now.done;
				}
				// Here, not beside the next look: the release
				// store's fence held up other warps' reads too
				// (design.md §10, "Tried and not kept").
				if (!all && s.low != cur_shown) {
					store_rel(&me->cur, s.low);
					cur_shown = s.low;
				}
				next = s.low;
				if (a.prof && progressed)
					prof_lap(s.prof, GPUQ_PROF_PUBLISH, &c0);
			}
			if (all)
				break;
			// How long until the next look.  Rounds that find
			// nothing are what loads the link: each re-reads the
			// state words of reserved tickets still being written.
			// So poll fast only right after new reservations
			// reach this window (they are published within a
			// microsecond or two), back off on the rest, and poll
			// device memory alone while nothing here is reserved.
			uint64_t hn = head & ~IPC_HEAD_CLOSED;
			uint64_t reserved = hn < ws ? 0 : min(hn - ws, (uint64_t)W);
			if (tid == 0)
				quiet = progressed ? 0 : min(quiet + 1, EAGER_ROUNDS);
			if (progressed) {
				sleep = 0;
			} else if (reserved == 0) {
				sleep = ws <= hn + W ? POLL_SLEEP_NS : FAR_SLEEP_NS;
			} else if (reserved != last_reserved) {
				sleep = POLL_SLEEP_NS;
			} else {
				sleep = backoff(sleep, WAIT_SLEEP_NS);
			}
			last_reserved = reserved;
			if (sleep && tid == 0)
				__nanosleep(sleep);
		}
		bool any_end = __syncthreads_or(end);
		if (tid == 0) {
			prof_flush(a, s, worker);
			add_counts(&tot, s.c);
			publish_counters(me, tot, zero, s.dlq);
			cur_shown = any_end ? UINT64_MAX : (win + a.nworkers) * W;
			store_rel(&me->cur, cur_shown);
			if (any_end)
				atomicAdd(&a.dctl->exited, 1u);
		}
		if (any_end)
			return;
	}
}

// Ordered queue: block b is the only consumer of ring b and walks it one
// ticket at a time, so messages with one key complete in enqueue order.
template <bool TABLES>
__device__ inline void consume_ordered(const kargs &a)
{
	// Shared, not local: the counters are atomics.
	__shared__ struct counts c;
	__shared__ unsigned long long dlq;
	uint32_t ring = blockIdx.x;
	gpuq_handlers_block_init(); // by every thread: it strides by them
	// Block nworkers, launched where there are tables, keeps them; a
	// worker block's thread 0 walks its ring and the others have nothing
	// to do.
	if (ring == a.nworkers) {
		if (TABLES && a.maint)
			maint(a, 0, blockDim.x);
		return;
	}
	if (threadIdx.x)
		return;
	struct ipc_worker *me = &a.workers[ring];
	struct counts tot = { 0, 0, 0, 0, 0 }, zero = { 0, 0, 0, 0, 0 };
	unsigned sleep = 0;
	uint64_t acked = me->pause_ack;
	uint8_t flag;
	const uint16_t zero16 = 0;
	dlq = me->dlq_head;
	for (uint64_t t = 0;;) {
		c = zero;
		store_rel(&me->cur, t);
		bool stop = host_stop(a);
		enum look l = look_ticket(a, ring, t, load_acq(&a.ctl[ring].head),
					  stop, false);
		if (l == LOOK_END)
			break;
		// The pause word is read after the look (the acquire load
		// orders them): a message published once this worker has
		// confirmed a pause is never run.
		uint64_t pw = *(volatile uint64_t *)a.pause;
		if ((pw & PAUSE_ON) && !stop) {
			ack_pause(me, pw >> 32, &acked);
			__nanosleep(sleep = backoff(sleep, NEAR_SLEEP_NS));
			continue;
		}
		if (l == LOOK_WAIT) {
			__nanosleep(sleep = backoff(sleep, NEAR_SLEEP_NS));
			continue;
		}
		sleep = 0;
		if (l == LOOK_READY || l == LOOK_READY_VRAM) {
			uint32_t nb;
			flag = l == LOOK_READY ? COPY_ALL : COPY_HDR;
			copy_in<1>(a, ring, t, &zero16, 1, &flag, 0, 1);
			enum outcome o = run_ticket<TABLES>(a, ring, ring, t, &dlq,
						    &c.retried, tot.done, &nb);
			if (o == OUT_STOPPED)
				break;
			c.dead += o == OUT_DEAD;
			c.garbled += o == OUT_GARBLED;
			copy_out(a, ring, t, &zero16, 1, &nb, 0, 1);
			if (!a.cq_stamped)
				__threadfence_system();
			c.done = 1;
			release_ticket(a, ring, t, nb);
		} else {
			c.skip = c.done = 1;
			release_ticket(a, ring, t, 0);
		}
		add_counts(&tot, c);
		publish_counters(me, tot, zero, dlq);
		t++;
	}
	store_rel(&me->cur, UINT64_MAX);
}

} // namespace gpuq_dev

// The kernels, with C names so that gpuqd can find them in a handler
// module by name.  Each translation unit that includes this file gets its
// own copy: gpuqd's, and each user module's.  The _tables kernels serve
// queues with hash tables; their table code takes registers enough that a
// window of GPUQ_DEFAULT_WINDOW threads only fits with a bound (and spills).
// Bounded so that a block of the default window's threads always fits:
// without the bound, a change that took the kernel past 128 registers
// would only show as gpuqd refusing every default queue (check_resident).
extern "C" __global__ void __launch_bounds__(GPUQ_DEFAULT_WINDOW)
gpuq_consume_windowed(kargs a)
{
	gpuq_dev::consume_windowed<false>(a);
}

extern "C" __global__ void __launch_bounds__(gpuq_dev::TABLES_MAX_WINDOW)
gpuq_consume_windowed_tables(kargs a)
{
	gpuq_dev::consume_windowed<true>(a);
}

extern "C" __global__ void gpuq_consume_ordered(kargs a)
{
	gpuq_dev::consume_ordered<false>(a);
}

extern "C" __global__ void gpuq_consume_ordered_tables(kargs a)
{
	gpuq_dev::consume_ordered<true>(a);
}

extern "C" __device__ const uint32_t gpuq_kernel_abi = GPUQ_KERNEL_ABI;

#endif
