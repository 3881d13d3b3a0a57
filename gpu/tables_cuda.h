// tables_cuda.h - a queue's hash tables in VRAM (design.md §15), host side:
// allocation, and collecting the counts of slots in use that the kernel's
// housekeeping (gpu/maint.cuh) reports, since the host cannot scan tables
// in VRAM the way it scans its own.
#ifndef GPUQ_GPU_TABLES_CUDA_H
#define GPUQ_GPU_TABLES_CUDA_H

#include <stdint.h>

struct bqueue;
struct gpuq_maint;

struct cuda_tables {
	struct gpuq_maint *maint;  // pinned, mapped: the kernel's reports
	struct gpuq_maint *dmaint; // the device's view of it (kargs.maint)
	uint64_t passes;           // the last pass collected
};

// Allocate and zero the tables bqueue_tables_create() sized (q->table and
// q->once get device pointers) and the report area.  0 or GPUQ_ECUDA.
int cuda_tables_alloc(struct bqueue *q, struct cuda_tables *t);
// Free everything (the kernel has ended).
void cuda_tables_free(struct bqueue *q, struct cuda_tables *t);
// Every broker tick: a newly finished pass's counts into q->dev_used.
void cuda_tables_tick(struct bqueue *q, struct cuda_tables *t);

#endif
