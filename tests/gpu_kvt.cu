// gpu_kvt.cu - see gpu_kvt.h.  Each thread picks an operation at random
// (get, upsert, insert, update, delete, compare-and-swap) and takes a
// logical time from one device-wide counter before and after it, so the
// host can tell which operations overlapped.
#include <cuda/atomic>
#include <cuda_runtime.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/handlers.h" /* gpuq_fault_mix: splitmix64's finaliser */
#include "tests/gpu_kvt.h"
#include "tests/lin_table.h"

struct gpu_kvt {
	struct gpuq_kvt t;
	unsigned long long *clock;
	uint64_t *seen;        // per thread and key: the last value it saw
	struct lin_op *ops;
	int *key;
	uint64_t *final;
};

__device__ static uint64_t tick(unsigned long long *clock)
{
	return cuda::atomic_ref<unsigned long long, cuda::thread_scope_device>(
		       *clock)
		.fetch_add(1ull, cuda::memory_order_seq_cst) + 1;
}

__global__ static void kvt_round(struct gpuq_kvt t, uint32_t round,
				 unsigned long long *clock, uint64_t *seen,
				 struct lin_op *ops, int *keys)
{
	uint32_t i = blockIdx.x * blockDim.x + threadIdx.x;
	// 7 is odd, so i -> 7i + round is a bijection mod GPU_KVT_KEYS over
	// each run of that many threads: every key gets the same share.
	int key = (int)((7u * i + round) % GPU_KVT_KEYS);
	uint64_t r = gpuq_fault_mix((uint64_t)round << 32 | i);
	uint64_t *last = &seen[(size_t)i * GPU_KVT_KEYS + key];
	struct lin_op o;
	o.k = (int32_t)(r % LIN_N);
	o.arg = (uint64_t)(i + 1) << 40 | round; // unique per write, never 0
	o.expect = *last;
	// a little jitter, so that the operations start spread out
	__nanosleep((unsigned)(r >> 40) % 2048u);
	o.inv = tick(clock);
	lin_apply(&t, key, &o, last);
	o.resp = tick(clock);
	ops[i] = o;
	keys[i] = key;
}

__global__ static void kvt_final(struct gpuq_kvt t, uint64_t *final)
{
	final[threadIdx.x] = lin_value(&t, (int)threadIdx.x);
}

static int fail(cudaError_t e, const char *what, char *err, size_t cap)
{
	snprintf(err, cap, "%s: %s", what, cudaGetErrorString(e));
	return -1;
}

#define TRY(call)                                                         \
	do {                                                              \
		cudaError_t e_ = (call);                                  \
		if (e_ != cudaSuccess)                                    \
			return fail(e_, #call, err, errcap);              \
	} while (0)

static int kvt_alloc(struct gpu_kvt *g, char *err, size_t errcap)
{
	size_t sb, lb, nseen = (size_t)GPU_KVT_OPS * GPU_KVT_KEYS;
	// one window: every key shares its buckets and their locks
	gpuq_kvt_geometry(&g->t, 1, 8);
	sb = gpuq_kvt_slot_bytes(g->t.nbuckets, 8);
	lb = gpuq_kvt_lock_bytes(g->t.nbuckets);
	TRY(cudaMalloc(&g->t.slots, sb));
	TRY(cudaMalloc(&g->t.locks, lb));
	TRY(cudaMalloc(&g->clock, sizeof(*g->clock)));
	TRY(cudaMalloc(&g->seen, nseen * sizeof(*g->seen)));
	TRY(cudaMalloc(&g->ops, GPU_KVT_OPS * sizeof(*g->ops)));
	TRY(cudaMalloc(&g->key, GPU_KVT_OPS * sizeof(*g->key)));
	TRY(cudaMalloc(&g->final, GPU_KVT_KEYS * sizeof(*g->final)));
	TRY(cudaMemset(g->t.slots, 0, sb));
	TRY(cudaMemset(g->t.locks, 0, lb));
	TRY(cudaMemset(g->clock, 0, sizeof(*g->clock)));
	TRY(cudaMemset(g->seen, 0, nseen * sizeof(*g->seen)));
	return 0;
}

extern "C" int gpu_kvt_open(struct gpu_kvt **out, char *err, size_t errcap)
{
	struct gpu_kvt *g = (struct gpu_kvt *)calloc(1, sizeof(*g));
	if (!g) {
		snprintf(err, errcap, "out of memory");
		return -1;
	}
	*out = g;
	return kvt_alloc(g, err, errcap);
}

extern "C" int gpu_kvt_round(struct gpu_kvt *g, uint32_t round,
			     struct lin_op *ops, int *key, uint64_t *final,
			     char *err, size_t errcap)
{
	kvt_round<<<GPU_KVT_BLOCKS, 32>>>(g->t, round, g->clock, g->seen,
					  g->ops, g->key);
	TRY(cudaGetLastError());
	kvt_final<<<1, GPU_KVT_KEYS>>>(g->t, g->final);
	TRY(cudaGetLastError());
	TRY(cudaMemcpy(ops, g->ops, GPU_KVT_OPS * sizeof(*ops),
		       cudaMemcpyDeviceToHost));
	TRY(cudaMemcpy(key, g->key, GPU_KVT_OPS * sizeof(*key),
		       cudaMemcpyDeviceToHost));
	TRY(cudaMemcpy(final, g->final, GPU_KVT_KEYS * sizeof(*final),
		       cudaMemcpyDeviceToHost));
	return 0;
}

extern "C" void gpu_kvt_close(struct gpu_kvt *g)
{
	if (!g)
		return;
	cudaFree(g->t.slots);
	cudaFree(g->t.locks);
	cudaFree(g->clock);
	cudaFree(g->seen);
	cudaFree(g->ops);
	cudaFree(g->key);
	cudaFree(g->final);
	free(g);
}
