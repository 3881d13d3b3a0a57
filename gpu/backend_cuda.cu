// backend_cuda.cu - the CUDA backend: a persistent kernel consumes the
// queue's ring straight from the broker's pinned shared memory.
//
// Producers never touch CUDA: they write slots in host shared memory, which
// gpuqd registers as mapped pinned memory, and the kernel pulls them over
// PCIe (BRIEF: a producer's own cudaMemcpy runs at hundreds per second next
// to a persistent kernel).  Each block is one ring worker: it takes windows
// of blockDim.x tickets, striped over blocks, one ticket per thread.  Every
// shared word keeps a single writer: the kernel only writes results, DONE
// marks, FREE states and its own worker counters, always with system-scope
// release ordering, never with read-modify-write on host memory.
#include <cuda/atomic>
#include <cuda_runtime.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "config.h"
#include "broker/broker.h"
#include "libclient/gpuq.h"
}
#include "broker/handlers.h"

// Every runtime call goes through here, so a failure names the call.
#define CUDA_CALL(call)                                                      \
	({                                                                   \
		cudaError_t e_ = (call);                                     \
		if (e_ != cudaSuccess)                                       \
			blog(0, "%s:%d: %s: %s", __FILE__, __LINE__, #call,  \
			     cudaGetErrorString(e_));                        \
		e_;                                                          \
	})

#define WINDOW 256u
#define MAX_IDLE_SLEEP_NS 20000u

struct kargs {
	uint64_t *states;
	uint8_t *slots;
	uint8_t *cq;
	uint8_t *dlq;
	struct ipc_ctl *ctl;
	struct ipc_worker *workers;
	struct ipc_client *clients;
	uint32_t *paused;
	uint32_t *stop;
	uint8_t *vram;
	uint8_t *scratch;
	uint64_t mask, cq_mask, dlq_mask;
	uint32_t capacity, slot_stride, cq_stride, cq_capacity;
	uint32_t result_bytes, max_clients, slot_bytes, handler;
	uint32_t max_attempts, dlq_per_worker, dlq_stride;
	struct gpuq_fault fault;
};

struct cuda_state {
	void *dev_base;     // device view of the shared memory
	uint8_t *vram;      // the VRAM ring
	uint8_t *scratch;   // per-block room for replays' unwanted results
	uint32_t *stop;     // pinned host flag the kernel polls
	cudaStream_t stream;
	cudaIpcMemHandle_t ipc;
	int registered;
};

typedef cuda::atomic_ref<uint64_t, cuda::thread_scope_system> sys_u64;

__device__ static uint64_t load_acq(uint64_t *p)
{
	return sys_u64(*p).load(cuda::memory_order_acquire);
}

__device__ static void store_rel(uint64_t *p, uint64_t v)
{
	sys_u64(*p).store(v, cuda::memory_order_release);
}

__device__ static size_t slot_index(const kargs &a, uint32_t ring, uint64_t t)
{
	return (size_t)ring * a.capacity + (t & a.mask);
}

// Copy a message that failed every attempt into this block's dead-letter
// ring at position p (taken by the caller), waiting while the ring is full:
// a dead letter is never dropped.  Returns false if stopped while waiting.
__device__ static bool dead_letter(const kargs &a, uint64_t p, uint32_t ring,
				   uint64_t t, const struct ipc_msg_hdr *m,
				   const uint8_t *payload, int status,
				   uint32_t attempts)
{
	struct ipc_worker *me = &a.workers[blockIdx.x];
	unsigned sleep = 64;
	while (p - load_acq(&me->dlq_tail) >= a.dlq_per_worker) {
		if (*(volatile uint32_t *)a.stop)
			return false;
		__nanosleep(sleep);
		sleep = sleep < MAX_IDLE_SLEEP_NS ? sleep * 2 : sleep;
	}
	struct ipc_dlq_entry *d = (struct ipc_dlq_entry *)(
		a.dlq + ((size_t)blockIdx.x * a.dlq_per_worker + (p & a.dlq_mask)) *
				a.dlq_stride);
	ipc_dlq_fill(d, m, t, status, attempts, a.clients[m->client].pid, ring);
	memcpy(d + 1, payload, m->len);
	__threadfence_system();
	store_rel(&d->seq, p + 1);
	return true;
}

// Pull the payload into the VRAM ring, run the handler (with retries),
// publish the outcome.  *dlq_next is the block's next dead-letter position
// (shared memory).  Returns what happened, for the block's counters.
enum outcome { DONE_OK, DONE_DEAD, DONE_GARBLED, DONE_STOPPED };

__device__ static enum outcome consume(const kargs &a, uint32_t ring,
				       uint64_t t, unsigned long long *dlq_next,
				       unsigned *retried, uint64_t seq)
{
	const struct ipc_msg_hdr *m = (const struct ipc_msg_hdr *)(
		a.slots + slot_index(a, ring, t) * a.slot_stride);
	uint8_t *v = a.vram + slot_index(a, ring, t) * a.slot_stride;
	uint32_t len = m->len, client = m->client, attempts;
	bool noresult = m->flags & IPC_MSG_NORESULT;
	uint64_t id = m->id;
	struct ipc_cq_entry *e = NULL;
	// A bad header must never steer a write outside the completion areas;
	// index max_clients is the broker's own, which never wants results.
	if (client > a.max_clients || len == 0 || len > a.slot_bytes ||
	    (client == a.max_clients && !noresult))
		return DONE_GARBLED;
	// 16-byte vector copy; slots are 128-byte aligned.
	const uint4 *src = (const uint4 *)(m + 1);
	uint4 *dst = (uint4 *)v;
	for (uint32_t i = 0; i < (len + 15) / 16; i++)
		dst[i] = src[i];
	struct gpuq_hmsg in = { v, len, 1, id, m->key };
	struct gpuq_hres out;
	if (!noresult) {
		e = (struct ipc_cq_entry *)(a.cq + ((size_t)client * a.cq_capacity +
						    (id & a.cq_mask)) * a.cq_stride);
		out.data = (uint8_t *)(e + 1);
	} else {
		// A replay's result goes nowhere; the scratch area has one
		// result's room per slot, so concurrent tickets never share.
		out.data = a.scratch + slot_index(a, ring, t) * a.result_bytes;
	}
	out.cap = a.result_bytes;
	out.len = 0;
	int rc = gpuq_handle(a.handler, &in, &out, &a.fault, a.max_attempts,
			     &attempts);
	if (attempts > 1)
		atomicAdd(retried, attempts - 1);
	if (rc) {
		uint64_t p = atomicAdd(dlq_next, 1ull);
		if (!dead_letter(a, p, ring, t, m, v, rc, attempts))
			return DONE_STOPPED;
	}
	if (e) {
		e->status = rc ? GPUQ_EHANDLER : 0;
		e->len = rc ? 0 : out.len;
		e->attempts = attempts;
		e->worker = blockIdx.x;
		// Ordered queues run one ticket at a time per block, so the
		// block's own counter orders its completions; the windowed
		// kernel leaves it 0 (no order is promised there).
		e->seq = seq;
		__threadfence_system();
		store_rel(&e->done, id + 1);
	}
	return rc ? DONE_DEAD : DONE_OK;
}

// Thread 0 publishes the block's counters: totals of finished windows plus
// what the current window has done so far, so stats never wait for a window
// to fill (one held-back ticket would otherwise freeze them).
struct counts {
	unsigned done, dead, skip, retried, garbled;
};

__device__ static void publish_counters(struct ipc_worker *me,
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
	__threadfence_system();
}
// A polling round of a thread, in two steps around a block barrier.  First
// look: if the ticket is reserved (below head), is its slot published?
// Tickets at or above head are not polled at all: an idle queue costs one
// PCIe read per block per round, not one per thread (polling every state
// word from 16 blocks saturated the link and cut throughput to ~1.5M msg/s
// on an H100).
enum look { LOOK_WAIT, LOOK_READY, LOOK_SKIP, LOOK_END };

__device__ static enum look look_ticket(const kargs &a, uint32_t ring,
					uint64_t t, uint64_t h, bool stop)
{
	uint64_t hn = h & ~IPC_HEAD_CLOSED;
	if (t < hn) {
		uint64_t s = load_acq(&a.states[slot_index(a, ring, t)]);
		if (s == IPC_STATE(t, IPC_READY))
			return LOOK_READY;
		if (s == IPC_STATE(t, IPC_SKIP))
			return LOOK_SKIP;
	} else if (h & IPC_HEAD_CLOSED) {
		return LOOK_END; // intake closed below this ticket
	}
	return stop ? LOOK_END : LOOK_WAIT; // stop: forced, after a drain timeout
}

// Second step, for a published (or skipped) ticket once the caller has
// re-read the pause flag after the look: consume it and free the slot.
// Returns false when stopped while waiting for dead-letter room.
__device__ static bool take_ticket(const kargs &a, uint32_t ring, uint64_t t,
				   enum look l, struct counts *c,
				   unsigned long long *dlq_next, uint64_t seq)
{
	if (l == LOOK_SKIP) {
		atomicAdd(&c->skip, 1);
	} else {
		enum outcome o = consume(a, ring, t, dlq_next, &c->retried, seq);
		if (o == DONE_STOPPED)
			return false;
		if (o == DONE_DEAD)
			atomicAdd(&c->dead, 1);
		else if (o == DONE_GARBLED)
			atomicAdd(&c->garbled, 1);
	}
	// Count before the slot is released, so "completed" never lags a
	// slot a producer can already reuse.
	atomicAdd(&c->done, 1);
	store_rel(&a.states[slot_index(a, ring, t)],
		  IPC_STATE(t + a.capacity, IPC_FREE));
	return true;
}

__device__ static struct counts read_counts(struct counts *c)
{
	struct counts r;
	r.done = atomicAdd(&c->done, 0);
	r.dead = atomicAdd(&c->dead, 0);
	r.skip = atomicAdd(&c->skip, 0);
	r.retried = atomicAdd(&c->retried, 0);
	r.garbled = atomicAdd(&c->garbled, 0);
	return r;
}

// Unordered queue: one ring; block b takes windows b, b + G, b + 2G, ... of
// WINDOW tickets, one ticket per thread.
__global__ void consume_kernel(kargs a)
{
	__shared__ struct counts s_c;
	__shared__ unsigned long long s_head, s_low, s_dlq;
	__shared__ int s_stop, s_paused;
	struct ipc_worker *me = &a.workers[blockIdx.x];
	struct counts tot = { 0, 0, 0, 0, 0 }; // thread 0 only
	uint64_t cur_shown = 0;
	unsigned shown = 0;
	if (threadIdx.x == 0)
		s_dlq = me->dlq_head;
	for (uint64_t win = blockIdx.x;; win += gridDim.x) {
		uint64_t t = win * WINDOW + threadIdx.x;
		unsigned sleep = 0;
		bool finished = false, end = false;
		if (threadIdx.x == 0) {
			s_c.done = s_c.dead = s_c.skip = s_c.retried = s_c.garbled = 0;
			shown = 0;
		}
		for (;;) {
			if (threadIdx.x == 0) {
				s_head = load_acq(&a.ctl[0].head);
				s_stop = *(volatile uint32_t *)a.stop;
				s_low = ~0ull;
			}
			__syncthreads();
			bool progressed = false;
			enum look l = finished ? LOOK_WAIT
					       : look_ticket(a, 0, t, s_head, s_stop);
			// The pause flag is read after the slots: a message
			// published after a pause took effect is never run.
			bool any_ready = __syncthreads_or(l == LOOK_READY || l == LOOK_SKIP);
			if (threadIdx.x == 0)
				s_paused = any_ready && *(volatile uint32_t *)a.paused &&
					   !s_stop;
			__syncthreads();
			if (l == LOOK_END) {
				finished = end = true;
			} else if ((l == LOOK_READY || l == LOOK_SKIP) && !s_paused) {
				if (!take_ticket(a, 0, t, l, &s_c, &s_dlq, 0))
					end = true;
				finished = progressed = true;
			}
			if (!finished)
				atomicMin(&s_low, (unsigned long long)t);
			bool all = __syncthreads_and(finished);
			bool any = __syncthreads_or(progressed);
			if (threadIdx.x == 0) {
				// Publish what changed: counters so far, and the
				// lowest ticket this block has not finished (the
				// broker's consumed frontier, per ticket).
				struct counts now = read_counts(&s_c);
				if (now.done != shown) {
					publish_counters(me, tot, now, s_dlq);
					shown = now.done;
				}
				if (!all && s_low != cur_shown) {
					store_rel(&me->cur, s_low);
					cur_shown = s_low;
				}
			}
			if (all)
				break;
			if (!any) {
				sleep = sleep ? (sleep < MAX_IDLE_SLEEP_NS ? sleep * 2 : sleep)
					      : 32;
				__nanosleep(sleep);
			} else {
				sleep = 0;
			}
		}
		bool any_end = __syncthreads_or(end);
		if (threadIdx.x == 0) {
			struct counts zero = { 0, 0, 0, 0, 0 };
			tot.skip += s_c.skip;
			tot.done += s_c.done - s_c.skip;
			tot.dead += s_c.dead;
			tot.retried += s_c.retried;
			tot.garbled += s_c.garbled;
			publish_counters(me, tot, zero, s_dlq);
			cur_shown = any_end ? UINT64_MAX : (win + gridDim.x) * WINDOW;
			store_rel(&me->cur, cur_shown);
		}
		if (any_end)
			return;
	}
}

// Ordered queue: block b is the only consumer of ring b and walks it one
// ticket at a time, so messages with one key complete in enqueue order.
// One thread per block: correct first; the GPU issue owns making it fast.
__global__ void consume_ordered_kernel(kargs a)
{
	// Shared, not local: take_ticket counts with atomics, which local
	// memory does not support.
	__shared__ struct counts c;
	__shared__ unsigned long long dlq;
	uint32_t ring = blockIdx.x;
	struct ipc_worker *me = &a.workers[ring];
	struct counts tot = { 0, 0, 0, 0, 0 };
	struct counts zero = { 0, 0, 0, 0, 0 };
	unsigned sleep = 0;
	dlq = me->dlq_head;
	for (uint64_t t = 0;;) {
		bool end = false, done;
		c = zero;
		store_rel(&me->cur, t);
		enum look l = look_ticket(a, ring, t, load_acq(&a.ctl[ring].head),
					  *(volatile uint32_t *)a.stop);
		done = false;
		if (l == LOOK_END)
			end = true;
		else if (l != LOOK_WAIT &&
			 !(*(volatile uint32_t *)a.paused && !*(volatile uint32_t *)a.stop)) {
			// consumed, or stopped waiting for dead-letter room
			if (take_ticket(a, ring, t, l, &c, &dlq, tot.done))
				done = true;
			else
				end = true;
		}
		if (end) {
			store_rel(&me->cur, UINT64_MAX);
			return;
		}
		if (!done) {
			sleep = sleep ? (sleep < MAX_IDLE_SLEEP_NS ? sleep * 2 : sleep)
				      : 32;
			__nanosleep(sleep);
			continue;
		}
		sleep = 0;
		tot.skip += c.skip;
		tot.done += c.done - c.skip;
		tot.dead += c.dead;
		tot.retried += c.retried;
		tot.garbled += c.garbled;
		publish_counters(me, tot, zero, dlq);
		t++;
	}
}

extern "C" int backend_cuda_available(void)
{
	int n = 0;
	return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

static void cuda_free_state(struct cuda_state *s, struct bqueue *q)
{
	if (s->stream)
		CUDA_CALL(cudaStreamDestroy(s->stream));
	if (s->vram)
		CUDA_CALL(cudaFree(s->vram));
	if (s->scratch)
		CUDA_CALL(cudaFree(s->scratch));
	if (s->stop)
		CUDA_CALL(cudaFreeHost(s->stop));
	if (s->registered)
		CUDA_CALL(cudaHostUnregister(q->r.base));
	free(s);
}

static int cuda_start(struct bqueue *q)
{
	struct cuda_state *s = (struct cuda_state *)calloc(1, sizeof(*s));
	struct ipc_ring *r = &q->r;
	struct kargs a;
	uint8_t *dev;
	size_t nslots = (size_t)r->hdr->nrings * r->hdr->capacity;
	if (!s)
		return -ENOMEM;
	if (CUDA_CALL(cudaHostRegister(r->base, r->size,
				       cudaHostRegisterMapped |
					       cudaHostRegisterPortable)))
		goto fail;
	s->registered = 1;
	if (CUDA_CALL(cudaHostGetDevicePointer(&s->dev_base, r->base, 0)) ||
	    CUDA_CALL(cudaMalloc(&s->vram, nslots * r->hdr->slot_stride)) ||
	    CUDA_CALL(cudaMalloc(&s->scratch,
				 nslots * (r->hdr->result_bytes + 16))) ||
	    CUDA_CALL(cudaIpcGetMemHandle(&s->ipc, s->vram)) ||
	    CUDA_CALL(cudaHostAlloc(&s->stop, sizeof(uint32_t),
				    cudaHostAllocMapped)) ||
	    CUDA_CALL(cudaStreamCreateWithFlags(&s->stream,
						cudaStreamNonBlocking)))
		goto fail;
	*s->stop = 0;
	dev = (uint8_t *)s->dev_base;
	memset(&a, 0, sizeof(a));
	a.states = (uint64_t *)(dev + r->hdr->states_off);
	a.slots = dev + r->hdr->slots_off;
	a.cq = dev + r->hdr->cq_off;
	a.dlq = dev + r->hdr->dlq_off;
	a.ctl = (struct ipc_ctl *)(dev + r->hdr->ctl_off);
	a.workers = (struct ipc_worker *)(dev + r->hdr->workers_off);
	a.clients = (struct ipc_client *)(dev + r->hdr->clients_off);
	a.paused = (uint32_t *)(dev + offsetof(struct ipc_hdr, paused));
	a.stop = s->stop;
	a.vram = s->vram;
	a.scratch = s->scratch;
	a.mask = r->mask;
	a.cq_mask = r->cq_mask;
	a.dlq_mask = r->dlq_mask;
	a.max_attempts = r->hdr->max_attempts;
	a.dlq_per_worker = r->hdr->dlq_per_worker;
	a.dlq_stride = r->hdr->dlq_stride;
	a.fault.ppm = r->hdr->fail_ppm;
	a.fault.fail_attempts = r->hdr->fail_attempts;
	a.capacity = r->hdr->capacity;
	a.slot_stride = r->hdr->slot_stride;
	a.cq_stride = r->hdr->cq_stride;
	a.cq_capacity = r->hdr->cq_capacity;
	a.result_bytes = r->hdr->result_bytes;
	a.max_clients = r->hdr->max_clients;
	a.slot_bytes = r->hdr->slot_bytes;
	a.handler = q->handler_id;
	if (r->hdr->ordered)
		consume_ordered_kernel<<<r->hdr->nworkers, 1, 0, s->stream>>>(a);
	else
		consume_kernel<<<r->hdr->nworkers, WINDOW, 0, s->stream>>>(a);
	if (CUDA_CALL(cudaGetLastError()))
		goto fail;
	q->be_state = s;
	return 0;
fail:
	cuda_free_state(s, q);
	return GPUQ_ECUDA;
}

static void cuda_stop(struct bqueue *q)
{
	struct cuda_state *s = (struct cuda_state *)q->be_state;
	if (!s)
		return;
	__atomic_store_n(s->stop, 1u, __ATOMIC_RELEASE);
	CUDA_CALL(cudaStreamSynchronize(s->stream));
	cuda_free_state(s, q);
	q->be_state = NULL;
}

static int cuda_ipc_handle(struct bqueue *q, uint8_t out[64])
{
	struct cuda_state *s = (struct cuda_state *)q->be_state;
	static_assert(sizeof(s->ipc) <= 64, "IPC handle fits the message");
	if (!s)
		return -1;
	memcpy(out, &s->ipc, sizeof(s->ipc));
	return 0;
}

extern "C" const struct backend_ops backend_cuda_ops = {
	"cuda", cuda_start, cuda_stop, cuda_ipc_handle,
};
