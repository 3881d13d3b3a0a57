/*
 * kargs.h - what a consumer kernel is told about its queue: device views of
 * the queue's shared memory, its VRAM ring and the launch geometry.
 *
 * gpuqd fills it (gpu/backend_cuda.cu) and passes it by value to the
 * kernels in gpu/consume.cuh, whether they are gpuqd's own or a user
 * handler module's (gpu/gpuq_handler.cuh).  A module built against another
 * version of this struct is refused at load: GPUQ_KERNEL_ABI names it.
 */
#ifndef GPUQ_GPU_KARGS_H
#define GPUQ_GPU_KARGS_H

#include <stdint.h>

#include "ipc/layout.h"
#include "broker/kvtable.h"

/* Bump on any change to struct kargs, struct gpuq_dctl or the kernels'
 * names and parameters. */
#define GPUQ_KERNEL_ABI ((IPC_LAYOUT_VERSION << 16) | 4u)

/* Tickets per window = threads per worker block of the windowed kernel.
 * 512 keeps the copy loops long enough to fill the link and the handler's
 * registers within limits (the kernel is bounded to it); a ring too small
 * for every worker's window gets smaller ones (fitted_window).
 * GPUQ_CUDA_WINDOW (32..1024, a power of two) overrides both for tuning. */
#define GPUQ_DEFAULT_WINDOW 512u

/* Kernel names a handler module must export (extern "C"). */
#define GPUQ_KERNEL_WINDOWED "gpuq_consume_windowed"
#define GPUQ_KERNEL_ORDERED "gpuq_consume_ordered"
/* ... and for queues with hash tables (table_slots, exactly_once) */
#define GPUQ_KERNEL_WINDOWED_TABLES "gpuq_consume_windowed_tables"
#define GPUQ_KERNEL_ORDERED_TABLES "gpuq_consume_ordered_tables"
#define GPUQ_KERNEL_ABI_SYMBOL "gpuq_kernel_abi"

/*
 * Control words in VRAM.  One thread (the pump) reads the host-side head,
 * stop and pause words over PCIe and mirrors them here, so that the worker
 * blocks poll device memory instead of each putting reads on the link and
 * snooping the cache line that producers are advancing.
 */
struct gpuq_dctl {
	uint64_t head;     /* mirror of ctl[0].head (with IPC_HEAD_CLOSED) */
	uint32_t stop;     /* mirror of the host stop flag */
	uint32_t exited;   /* worker blocks that have returned */
	uint64_t pause;    /* mirror of hdr.paused | hdr.pause_gen << 32 */
	uint64_t pad[13];
};

/*
 * What the kernel's table housekeeping (gpu/maint.cuh) reports, in pinned
 * mapped host memory: the host cannot scan tables in VRAM.  passes is
 * written last, after a system fence, so a host that sees it change reads
 * that pass's counts.
 */
struct gpuq_maint {
	uint64_t used[2]; /* slots in use at the last pass: state, dedupe */
	uint64_t passes;  /* passes finished */
};

/* Profile counters per worker block (cycles, except the counts). */
enum gpuq_prof {
	GPUQ_PROF_IDLE_ROUNDS, GPUQ_PROF_WORK_ROUNDS, GPUQ_PROF_TICKETS,
	GPUQ_PROF_SPEC_HITS, /* rounds whose read-ahead was used */
	GPUQ_PROF_LOOK, GPUQ_PROF_COPY_IN, GPUQ_PROF_HANDLER,
	GPUQ_PROF_COPY_OUT, /* entries to the completion areas, to the barrier */
	GPUQ_PROF_FENCE,    /* the system fence before the DONE marks */
	GPUQ_PROF_RELEASE,  /* DONE marks and FREE states issued */
	GPUQ_PROF_PUBLISH, /* counters and frontier after a working round */
	GPUQ_PROF_N
};

struct kargs {
	/* Device views of the queue's shared memory (mapped, pinned). */
	uint64_t *states;
	uint8_t *slots;
	uint8_t *cq;
	uint8_t *dlq;
	struct ipc_ctl *ctl;
	struct ipc_worker *workers;
	struct ipc_client *clients;
	/* hdr.paused, read with hdr.pause_gen as one 64-bit word */
	uint64_t *pause;
	uint32_t *stop; /* pinned host word set by gpuqd to stop the kernel */
	/* Device memory. */
	struct gpuq_dctl *dctl;
	uint8_t *vram;  /* the VRAM ring: one slot per host slot */
	uint8_t *stage; /* per slot: a completion entry being built */
	/* GPUQ_CUDA_PROFILE=1: per worker block, GPUQ_PROF_N counters of
	 * where the windowed kernel's time goes; NULL otherwise. */
	unsigned long long *prof;
	uint64_t mask, cq_mask, dlq_mask;
	uint32_t capacity, slot_stride, cq_stride, cq_capacity, stage_stride;
	uint32_t result_bytes, max_clients, slot_bytes, handler;
	uint32_t max_attempts, dlq_per_worker, dlq_stride;
	uint32_t nworkers; /* worker blocks; the windowed kernel adds a pump */
	uint32_t window;   /* tickets per window of the windowed kernels (at
			      most the threads of a block) */
	uint32_t fault_ppm, fault_attempts;
	uint32_t stamped; /* 1: host slots in the stamped format */
	uint32_t cq_stamped; /* 1: completion entries in the stamped format
				(ipc/cq.h): written with no fence */
	/* The queue's hash tables in VRAM (design.md §15): handler state
	 * (gpuq_hmsg.table) and exactly-once records; .slots NULL where the
	 * queue has none.  Records live once_window_ns (0: forever) by the
	 * GPU's %globaltimer. */
	struct gpuq_kvt table, once;
	uint64_t once_window_ns;
	/* Where housekeeping reports (device view); NULL without tables. */
	struct gpuq_maint *maint;
};

#endif
