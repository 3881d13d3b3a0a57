// table_cuda.cu - gpuq-bench table on the GPU: broker/kvtable.h in VRAM,
// one thread per insert, then one thread per lookup of a known key.
#include <cuda_runtime.h>
#include <errno.h>
#include <stdio.h>

#include "bench/table_bench.h"
#include "broker/kvtable.h"

__global__ void tb_insert(struct gpuq_kvt t, uint64_t n,
			  unsigned long long *refused)
{
	for (uint64_t i = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; i < n;
	     i += (uint64_t)gridDim.x * blockDim.x) {
		uint64_t k = table_bench_key(i);
		if (gpuq_kvt_put(&t, &k, 8, &i, 8, GPUQ_KVT_INSERT))
			atomicAdd(refused, 1ull);
	}
}

__global__ void tb_lookup(struct gpuq_kvt t, uint64_t n, uint64_t m,
			  unsigned long long *found, unsigned long long *wrong)
{
	unsigned long long f = 0, w = 0;
	for (uint64_t j = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; j < m;
	     j += (uint64_t)gridDim.x * blockDim.x) {
		uint64_t i = table_bench_key(j ^ 0x5bd1e995ull) % n;
		uint64_t k = table_bench_key(i), v = 0;
		uint32_t len;
		if (!gpuq_kvt_get(&t, &k, 8, &v, 8, &len)) {
			f++;
			w += v != i || len != 8;
		}
	}
	atomicAdd(found, f);
	atomicAdd(wrong, w);
}

#define CK(call)                                                            \
	do {                                                                \
		cudaError_t e_ = (call);                                    \
		if (e_ != cudaSuccess) {                                    \
			snprintf(err, errcap, "%s: %s", #call,              \
				 cudaGetErrorString(e_));                   \
			rc = -EIO;                                          \
			goto out;                                           \
		}                                                           \
	} while (0)

extern "C" int table_bench_cuda(struct table_bench *b, char *err,
				size_t errcap)
{
	struct gpuq_kvt t = {};
	unsigned long long *cnt = NULL, host[3] = { 0, 0, 0 };
	cudaEvent_t e0 = NULL, e1 = NULL, e2 = NULL;
	float ms_ins = 0, ms_look = 0;
	int rc = 0, ndev = 0, sms = 0;
	uint64_t n;
	if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
		snprintf(err, errcap, "no usable GPU");
		return -ENODEV;
	}
	gpuq_kvt_geometry(&t, b->slots, 8);
	b->real_slots = t.nbuckets * GPUQ_KVT_BUCKET;
	n = (uint64_t)(b->load * (double)b->real_slots);
	CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
	CK(cudaMalloc(&t.slots, gpuq_kvt_slot_bytes(t.nbuckets, 8)));
	CK(cudaMalloc(&t.locks, gpuq_kvt_lock_bytes(t.nbuckets)));
	CK(cudaMalloc(&cnt, sizeof(host)));
	CK(cudaMemset(t.slots, 0, gpuq_kvt_slot_bytes(t.nbuckets, 8)));
	CK(cudaMemset(t.locks, 0, gpuq_kvt_lock_bytes(t.nbuckets)));
	CK(cudaMemset(cnt, 0, sizeof(host)));
	CK(cudaEventCreate(&e0));
	CK(cudaEventCreate(&e1));
	CK(cudaEventCreate(&e2));
	CK(cudaEventRecord(e0));
	tb_insert<<<sms * 8, 256>>>(t, n, cnt);
	CK(cudaGetLastError());
	CK(cudaEventRecord(e1));
	tb_lookup<<<sms * 8, 256>>>(t, n, b->lookups, cnt + 1, cnt + 2);
	CK(cudaGetLastError());
	CK(cudaEventRecord(e2));
	CK(cudaEventSynchronize(e2));
	CK(cudaEventElapsedTime(&ms_ins, e0, e1));
	CK(cudaEventElapsedTime(&ms_look, e1, e2));
	CK(cudaMemcpy(host, cnt, sizeof(host), cudaMemcpyDeviceToHost));
	b->refused = host[0];
	b->inserted = n - host[0];
	b->found = host[1];
	b->wrong = host[2];
	b->insert_s = ms_ins / 1e3;
	b->lookup_s = ms_look / 1e3;
out:
	if (e0)
		cudaEventDestroy(e0);
	if (e1)
		cudaEventDestroy(e1);
	if (e2)
		cudaEventDestroy(e2);
	cudaFree(cnt);
	cudaFree(t.slots);
	cudaFree(t.locks);
	return rc;
}
