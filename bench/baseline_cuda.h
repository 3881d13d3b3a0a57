/*
 * baseline_cuda.h - baseline (b): the predecessor's design, in which every
 * producer owns a CUDA context and each message is its own
 * cudaMemcpyAsync into VRAM, followed by a kernel launch for it and a copy
 * of its result back.  Implemented in baseline_cuda.cu (built only with
 * CUDA); these are the C entry points, shaped as a loop.h port.
 */
#ifndef GPUQ_BENCH_BASELINE_CUDA_H
#define GPUQ_BENCH_BASELINE_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "bench/loop.h"

#ifdef __cplusplus
extern "C" {
#endif

struct cudabase;

struct cudabase_conf {
	uint32_t handler;  /* enum gpuq_handler_id */
	uint32_t size;     /* payload bytes */
	uint32_t window;   /* most messages in flight */
	size_t (*fill)(void *ctx, uint64_t seq, void *buf, size_t cap);
	void *fill_ctx;
};

/* Create the context, stream and buffers.  -ENODEV when there is no usable
 * GPU, another negative errno on a CUDA failure; err says which. */
int cudabase_open(const struct cudabase_conf *c, struct cudabase **out,
		  char *err, size_t errcap);
int cudabase_send(void *b, uint64_t seq, uint32_t k, const uint64_t *stamp,
		  struct proc_result *o);
int cudabase_poll(void *b, struct loop_done *d, uint32_t max,
		  struct proc_result *o);
void cudabase_close(struct cudabase *b);

#ifdef __cplusplus
}
#endif
#endif
