// tables_cuda.cu - a queue's hash tables in VRAM (see tables_cuda.h).
//
// The persistent kernel reads and writes the tables (gpu/consume.cuh);
// the host only allocates them and, every MAINT_INTERVAL_NS, launches a
// short kernel on a stream of its own that
//   - expires exactly-once records whose window has passed, with the same
//     gpuq_once_expire() the CPU backend's sweep calls, by the same clock
//     the records were written with (the GPU's %globaltimer);
//   - counts the slots in use of both tables, for /metrics.
// It runs beside the persistent kernel in the SMs that kernel leaves free
// (backend_cuda.cu keeps every queue's blocks resident); if there are none
// the pass simply waits, and the next is launched only once it is done.
#include <cuda_runtime.h>

#include <stdint.h>
#include <string.h>

extern "C" {
#include "config.h"
#include "broker/broker.h"
#include "libclient/gpuq.h"
}
#include "broker/handlers.h"
#include "gpu/cuda_call.h"
#include "gpu/tables_cuda.h"

// How often the pass runs, and its grid: small, so it fits beside the
// persistent kernels; a grid-stride loop covers any table size.
#define MAINT_INTERVAL_NS 100000000ull
#define MAINT_BLOCKS 32u
#define MAINT_THREADS 256u

__device__ static unsigned long long count_used(const struct gpuq_kvt *t,
						uint64_t i)
{
	return GPUQ_KVT_STATE(gpuq_kvt_load(&gpuq_kvt_slot_at(t, i)->ctrl)) ==
	       GPUQ_KVT_USED;
}

__global__ static void tables_maint(struct gpuq_kvt table, struct gpuq_kvt once,
				    uint64_t window_ns,
				    unsigned long long *count)
{
	uint64_t now = gpuq_once_now_ns();
	uint64_t i0 = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
	uint64_t step = (uint64_t)gridDim.x * blockDim.x;
	unsigned long long used[2] = { 0, 0 };
	if (table.slots)
		for (uint64_t i = i0; i < table.nbuckets * GPUQ_KVT_BUCKET;
		     i += step)
			used[0] += count_used(&table, i);
	if (once.slots)
		for (uint64_t i = i0; i < once.nbuckets * GPUQ_KVT_BUCKET;
		     i += step) {
			if (window_ns && gpuq_once_expire(&once, i, now, window_ns))
				continue;
			used[1] += count_used(&once, i);
		}
	for (int k = 0; k < 2; k++) {
		for (int off = 16; off > 0; off /= 2)
			used[k] += __shfl_down_sync(0xffffffffu, used[k], off);
		if ((threadIdx.x & 31) == 0 && used[k])
			atomicAdd(&count[k], used[k]);
	}
}

static cudaError_t table_alloc(struct gpuq_kvt *t)
{
	size_t sb = gpuq_kvt_slot_bytes(t->nbuckets, t->value_bytes);
	size_t lb = gpuq_kvt_lock_bytes(t->nbuckets);
	cudaError_t e;
	if (!t->nbuckets)
		return cudaSuccess;
	if ((e = CUDA_CALL(cudaMalloc(&t->slots, sb))) ||
	    (e = CUDA_CALL(cudaMalloc(&t->locks, lb))) ||
	    (e = CUDA_CALL(cudaMemset(t->slots, 0, sb))) ||
	    (e = CUDA_CALL(cudaMemset(t->locks, 0, lb))))
		return e;
	return cudaSuccess;
}

int cuda_tables_alloc(struct bqueue *q, struct cuda_tables *t)
{
	memset(t, 0, sizeof(*t));
	if (!q->table.nbuckets && !q->once.nbuckets)
		return 0;
	if (table_alloc(&q->table) || table_alloc(&q->once) ||
	    CUDA_CALL(cudaMalloc(&t->dcount, 2 * sizeof(*t->dcount))) ||
	    CUDA_CALL(cudaHostAlloc(&t->hcount, 2 * sizeof(*t->hcount),
				    cudaHostAllocDefault)) ||
	    CUDA_CALL(cudaStreamCreateWithFlags(&t->stream,
						cudaStreamNonBlocking)))
		return GPUQ_ECUDA;
	return 0;
}

static void table_free(struct gpuq_kvt *t)
{
	if (t->slots)
		CUDA_CALL(cudaFree(t->slots));
	if (t->locks)
		CUDA_CALL(cudaFree(t->locks));
	t->slots = NULL;
	t->locks = NULL;
}

void cuda_tables_free(struct bqueue *q, struct cuda_tables *t)
{
	if (t->stream) {
		CUDA_CALL(cudaStreamSynchronize(t->stream));
		CUDA_CALL(cudaStreamDestroy(t->stream));
	}
	if (t->dcount)
		CUDA_CALL(cudaFree(t->dcount));
	if (t->hcount)
		CUDA_CALL(cudaFreeHost(t->hcount));
	table_free(&q->table);
	table_free(&q->once);
	memset(t, 0, sizeof(*t));
}

// Launch one pass: zero the counters, run, copy them back, all on the
// maintenance stream.
static cudaError_t launch_pass(struct bqueue *q, struct cuda_tables *t)
{
	cudaError_t e;
	if ((e = CUDA_CALL(cudaMemsetAsync(t->dcount, 0, 2 * sizeof(*t->dcount),
					   t->stream))))
		return e;
	tables_maint<<<MAINT_BLOCKS, MAINT_THREADS, 0, t->stream>>>(
		q->table, q->once, q->once_window_ns, t->dcount);
	if ((e = CUDA_CALL(cudaGetLastError())))
		return e;
	return CUDA_CALL(cudaMemcpyAsync(t->hcount, t->dcount,
					 2 * sizeof(*t->dcount),
					 cudaMemcpyDeviceToHost, t->stream));
}

void cuda_tables_tick(struct bqueue *q, struct cuda_tables *t, uint64_t now_ns)
{
	cudaError_t e;
	if (!t->stream || t->failed)
		return;
	if (t->running) {
		e = cudaStreamQuery(t->stream);
		if (e == cudaErrorNotReady)
			return;
		t->running = 0;
		if (e != cudaSuccess) {
			// A device fault shows up here too; cuda_health
			// reports it and the broker's policy follows.
			t->failed = 1;
			return;
		}
		__atomic_store_n(&q->dev_used[0], (uint64_t)t->hcount[0],
				 __ATOMIC_RELAXED);
		__atomic_store_n(&q->dev_used[1], (uint64_t)t->hcount[1],
				 __ATOMIC_RELAXED);
	}
	if (t->last_ns && now_ns - t->last_ns < MAINT_INTERVAL_NS)
		return;
	t->last_ns = now_ns;
	if (launch_pass(q, t)) {
		t->failed = 1;
		return;
	}
	t->running = 1;
}
