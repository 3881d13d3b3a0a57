// tables_cuda.cu - a queue's hash tables in VRAM (see tables_cuda.h).
//
// The persistent kernel reads and writes the tables (gpu/consume.cuh) and
// keeps them (gpu/maint.cuh: expiry of exactly-once records, and counts
// of the slots in use); the host only allocates them and collects those
// counts for /metrics.
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
#include "gpu/kargs.h"
#include "gpu/tables_cuda.h"

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
	    CUDA_CALL(cudaHostAlloc(&t->maint, sizeof(*t->maint),
				    cudaHostAllocMapped)))
		return GPUQ_ECUDA;
	memset(t->maint, 0, sizeof(*t->maint));
	if (CUDA_CALL(cudaHostGetDevicePointer(&t->dmaint, t->maint, 0)))
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
	if (t->maint)
		CUDA_CALL(cudaFreeHost(t->maint));
	table_free(&q->table);
	table_free(&q->once);
	memset(t, 0, sizeof(*t));
}

void cuda_tables_tick(struct bqueue *q, struct cuda_tables *t)
{
	volatile struct gpuq_maint *m = t->maint;
	uint64_t passes;
	if (!m)
		return;
	passes = m->passes;
	if (passes == t->passes)
		return;
	// passes was written after a system fence that follows the counts.
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	t->passes = passes;
	__atomic_store_n(&q->dev_used[0], (uint64_t)m->used[0], __ATOMIC_RELAXED);
	__atomic_store_n(&q->dev_used[1], (uint64_t)m->used[1], __ATOMIC_RELAXED);
}
