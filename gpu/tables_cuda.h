// tables_cuda.h - a queue's hash tables in VRAM (design.md §15), host side:
// allocation, and the periodic maintenance pass that expires exactly-once
// records and counts the slots in use, since the host cannot read VRAM
// tables the way it scans its own.
#ifndef GPUQ_GPU_TABLES_CUDA_H
#define GPUQ_GPU_TABLES_CUDA_H

#include <cuda_runtime.h>
#include <stdint.h>

struct bqueue;

struct cuda_tables {
	cudaStream_t stream;         // the maintenance pass's own stream
	unsigned long long *dcount;  // per pass: used slots (state, dedupe)
	unsigned long long *hcount;  // pinned copy, read once the pass is done
	uint64_t last_ns;            // when the last pass was launched
	int running;                 // a pass is in flight on stream
	int failed;                  // a pass failed: no more are launched
};

// Allocate and zero the tables bqueue_tables_create() sized (q->table and
// q->once get device pointers).  0 or GPUQ_ECUDA.
int cuda_tables_alloc(struct bqueue *q, struct cuda_tables *t);
// Wait for a pass in flight, then free everything.
void cuda_tables_free(struct bqueue *q, struct cuda_tables *t);
// Every broker tick: collect a finished pass's counts into q->dev_used and
// launch the next one when its interval has passed.
void cuda_tables_tick(struct bqueue *q, struct cuda_tables *t, uint64_t now_ns);

#endif
