// floor_cuda.cu - gpuq-bench floor: one message at a time between this
// host thread and a persistent kernel, through pinned mapped memory, with
// none of gpuq around it.  The host writes a stamped payload (12 bytes and
// the stamp a 16-byte chunk, as gpuq's stamped slots, ipc/stamp.h) and
// spins until every chunk of the echoed result carries the stamp; the
// kernel's loop takes one of the shapes of floor_bench.h.  The shapes
// differ in one thing each, so that their differences say what each
// ingredient of gpuq's kernel costs on this host (benchmarking.md §8.4).
#include <cuda/atomic>
#include <cuda_runtime.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/floor_bench.h"
#include "ipc/atomics.h"
#include "ipc/clock.h"
#include "ipc/stamp.h"
extern "C" {
#include "bench/hist.h"
}

static constexpr uint32_t NSLOTS = 1024; // a ring: each message has a fresh slot
static constexpr uint32_t STRIDE = 32;   // chunks a slot (and a result)
static constexpr uint32_t FREE_BIT = 0x80000000u;
static constexpr uint32_t ROUND_THREADS = 512, ROUND_WARP = ROUND_THREADS / 32 - 1;

typedef cuda::atomic_ref<uint32_t, cuda::thread_scope_system> sys_u32;

struct fargs {
	const uint4 *slots; // host: the producer's stamped slots
	uint4 *res;         // host: the echoed results
	uint32_t *state;    // host: a state word a slot, then the frontier word
	uint4 *vram, *stage;
	volatile uint32_t *stop; // host: set by the producer to give up
	uint32_t n, count, shape, gap;
};

// One probe: chunk `lane` of slot si (lanes below n) and, where the shape
// has one, its state word (lane 0), acquire or relaxed.
static __device__ void probe(const fargs &a, uint32_t si, uint32_t lane, bool acq,
		      uint4 *v, uint32_t *s)
{
	if (lane < a.n)
		*v = __ldcv(a.slots + (size_t)si * STRIDE + lane);
	if (lane == 0 && a.shape >= FLOOR_ACQUIRE)
		*s = acq ? sys_u32(a.state[si]).load(cuda::memory_order_acquire)
			 : __ldcv(&a.state[si]);
}

// Did the probe get message st whole (and, with a state word, published)?
static __device__ bool whole(const fargs &a, uint32_t st, uint32_t lane, uint4 v,
		      uint32_t s)
{
	bool mine = lane >= a.n || v.w == st;
	bool pub = a.shape < FLOOR_ACQUIRE || __shfl_sync(~0u, s, 0) == st;
	return __all_sync(~0u, mine) && pub;
}

// The probing warp waits for message st in slot si; false if told to stop.
static __device__ bool wait_msg(const fargs &a, uint32_t st, uint32_t si,
			 uint32_t lane, uint4 *out)
{
	const bool acq = a.shape == FLOOR_ACQUIRE;
	uint4 va = make_uint4(0, 0, 0, 0), vb = va;
	uint32_t sa = 0, sb = 0;
	if (a.shape == FLOOR_TWO_TRIPS) {
		// The plain protocol: the state word, then the slot it orders.
		while (__shfl_sync(~0u, sys_u32(a.state[si]).load(
						cuda::memory_order_acquire), 0) != st)
			if (*a.stop)
				return false;
		if (lane < a.n)
			*out = __ldcv(a.slots + (size_t)si * STRIDE + lane);
		return true;
	}
	if (a.shape == FLOOR_ONE_READ) {
		for (;;) {
			probe(a, si, lane, false, &va, &sa);
			if (whole(a, st, lane, va, sa))
				break;
			if (*a.stop)
				return false;
		}
		*out = va;
		return true;
	}
	// Two probes in flight: the second is issued before the first is
	// looked at, so a message is seen about half a trip after it lands.
	// Unrolled, so that each probe has registers of its own: a loop that
	// carried the last probe into the next iteration compiled to a copy
	// that waited for that probe before the next went out.
	probe(a, si, lane, acq, &va, &sa);
	__nanosleep(a.gap);
	for (;;) {
#pragma unroll
		for (int k = 0; k < 8; k++) {
			probe(a, si, lane, acq, &vb, &sb);
			if (whole(a, st, lane, va, sa)) {
				*out = va;
				return true;
			}
			__nanosleep(a.gap);
			probe(a, si, lane, acq, &va, &sa);
			if (whole(a, st, lane, vb, sb)) {
				*out = vb;
				return true;
			}
			__nanosleep(a.gap);
		}
		if (*a.stop)
			return false;
	}
}

// Shapes whose result and FREE stores write through the L2 to the host
// (st.global.wt) rather than leave when a fence or the cache sends them.
static __device__ bool written_through(const fargs &a)
{
	return a.shape == FLOOR_WT || a.shape == FLOOR_ROUND_WT;
}

// A result chunk, written back or through as the shape says.
static __device__ void put_res(const fargs &a, size_t at, uint4 v)
{
	if (written_through(a))
		__stwt(&a.res[at], v);
	else
		a.res[at] = v;
}

// After a message: its slot FREE again, and the shapes that fence publish
// a frontier word with a release store, as gpuq's kernel does.
static __device__ void finish(const fargs &a, uint32_t st, uint32_t si)
{
	if (a.shape < FLOOR_ACQUIRE)
		return;
	if (written_through(a))
		__stwt(&a.state[si], FREE_BIT | st);
	else
		a.state[si] = FREE_BIT | st;
	if (a.shape == FLOOR_FENCED || a.shape == FLOOR_ROUND ||
	    a.shape == FLOOR_ROUND_EARLY)
		sys_u32(a.state[NSLOTS]).store(st, cuda::memory_order_release);
}

// FLOOR_ROUND's message: through a VRAM slot, a handler thread that copies
// it to a VRAM stage, and a copy-out from the stage, a barrier between
// each step, as gpuq's windowed kernel goes.
static __device__ void round_msg(const fargs &a, uint4 *buf, uint32_t st,
			  size_t base)
{
	const uint32_t tid = threadIdx.x;
	__syncthreads(); // the list of taken tickets
	if (tid < a.n)
		a.vram[base + tid] = buf[tid];
	__syncthreads();
	if (tid == 5)
		for (uint32_t j = 0; j < a.n; j++)
			a.stage[base + j] = a.vram[base + j];
	__syncthreads();
	if (tid < a.n) {
		uint4 v = a.stage[base + tid];
		put_res(a, base + tid, make_uint4(v.x, v.y, v.z, st));
	}
	__syncthreads();
}

// The prober warp takes message st (slot si) into buf, or sets *quit when
// told to stop.
static __device__ void take_msg(const fargs &a, uint4 *buf, int *quit,
				uint32_t st, uint32_t si, uint32_t lane)
{
	uint4 v = make_uint4(0, 0, 0, 0);
	bool ok = wait_msg(a, st, si, lane, &v);
	buf[lane] = v;
	if (lane == 0 && !ok)
		*quit = 1;
}

static __global__ void floor_consume(fargs a)
{
	__shared__ uint4 buf[32];
	__shared__ int quit;
	const uint32_t lane = threadIdx.x % 32, warp = threadIdx.x / 32;
	const bool early = a.shape == FLOOR_ROUND_EARLY;
	const bool round = a.shape >= FLOOR_ROUND;
	const uint32_t prober = round ? ROUND_WARP : 0;
	if (threadIdx.x == 0)
		quit = 0;
	__syncthreads();
	for (uint32_t i = 0; i < a.count; i++) {
		const uint32_t st = i + 1, si = i % NSLOTS;
		const size_t base = (size_t)si * STRIDE;
		if (round) {
			__syncthreads();
			// FLOOR_ROUND_EARLY's prober took this message while
			// thread 0 finished the last one.
			if (warp == prober && (!early || i == 0))
				take_msg(a, buf, &quit, st, si, lane);
			__syncthreads();
			if (quit)
				return;
			round_msg(a, buf, st, base);
		} else {
			uint4 v = make_uint4(0, 0, 0, 0);
			if (!wait_msg(a, st, si, lane, &v))
				return;
			if (lane < a.n) {
				a.vram[base + lane] = v;
				put_res(a, base + lane,
					make_uint4(v.x, v.y, v.z, st));
			}
		}
		if (threadIdx.x == 0)
			finish(a, st, si);
		else if (early && warp == prober && i + 1 < a.count)
			take_msg(a, buf, &quit, st + 1, (i + 1) % NSLOTS, lane);
	}
}

#ifdef __x86_64__
// The producer's side of message i: write it, stamped, a chunk a single
// 16-byte store, as gpuq's clients write stamped slots (ipc/stamp.h);
// publish its state word where the shape has one; wait for every chunk of
// its result, then check each, read with a single load.  -ETIMEDOUT if it
// takes a second, -EBADMSG if the echo is wrong.
static int one_trip(uint4 *slots, uint4 *res, volatile uint32_t *state, uint32_t n,
	     uint32_t shape, uint32_t i, uint64_t *ns)
{
	const uint32_t st = i + 1, si = i % NSLOTS;
	uint4 *s = slots + (size_t)si * STRIDE, *r = res + (size_t)si * STRIDE;
	uint64_t t0 = ipc_now_ns();
	for (uint32_t j = 0; j < n; j++) {
		const uint4 v = make_uint4(0x5a5a5a5a, i, j, st);
		ipc_chunk_store(&s[j], &v);
	}
	if (shape >= FLOOR_TWO_TRIPS)
		ipc_store_release(&state[si], st);
	// Spin on each chunk's stamp word alone, pausing between reads, as a
	// client waiting for its result would; the bytes are checked after.
	for (uint32_t j = 0; j < n; j++) {
		volatile uint32_t *w = &((volatile uint32_t *)&r[j])[3];
		for (uint32_t k = 0; *w != st; k++) {
			ipc_cpu_relax();
			if ((k & 1023) == 1023 && ipc_now_ns() - t0 > 1000000000ull)
				return -ETIMEDOUT;
		}
	}
	*ns = ipc_now_ns() - t0;
	for (uint32_t j = 0; j < n; j++) {
		uint4 v;
		ipc_chunk_load(&v, &r[j]);
		if (v.y != i || v.z != j || v.x != 0x5a5a5a5a || v.w != st)
			return -EBADMSG;
	}
	return 0;
}
#endif

#define CK(call)                                                            \
	do {                                                                \
		cudaError_t e_ = (call);                                    \
		if (e_ != cudaSuccess) {                                    \
			rc = e_ == cudaErrorNoDevice ||                     \
					     e_ == cudaErrorInsufficientDriver \
				     ? -ENODEV                              \
				     : -EIO;                                \
			snprintf(err, errcap, "%s%s: %s",                   \
				 rc == -ENODEV ? "no usable GPU: " : "",    \
				 #call, cudaGetErrorString(e_));            \
			goto out;                                           \
		}                                                           \
	} while (0)

#ifdef __x86_64__
// One shape: count round trips, percentiles of all but the first tenth,
// from gpuq-bench's latency histogram (bench/hist.h).
static int run_shape(struct floor_bench *b, uint32_t shape, char *err,
		     size_t errcap)
{
	const size_t bytes = (size_t)NSLOTS * STRIDE * sizeof(uint4);
	const uint32_t n = 2 + ipc_stamp_chunks(b->payload), skip = b->count / 10;
	uint4 *slots = NULL, *res = NULL, *vram = NULL, *stage = NULL;
	uint32_t *state = NULL, *stop = NULL;
	struct hist *lat = (struct hist *)malloc(sizeof(*lat));
	cudaStream_t s = NULL;
	fargs a;
	int rc = 0;
	if (!lat) {
		snprintf(err, errcap, "out of memory");
		return -ENOMEM;
	}
	hist_init(lat);
	CK(cudaHostAlloc((void **)&slots, bytes, cudaHostAllocMapped));
	CK(cudaHostAlloc((void **)&res, bytes, cudaHostAllocMapped));
	CK(cudaHostAlloc((void **)&state, (NSLOTS + 1) * 4, cudaHostAllocMapped));
	CK(cudaHostAlloc((void **)&stop, 4, cudaHostAllocMapped));
	memset(slots, 0, bytes);
	memset(res, 0, bytes);
	memset(state, 0, (NSLOTS + 1) * 4);
	*stop = 0;
	CK(cudaMalloc((void **)&vram, bytes));
	CK(cudaMalloc((void **)&stage, bytes));
	CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
	CK(cudaHostGetDevicePointer((void **)&a.slots, slots, 0));
	CK(cudaHostGetDevicePointer((void **)&a.res, res, 0));
	CK(cudaHostGetDevicePointer((void **)&a.state, state, 0));
	CK(cudaHostGetDevicePointer((void **)&a.stop, stop, 0));
	a.vram = vram;
	a.stage = stage;
	a.n = n;
	a.count = b->count;
	a.gap = b->gap_ns;
	a.shape = shape;
	floor_consume<<<1, shape >= FLOOR_ROUND ? ROUND_THREADS : 32, 0, s>>>(a);
	CK(cudaGetLastError());
	for (uint32_t i = 0; i < b->count && !rc; i++) {
		uint64_t ns = 0;
		rc = one_trip(slots, res, state, n, shape, i, &ns);
		if (!rc && i >= skip)
			hist_record(lat, ns);
	}
	if (rc) {
		snprintf(err, errcap, "%s: %s", floor_shape_name((enum floor_shape)shape),
			 rc == -ETIMEDOUT ? "no result within 1 s"
					  : "a result is not the echo of its message");
		*(volatile uint32_t *)stop = 1;
	}
	CK(cudaStreamSynchronize(s));
	if (!rc) {
		b->r[shape].p50_us = hist_percentile(lat, 50) / 1e3;
		b->r[shape].p90_us = hist_percentile(lat, 90) / 1e3;
		b->r[shape].p99_us = hist_percentile(lat, 99) / 1e3;
		b->r[shape].p999_us = hist_percentile(lat, 99.9) / 1e3;
	}
out:
	if (s)
		cudaStreamDestroy(s);
	cudaFree(vram);
	cudaFree(stage);
	cudaFreeHost(slots);
	cudaFreeHost(res);
	cudaFreeHost(state);
	cudaFreeHost(stop);
	free(lat);
	return rc;
}
#else
static int run_shape(struct floor_bench *, uint32_t, char *, size_t)
{
	return -ENOTSUP;
}
#endif

extern "C" int floor_bench_cuda(struct floor_bench *b, char *err,
				size_t errcap)
{
	int rc = 0, ndev = 0;
#ifndef __x86_64__
	snprintf(err, errcap, "needs 16-byte host stores (x86-64)");
	return -ENOTSUP;
#endif
	CK(cudaGetDeviceCount(&ndev));
	for (uint32_t shape = 0; shape < FLOOR_NSHAPES && !rc; shape++)
		rc = run_shape(b, shape, err, errcap);
out:
	return rc;
}
