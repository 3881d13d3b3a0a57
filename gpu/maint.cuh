// maint.cuh - a queue's table housekeeping, run inside its consumer kernel.
//
// A queue with hash tables needs work that no message asks for: expiring
// the exactly-once records whose window has passed, and counting the
// slots in use of both tables for /metrics (the host cannot scan tables in
// VRAM).  Threads the persistent kernel has to spare do it, every
// MAINT_INTERVAL_NS: the warps of block 0 past the pump's in the windowed
// kernels, an extra block in the ordered ones (gpu/consume.cuh).
//
// It used to be a short kernel launched beside the persistent one.  That
// needed SMs left free by every queue's kernels, and under
// compute-sanitizer, which runs kernels one at a time, the launch held
// gpuqd's event loop until the persistent kernel ended: clients timed out
// connecting.  Inside the kernel there is no second launch to wait for.
#ifndef GPUQ_GPU_MAINT_CUH
#define GPUQ_GPU_MAINT_CUH

#include <stdint.h>

#include "gpu/kargs.h"
#include "broker/handlers.h"

namespace gpuq_dev {

constexpr uint64_t MAINT_INTERVAL_NS = 100000000ull;
// How long the timekeeper sleeps between looks at the clock and the stop
// flag (__nanosleep sleeps at most about a millisecond).
constexpr unsigned MAINT_SLEEP_NS = 1000000;

// Named barrier 1 over the n housekeeping threads (whole warps): the
// block's other threads, the pump's warp, never join it.
__device__ inline void maint_sync(uint32_t n)
{
	asm volatile("bar.sync 1, %0;" : : "r"(n) : "memory");
}

// One pass by housekeeping thread i of n: expire what has expired, count
// what is in use, and add the counts into sum (shared).  Expiry takes the
// key like any writer (gpuq_once_expire, the CPU backend's too), so a
// record in use by a run is never pulled out from under it.
__device__ inline void maint_pass(const kargs &a, uint32_t i, uint32_t n,
				  unsigned long long *sum)
{
	struct gpuq_kvt table = a.table, once = a.once;
	uint64_t now = gpuq_once_now_ns();
	unsigned long long used[2] = { 0, 0 };
	if (table.slots)
		for (uint64_t k = i; k < table.nbuckets * GPUQ_KVT_BUCKET; k += n)
			used[0] += gpuq_kvt_slot_used(&table, k);
	if (once.slots)
		for (uint64_t k = i; k < once.nbuckets * GPUQ_KVT_BUCKET; k += n) {
			if (a.once_window_ns &&
			    gpuq_once_expire(&once, k, now, a.once_window_ns))
				continue;
			used[1] += gpuq_kvt_slot_used(&once, k);
		}
	for (int t = 0; t < 2; t++) {
		for (int off = 16; off > 0; off /= 2)
			used[t] += __shfl_down_sync(0xffffffffu, used[t], off);
		if (threadIdx.x % 32 == 0 && used[t])
			atomicAdd(&sum[t], used[t]);
	}
}

// The housekeeping loop of the block's threads first .. first + n - 1 (n
// a multiple of 32), until gpuqd sets the stop flag.  The first of them
// keeps time and publishes each pass's counts.
__device__ inline void maint(const kargs &a, uint32_t first, uint32_t n)
{
	__shared__ unsigned long long sum[2];
	__shared__ int go;
	const uint32_t i = threadIdx.x - first;
	uint64_t last = 0, passes = 0;
	for (;;) {
		if (i == 0) {
			for (;;) {
				uint64_t now = gpuq_once_now_ns();
				if (*(volatile uint32_t *)a.stop) {
					go = 0;
					break;
				}
				if (!passes || now - last >= MAINT_INTERVAL_NS) {
					last = now;
					go = 1;
					break;
				}
				__nanosleep(MAINT_SLEEP_NS);
			}
			sum[0] = sum[1] = 0;
		}
		maint_sync(n);
		if (!go)
			return;
		maint_pass(a, i, n, sum);
		maint_sync(n);
		if (i == 0) {
			volatile struct gpuq_maint *m = a.maint;
			m->used[0] = sum[0];
			m->used[1] = sum[1];
			__threadfence_system();
			m->passes = ++passes;
		}
	}
}

} // namespace gpuq_dev

#endif
