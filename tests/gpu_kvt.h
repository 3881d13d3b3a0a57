/* gpu_kvt.h - the hash table (broker/kvtable.h) in VRAM under many warps,
 * for check_gpu: tests/gpu_kvt.cu runs rounds of concurrent operations on
 * the device and hands back their histories, which check_gpu checks with
 * the same linearizability checker as the host test (tests/lincheck.h). */
#ifndef GPUQ_TESTS_GPU_KVT_H
#define GPUQ_TESTS_GPU_KVT_H

#include <stddef.h>
#include <stdint.h>

#include "tests/lincheck.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Per round: GPU_KVT_BLOCKS blocks of 32 threads, one operation each, on
 * GPU_KVT_KEYS keys that all share one window of a 32-slot table:
 * exactly GPU_KVT_OPS / GPU_KVT_KEYS operations per key. */
#define GPU_KVT_BLOCKS 4
#define GPU_KVT_OPS (GPU_KVT_BLOCKS * 32)
#define GPU_KVT_KEYS 16

struct gpu_kvt;

/* In this process, with its own CUDA context.  0, or -1 with err set. */
int gpu_kvt_open(struct gpu_kvt **g, char *err, size_t errcap);
/* Run one round: ops[i] and key[i] for each of the GPU_KVT_OPS
 * operations, final[k] the value key k holds afterwards (0: absent). */
int gpu_kvt_round(struct gpu_kvt *g, uint32_t round, struct lin_op *ops,
		  int *key, uint64_t *final, char *err, size_t errcap);
void gpu_kvt_close(struct gpu_kvt *g);

#ifdef __cplusplus
}
#endif

#endif
