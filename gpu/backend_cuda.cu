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
	uint64_t *head;
	struct ipc_worker *workers;
	uint32_t *stop;
	uint8_t *vram;
	uint64_t mask, cq_mask;
	uint32_t capacity, slot_stride, cq_stride, cq_capacity;
	uint32_t result_bytes, max_clients, slot_bytes, handler;
};

struct cuda_state {
	void *dev_base;     // device view of the shared memory
	uint8_t *vram;      // the VRAM ring
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

// Pull the payload into the VRAM ring, run the handler, publish the result.
// Returns 1 when the handler failed (or the slot header was garbage).
__device__ static int consume(const kargs &a, uint64_t t)
{
	const struct ipc_msg_hdr *m =
		(const struct ipc_msg_hdr *)(a.slots + (t & a.mask) * a.slot_stride);
	uint8_t *v = a.vram + (t & a.mask) * a.slot_stride;
	uint32_t len = m->len, client = m->client;
	uint64_t id = m->id;
	if (client >= a.max_clients || len == 0 || len > a.slot_bytes)
		return 1;
	// 16-byte vector copy; slots are 128-byte aligned.
	const uint4 *src = (const uint4 *)(m + 1);
	uint4 *dst = (uint4 *)v;
	for (uint32_t i = 0; i < (len + 15) / 16; i++)
		dst[i] = src[i];
	struct ipc_cq_entry *e = (struct ipc_cq_entry *)(
		a.cq + ((size_t)client * a.cq_capacity + (id & a.cq_mask)) *
			       a.cq_stride);
	struct gpuq_hmsg in = { v, len, id };
	struct gpuq_hres out = { (uint8_t *)(e + 1), a.result_bytes, 0 };
	int rc = gpuq_handler_run(a.handler, &in, &out);
	e->status = rc ? GPUQ_EHANDLER : 0;
	e->len = rc ? 0 : out.len;
	__threadfence_system();
	store_rel(&e->done, id + 1);
	return rc ? 1 : 0;
}

// Thread 0 publishes the block's counters: totals of finished windows plus
// what the current window has done so far, so stats never wait for a window
// to fill (one held-back ticket would otherwise freeze them).
__device__ static void publish_counters(struct ipc_worker *me, uint64_t done,
					uint64_t fail, uint64_t skip)
{
	me->completed = done;
	me->failed = fail;
	me->skipped = skip;
	__threadfence_system();
}

// One polling round of a thread: if its ticket is reserved (below head),
// look at its slot and consume it when published.  Tickets at or above head
// are not polled at all: an idle queue costs one PCIe read per block per
// round, not one per thread (polling every state word from 16 blocks
// saturated the link and cut throughput to ~1.5M msg/s on an H100).
// Returns true when the ticket is done with (consumed, skipped, or past the
// end of intake).
__device__ static bool poll_ticket(const kargs &a, uint64_t t, uint64_t h,
				   bool stop, bool *end, unsigned *s_done,
				   unsigned *s_fail, unsigned *s_skip)
{
	uint64_t hn = h & ~IPC_HEAD_CLOSED;
	if (t < hn) {
		uint64_t s = load_acq(&a.states[t & a.mask]);
		if (s == IPC_STATE(t, IPC_READY) || s == IPC_STATE(t, IPC_SKIP)) {
			if (s == IPC_STATE(t, IPC_SKIP))
				atomicAdd(s_skip, 1);
			else if (consume(a, t))
				atomicAdd(s_fail, 1);
			// Count before the slot is released, so "completed"
			// never lags a slot a producer can already reuse.
			atomicAdd(s_done, 1);
			store_rel(&a.states[t & a.mask],
				  IPC_STATE(t + a.capacity, IPC_FREE));
			return true;
		}
	} else if (h & IPC_HEAD_CLOSED) {
		*end = true; // intake closed below this ticket
		return true;
	}
	if (stop) { // forced stop after a drain timeout
		*end = true;
		return true;
	}
	return false;
}

__global__ void consume_kernel(kargs a)
{
	__shared__ unsigned s_fail, s_skip, s_done;
	__shared__ unsigned long long s_head, s_low;
	__shared__ int s_stop;
	struct ipc_worker *me = &a.workers[blockIdx.x];
	uint64_t tot_done = 0, tot_fail = 0, tot_skip = 0; // thread 0 only
	uint64_t cur_shown = 0;
	unsigned shown = 0;
	for (uint64_t win = blockIdx.x;; win += gridDim.x) {
		uint64_t t = win * WINDOW + threadIdx.x;
		unsigned sleep = 0;
		bool finished = false, end = false;
		if (threadIdx.x == 0) {
			s_fail = s_skip = s_done = 0;
			shown = 0;
		}
		for (;;) {
			if (threadIdx.x == 0) {
				s_head = load_acq(a.head);
				s_stop = *(volatile uint32_t *)a.stop;
				s_low = ~0ull;
			}
			__syncthreads();
			bool progressed = false;
			if (!finished) {
				finished = poll_ticket(a, t, s_head, s_stop, &end,
						       &s_done, &s_fail, &s_skip);
				progressed = finished;
				if (!finished)
					atomicMin(&s_low, (unsigned long long)t);
			}
			bool all = __syncthreads_and(finished);
			bool any = __syncthreads_or(progressed);
			if (threadIdx.x == 0) {
				// Publish what changed: counters so far, and the
				// lowest ticket this block has not finished (the
				// broker's consumed frontier, per ticket).
				unsigned d = atomicAdd(&s_done, 0);
				if (d != shown) {
					unsigned k = atomicAdd(&s_skip, 0);
					publish_counters(me, tot_done + d - k,
							 tot_fail + atomicAdd(&s_fail, 0),
							 tot_skip + k);
					shown = d;
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
			tot_skip += s_skip;
			tot_done += s_done - s_skip;
			tot_fail += s_fail;
			publish_counters(me, tot_done, tot_fail, tot_skip);
			cur_shown = any_end ? UINT64_MAX : (win + gridDim.x) * WINDOW;
			store_rel(&me->cur, cur_shown);
		}
		if (any_end)
			return;
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
	if (!s)
		return -ENOMEM;
	if (CUDA_CALL(cudaHostRegister(r->base, r->size,
				       cudaHostRegisterMapped |
					       cudaHostRegisterPortable)))
		goto fail;
	s->registered = 1;
	if (CUDA_CALL(cudaHostGetDevicePointer(&s->dev_base, r->base, 0)) ||
	    CUDA_CALL(cudaMalloc(&s->vram, (size_t)r->hdr->capacity *
						   r->hdr->slot_stride)) ||
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
	a.head = (uint64_t *)(dev + r->hdr->ctl_off);
	a.workers = (struct ipc_worker *)(dev + r->hdr->workers_off);
	a.stop = s->stop;
	a.vram = s->vram;
	a.mask = r->mask;
	a.cq_mask = r->cq_mask;
	a.capacity = r->hdr->capacity;
	a.slot_stride = r->hdr->slot_stride;
	a.cq_stride = r->hdr->cq_stride;
	a.cq_capacity = r->hdr->cq_capacity;
	a.result_bytes = r->hdr->result_bytes;
	a.max_clients = r->hdr->max_clients;
	a.slot_bytes = r->hdr->slot_bytes;
	a.handler = q->handler_id;
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
