// backend_cuda.cu - the CUDA backend, host side: map a queue's shared
// memory for the GPU, allocate its VRAM ring, launch the persistent
// consumer kernels (gpu/consume.cuh) and stop them.
#include <cuda_runtime.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern "C" {
#include "config.h"
#include "broker/broker.h"
#include "ipc/clock.h"
#include "libclient/gpuq.h"
}
#include "gpu/consume.cuh"
#include "gpu/cuda_call.h"
#include "gpu/tables_cuda.h"

struct cuda_state {
	void *dev_base;     // device view of the shared memory
	uint8_t *vram;      // the VRAM ring
	uint8_t *stage;     // completion entries being built
	struct gpuq_dctl *dctl;
	unsigned long long *prof; // GPUQ_CUDA_PROFILE counters, or NULL
	double sm_share;    // SMs' worth of blocks this queue holds resident
	uint32_t *stop;     // pinned host flag the kernel polls
	cudaStream_t stream;
	cudaLibrary_t lib;  // the queue's handler module, if it has one
	cudaIpcMemHandle_t ipc;
	struct cuda_tables tables; // the queue's hash tables' housekeeping
	int registered;
	int faulted;        // the kernel died: a device fault was reported
};

// The first CUDA call gpuqd makes (queue.c asks before it picks a
// backend), so it also sets how kernels load.  Eagerly: with the runtime's
// default lazy loading, a kernel is loaded at its first launch, and that
// load may wait for the context to go idle, which it never does while a
// persistent kernel runs; the first table maintenance pass (then a kernel
// of its own), or a second queue's kernel, hung gpuqd (seen on an H200).
// Loading everything at start costs milliseconds.
extern "C" int backend_cuda_available(void)
{
	int n = 0;
	setenv("CUDA_MODULE_LOADING", "EAGER", 1);
	return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

// SMs' worth of resident blocks held by all running queues: every queue's
// persistent kernel must be resident at once, or a later queue's kernel
// never starts.  Only touched from gpuqd's main thread.
static double sm_used;
// Queues whose kernel is running (started, not yet stopped).
static unsigned kernels_running;

static void cuda_free_state(struct cuda_state *s, struct bqueue *q)
{
	if (s->stream)
		CUDA_CALL(cudaStreamDestroy(s->stream));
	cuda_tables_free(q, &s->tables);
	if (s->vram)
		CUDA_CALL(cudaFree(s->vram));
	if (s->stage)
		CUDA_CALL(cudaFree(s->stage));
	if (s->dctl)
		CUDA_CALL(cudaFree(s->dctl));
	if (s->prof)
		CUDA_CALL(cudaFree(s->prof));
	sm_used -= s->sm_share;
	if (s->stop)
		CUDA_CALL(cudaFreeHost(s->stop));
	if (s->registered)
		CUDA_CALL(cudaHostUnregister(q->r.base));
	if (s->lib)
		CUDA_CALL(cudaLibraryUnload(s->lib));
	free(s);
}

// $name as a power of two in lo..hi, else def (an unset name silently, a
// value out of range with a log line saying what it wants; why: what
// narrows the range, or "").
static uint32_t env_pow2(const char *name, uint32_t lo, uint32_t hi,
			 uint32_t def, const char *why)
{
	const char *e = getenv(name);
	unsigned long v;
	if (!e)
		return def;
	v = strtoul(e, NULL, 10);
	if (v >= lo && v <= hi && !(v & (v - 1)))
		return (uint32_t)v;
	blog(0, "%s=%s ignored: want a power of two in %u..%u%s", name, e, lo,
	     hi, why);
	return def;
}

// The default window of a queue whose kernel runs a ticket per thread:
// GPUQ_DEFAULT_WINDOW, halved (down to 32) until the workers' windows together
// span no more than the ring.  A ring holds at most capacity tickets in
// flight, so windows past that wait on tickets that cannot be published
// yet, and their blocks idle.  With 4 KB slots, capacity 16384 and 64
// workers, windows of 256 moved 40.5 GB/s on an H200 and windows of 512
// 29.2 GB/s; 32 workers at 512 (spanning the ring) 30.5, at 256 (half of
// it) 17.6 (benchmarking.md §8.2).
static uint32_t fitted_window(uint32_t capacity, uint32_t nworkers)
{
	uint32_t w = GPUQ_DEFAULT_WINDOW;
	while (w > 32 && (uint64_t)w * nworkers > capacity)
		w /= 2;
	return w;
}

// Threads of a worker block, which is the window of a ticket per thread.
// KV: the kv kernel, whose window is separate (kv_window) and whose
// threads stay GPUQ_DEFAULT_WINDOW, warps running a message each.
static uint32_t window_size(uint32_t capacity, uint32_t nworkers, bool tables,
			    bool kv)
{
	uint32_t max = tables ? gpuq_dev::TABLES_MAX_WINDOW : gpuq_dev::MAX_WINDOW;
	uint32_t def = kv ? GPUQ_DEFAULT_WINDOW : fitted_window(capacity, nworkers);
	uint32_t w = env_pow2("GPUQ_CUDA_WINDOW", 32, max, def,
			      tables ? " for a queue with tables" : "");
	return w < capacity ? w : capacity;
}

// Threads of the warps that keep a queue's tables, with the pump's warp
// where they share its block.
#define MAINT_THREADS 64u

// Tickets per window of the kv kernel (at most max, the window a thread
// per ticket would have): one per warp by default, since a warp runs one
// kv message at a time.  A window of a ticket per thread (512) held every
// message in flight, so one block of the grid ran them all, about 20 a
// round of 230 us, while the others waited (H200, gpuq-bench kv).
// GPUQ_CUDA_KV_WINDOW (1..threads, a power of two) overrides it.
static uint32_t kv_window(uint32_t threads, uint32_t max)
{
	uint32_t w = env_pow2("GPUQ_CUDA_KV_WINDOW", 1, threads, threads / 32,
			      "");
	return w < max ? w : max;
}

// The device's view of the queue, for the kernels.
static void fill_kargs(struct kargs *a, const struct cuda_state *s,
		       const struct bqueue *q, uint32_t stage_stride)
{
	const struct ipc_ring *r = &q->r;
	const struct ipc_hdr *h = r->hdr;
	uint8_t *dev = (uint8_t *)s->dev_base;
	memset(a, 0, sizeof(*a));
	a->states = (uint64_t *)(dev + h->states_off);
	a->slots = dev + h->slots_off;
	a->cq = dev + h->cq_off;
	a->dlq = dev + h->dlq_off;
	a->ctl = (struct ipc_ctl *)(dev + h->ctl_off);
	a->workers = (struct ipc_worker *)(dev + h->workers_off);
	a->clients = (struct ipc_client *)(dev + h->clients_off);
	a->pause = (uint64_t *)(dev + offsetof(struct ipc_hdr, paused));
	a->stop = s->stop;
	a->dctl = s->dctl;
	a->vram = s->vram;
	a->stage = s->stage;
	a->prof = s->prof;
	a->mask = r->mask;
	a->cq_mask = r->cq_mask;
	a->dlq_mask = r->dlq_mask;
	a->capacity = h->capacity;
	a->slot_stride = h->slot_stride;
	a->cq_stride = h->cq_stride;
	a->cq_capacity = h->cq_capacity;
	a->stage_stride = stage_stride;
	a->result_bytes = h->result_bytes;
	a->max_clients = h->max_clients;
	a->slot_bytes = h->slot_bytes;
	a->handler = q->handler_id;
	a->max_attempts = h->max_attempts;
	a->dlq_per_worker = h->dlq_per_worker;
	a->dlq_stride = h->dlq_stride;
	a->nworkers = h->nworkers;
	a->fault_ppm = h->fail_ppm;
	a->fault_attempts = h->fail_attempts;
	a->stamped = h->stamped;
	a->cq_stamped = h->cq_stamped;
	a->table = q->table;
	a->once = q->once;
	a->once_window_ns = q->once_window_ns;
	a->maint = s->tables.dmaint;
}

// A persistent kernel's blocks must all be resident at once, next to every
// other queue's (a block waiting for one that is never scheduled waits
// forever): refuse a grid the device cannot hold, rather than hang.
static int check_resident(struct cuda_state *s, const void *kernel,
			  uint32_t blocks, uint32_t threads, const char *queue)
{
	int dev = 0, per_sm = 0, sms = 0;
	double share;
	if (CUDA_CALL(cudaGetDevice(&dev)) ||
	    CUDA_CALL(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount,
					     dev)))
		return GPUQ_ECUDA;
	if (CUDA_CALL(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
		    &per_sm, kernel, (int)threads, 0))) {
		blog(0, "queue %s: assuming one block per SM", queue);
		per_sm = 1;
	}
	if (per_sm == 0) { // too many registers per thread for this size
		blog(0, "queue %s: a block of %u threads does not fit on an SM "
			"of this GPU at all; lower GPUQ_CUDA_WINDOW",
		     queue, threads);
		return GPUQ_EBACKEND;
	}
	share = (double)blocks / per_sm;
	if (sm_used + share > sms) {
		blog(0, "queue %s: %u blocks of %u threads do not fit beside the "
			"other queues' kernels (%d SMs, %d such blocks per SM, "
			"%.1f SMs taken); lower workers",
		     queue, blocks, threads, sms, per_sm, sm_used);
		return GPUQ_EBACKEND;
	}
	s->sm_share = share;
	sm_used += share;
	return 0;
}

// Queues with hash tables run the kernels that have the table code.
static bool has_tables(const struct bqueue *q)
{
	return q->table.nbuckets || q->once.nbuckets;
}

// gpuqd's own kernel for unordered kv queues: a warp per message
// (gpu/kv_warp.cuh).  Only its kv step is compiled in, which keeps it
// within 128 registers with little spilled; the tables kernel, which
// also carries the thread-per-message path with exactly-once and
// retries, spilled 1.4 KB a thread (to L2, at 512 threads a block).
extern "C" __global__ void __launch_bounds__(gpuq_dev::TABLES_MAX_WINDOW, 1)
gpuq_consume_windowed_kv(kargs a)
{
	gpuq_dev::consume_windowed<true, true>(a);
}

// Does the queue run gpuq_consume_windowed_kv?  Exactly-once and fault
// injection wrap one thread's handler run, so those queues keep the
// tables kernel.
static bool kv_kernel(const struct bqueue *q)
{
	const struct ipc_hdr *h = q->r.hdr;
	return q->handler_id == GPUQ_H_KV && q->table.nbuckets &&
	       !q->once.nbuckets && !h->ordered && !h->fail_ppm &&
	       !q->conf.handler_module[0];
}

// The consumer kernels, gpuqd's own and their names in a handler module,
// by [has tables][ordered].
static const void *const builtin_kernels[2][2] = {
	{ (const void *)gpuq_consume_windowed, (const void *)gpuq_consume_ordered },
	{ (const void *)gpuq_consume_windowed_tables,
	  (const void *)gpuq_consume_ordered_tables },
};
static const char *const kernel_names[2][2] = {
	{ GPUQ_KERNEL_WINDOWED, GPUQ_KERNEL_ORDERED },
	{ GPUQ_KERNEL_WINDOWED_TABLES, GPUQ_KERNEL_ORDERED_TABLES },
};

static const void *builtin_kernel(const struct bqueue *q)
{
	if (kv_kernel(q))
		return (const void *)gpuq_consume_windowed_kv;
	return builtin_kernels[has_tables(q)][q->r.hdr->ordered != 0];
}

// A handler module: a .fatbin/.cubin built from gpu/gpuq_handler.cuh,
// carrying the same kernels as gpuqd's around the user's handler.  Refused
// unless it was built against this gpuqd's kernel ABI.
static int load_module(struct cuda_state *s, const struct bqueue *q,
		       const void **kernel)
{
	const char *path = q->conf.handler_module, *name;
	cudaKernel_t k;
	void *abi_dev;
	size_t sz = 0;
	uint32_t abi = 0;
	name = kernel_names[has_tables(q)][q->r.hdr->ordered != 0];
	if (CUDA_CALL(cudaLibraryLoadFromFile(&s->lib, path, NULL, NULL, 0, NULL,
					      NULL, 0))) {
		s->lib = NULL;
		blog(0, "queue %s: cannot load handler module %s", q->conf.name,
		     path);
		return GPUQ_EBACKEND;
	}
	if (cudaLibraryGetGlobal(&abi_dev, &sz, s->lib,
				 GPUQ_KERNEL_ABI_SYMBOL) != cudaSuccess ||
	    sz != sizeof(abi) ||
	    CUDA_CALL(cudaMemcpy(&abi, abi_dev, sizeof(abi),
				 cudaMemcpyDeviceToHost))) {
		blog(0, "queue %s: %s is not a gpuq handler module (no %s); "
			"build it from gpu/gpuq_handler.cuh",
		     q->conf.name, path, GPUQ_KERNEL_ABI_SYMBOL);
		return GPUQ_EBACKEND;
	}
	if (abi != GPUQ_KERNEL_ABI) {
		blog(0, "queue %s: %s was built for kernel ABI %#x, this gpuqd "
			"has %#x: rebuild it against this gpuq",
		     q->conf.name, path, abi, GPUQ_KERNEL_ABI);
		return GPUQ_EBACKEND;
	}
	if (CUDA_CALL(cudaLibraryGetKernel(&k, s->lib, name))) {
		blog(0, "queue %s: %s has no kernel %s", q->conf.name, path, name);
		return GPUQ_EBACKEND;
	}
	*kernel = (const void *)k;
	blog(1, "queue %s: handler module %s loaded", q->conf.name, path);
	return 0;
}

static int cuda_launch(struct cuda_state *s, struct bqueue *q,
		       const struct kargs *a)
{
	const struct ipc_hdr *h = q->r.hdr;
	const void *k = builtin_kernel(q);
	bool tables = has_tables(q), kv = kv_kernel(q);
	uint32_t blocks, threads;
	uint32_t window = window_size(h->capacity, h->nworkers, tables, kv);
	struct kargs ka = *a;
	void *args[] = { (void *)&ka };
	// Where there are tables, a warp the kernel has to spare keeps them
	// (gpu/maint.cuh): block 0's second warp and on in the windowed
	// kernels, so that block has at least 64 threads; an extra block of
	// 64 in the ordered ones.
	if (h->ordered) {
		blocks = h->nworkers + (tables ? 1 : 0);
		threads = tables ? MAINT_THREADS : 1;
	} else {
		blocks = h->nworkers + 1;
		threads = tables && window < MAINT_THREADS ? MAINT_THREADS
							   : window;
	}
	ka.window = kv ? kv_window(threads, window) : window;
	int rc = q->conf.handler_module[0] ? load_module(s, q, &k) : 0;
	if (rc)
		return rc;
	rc = check_resident(s, k, blocks, threads, q->conf.name);
	if (rc)
		return rc;
	if (CUDA_CALL(cudaLaunchKernel(k, dim3(blocks), dim3(threads), args, 0,
				       s->stream)))
		return GPUQ_ECUDA;
	blog(1, "queue %s: %u worker block(s) of %u thread(s)%s, windows of %u "
		"ticket(s)", q->conf.name, h->nworkers, threads,
	     h->ordered ? ", ordered" : " + pump", ka.window);
	return 0;
}

static cudaError_t alloc_prof(struct cuda_state *s, uint32_t nworkers)
{
	size_t n = (size_t)nworkers * GPUQ_PROF_N * sizeof(*s->prof);
	const char *e = getenv("GPUQ_CUDA_PROFILE");
	if (!e || !*e || *e == '0')
		return cudaSuccess;
	if (CUDA_CALL(cudaMalloc(&s->prof, n)))
		return cudaErrorMemoryAllocation;
	return CUDA_CALL(cudaMemset(s->prof, 0, n));
}

// Where the windowed kernel's time went, summed over its worker blocks.
static void report_prof(const struct cuda_state *s, const struct bqueue *q)
{
	static const char *const names[] = { "look", "copy_in", "handler",
					     "copy_out", "fence", "release",
					     "publish" };
	unsigned long long tot[GPUQ_PROF_N] = { 0 }, *all;
	uint32_t nw = q->r.hdr->nworkers;
	int dev = 0, khz = 1;
	char line[256];
	size_t used = 0;
	all = (unsigned long long *)calloc((size_t)nw * GPUQ_PROF_N, sizeof(*all));
	if (!all || CUDA_CALL(cudaMemcpy(all, s->prof,
					 (size_t)nw * GPUQ_PROF_N * sizeof(*all),
					 cudaMemcpyDeviceToHost))) {
		free(all);
		return;
	}
	for (uint32_t w = 0; w < nw; w++)
		for (int i = 0; i < GPUQ_PROF_N; i++)
			tot[i] += all[(size_t)w * GPUQ_PROF_N + i];
	free(all);
	cudaGetDevice(&dev);
	cudaDeviceGetAttribute(&khz, cudaDevAttrClockRate, dev);
	for (int i = GPUQ_PROF_LOOK; i < GPUQ_PROF_N && used < sizeof(line); i++)
		used += (size_t)snprintf(line + used, sizeof(line) - used,
					 " %s %.2f", names[i - GPUQ_PROF_LOOK],
					 tot[GPUQ_PROF_WORK_ROUNDS]
						 ? tot[i] * 1000.0 / khz /
							   tot[GPUQ_PROF_WORK_ROUNDS]
						 : 0.0);
	blog(0, "queue %s profile: %llu work rounds (%.1f tickets each, %llu "
		"read ahead), %llu idle rounds; us per work round:%s",
	     q->conf.name, tot[GPUQ_PROF_WORK_ROUNDS],
	     tot[GPUQ_PROF_WORK_ROUNDS]
		     ? (double)tot[GPUQ_PROF_TICKETS] / tot[GPUQ_PROF_WORK_ROUNDS]
		     : 0.0,
	     tot[GPUQ_PROF_SPEC_HITS], tot[GPUQ_PROF_IDLE_ROUNDS], line);
}

// GPU producers' copies and kernels run beside gpuqd's persistent kernels
// only under NVIDIA MPS; without it the contexts time-slice (a producer's
// small copies ran at ~420/s next to a persistent kernel on an H100).  Say
// once which it is: the MPS control pipe is in $CUDA_MPS_PIPE_DIRECTORY or
// /tmp/nvidia-mps.
static void log_mps_once(void)
{
	static int done;
	const char *dir = getenv("CUDA_MPS_PIPE_DIRECTORY");
	char path[512];
	if (done)
		return;
	done = 1;
	snprintf(path, sizeof(path), "%s/control",
		 dir && *dir ? dir : "/tmp/nvidia-mps");
	if (access(path, F_OK) == 0)
		blog(0, "MPS: control daemon found (%s): GPU producers run "
			"beside gpuqd's kernels", path);
	else
		blog(0, "MPS: not running (no %s): GPU producers' copies and "
			"kernels time-slice with gpuqd's kernels", path);
}

static int cuda_start(struct bqueue *q)
{
	struct cuda_state *s = (struct cuda_state *)calloc(1, sizeof(*s));
	struct ipc_ring *r = &q->r;
	size_t nslots = (size_t)r->hdr->nrings * r->hdr->capacity;
	/* A stamped entry's result is copied out 12 bytes a chunk, and the
	 * last chunk's 12 are read whole: room for them in every staged one. */
	uint32_t rb = r->hdr->cq_stamped
			      ? ipc_stamp_chunks(r->hdr->result_bytes) * IPC_STAMP_DATA
			      : r->hdr->result_bytes;
	uint32_t stage_stride = IPC_CQ_HDR_BYTES + ((rb + 15) & ~15u);
	struct kargs a;
	int rc = GPUQ_ECUDA;
	if (!s)
		return -ENOMEM;
	log_mps_once();
	if (stage_stride > r->hdr->cq_stride) {
		rc = GPUQ_EBACKEND;
		goto fail;
	}
	if (CUDA_CALL(cudaHostRegister(r->base, r->size,
				       cudaHostRegisterMapped |
					       cudaHostRegisterPortable)))
		goto fail;
	s->registered = 1;
	if (CUDA_CALL(cudaHostGetDevicePointer(&s->dev_base, r->base, 0)) ||
	    CUDA_CALL(cudaMalloc(&s->vram, nslots * r->hdr->slot_stride)) ||
	    CUDA_CALL(cudaMalloc(&s->stage, nslots * stage_stride)) ||
	    CUDA_CALL(cudaMalloc(&s->dctl, sizeof(*s->dctl))) ||
	    CUDA_CALL(cudaMemset(s->dctl, 0, sizeof(*s->dctl))) ||
	    alloc_prof(s, r->hdr->nworkers) ||
	    CUDA_CALL(cudaIpcGetMemHandle(&s->ipc, s->vram)) ||
	    CUDA_CALL(cudaHostAlloc(&s->stop, sizeof(uint32_t),
				    cudaHostAllocMapped)) ||
	    CUDA_CALL(cudaStreamCreateWithFlags(&s->stream,
						cudaStreamNonBlocking)) ||
	    cuda_tables_alloc(q, &s->tables))
		goto fail;
	*s->stop = 0;
	fill_kargs(&a, s, q, stage_stride);
	rc = cuda_launch(s, q, &a);
	if (rc)
		goto fail;
	q->be_state = s;
	kernels_running++;
	return 0;
fail:
	if (kernels_running) {
		// Freeing device memory waits for every kernel of the context,
		// and another queue's runs until gpuqd stops it, after this
		// failed start: leave what this queue took to the process's
		// exit, which a queue that cannot start leads to.
		blog(1, "queue %s: its CUDA allocations are left to gpuqd's exit",
		     q->conf.name);
		free(s);
		return rc;
	}
	cuda_free_state(s, q);
	return rc;
}

// The kernel ends soon after it reads the stop flag: the blocks' polls and
// the housekeeping's sleeps are short.
static void cuda_halt(struct bqueue *q)
{
	struct cuda_state *s = (struct cuda_state *)q->be_state;
	if (s)
		__atomic_store_n(s->stop, 1u, __ATOMIC_RELEASE);
}

// A kernel that takes this long to end after its stop flag is logged.
#define SLOW_END_NS 1000000000ull

static void cuda_stop(struct bqueue *q)
{
	struct cuda_state *s = (struct cuda_state *)q->be_state;
	uint64_t t0 = ipc_now_ns(), took;
	if (!s)
		return;
	cuda_halt(q);
	CUDA_CALL(cudaStreamSynchronize(s->stream));
	kernels_running--;
	took = ipc_now_ns() - t0;
	if (took >= SLOW_END_NS)
		blog(0, "queue %s: its kernel took %.0f ms to end", q->conf.name,
		     (double)took / 1e6);
	if (s->prof)
		report_prof(s, q);
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

// Every tick: is the kernel still running?  A trap, an illegal address or
// any other sticky error ends it and poisons the context; so does an exit
// the broker did not ask for (intake still open).  The broker then follows
// the device fault policy (broker/ctl.c).
static int cuda_health(struct bqueue *q)
{
	struct cuda_state *s = (struct cuda_state *)q->be_state;
	cudaError_t e;
	if (!s || s->faulted)
		return s && s->faulted ? GPUQ_ECUDA : 0;
	e = cudaStreamQuery(s->stream);
	if (e == cudaErrorNotReady || (e == cudaSuccess && q->closed))
		return 0;
	s->faulted = 1;
	if (e == cudaSuccess)
		blog(0, "queue %s: device fault: the consumer kernel exited on its "
			"own", q->conf.name);
	else
		blog(0, "queue %s: device fault: %s (%s)", q->conf.name,
		     cudaGetErrorName(e), cudaGetErrorString(e));
	return GPUQ_ECUDA;
}

static void cuda_tick(struct bqueue *q, uint64_t now_ns)
{
	struct cuda_state *s = (struct cuda_state *)q->be_state;
	(void)now_ns;
	if (s && !s->faulted)
		cuda_tables_tick(q, &s->tables);
}

extern "C" const struct backend_ops backend_cuda_ops = {
	"cuda", cuda_start, cuda_stop, cuda_ipc_handle, cuda_health, cuda_tick,
	cuda_halt,
};
