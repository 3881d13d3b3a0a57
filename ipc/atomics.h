/*
 * atomics.h - the few memory-ordering primitives the ring protocol uses.
 *
 * GCC __atomic builtins on plain integer fields rather than _Atomic types:
 * the same struct definitions are shared with nvcc-compiled C++, and on the
 * GPU side these words are accessed with volatile loads/stores plus fences.
 */
#ifndef GPUQ_IPC_ATOMICS_H
#define GPUQ_IPC_ATOMICS_H

#include <stdint.h>

#define ipc_load_acquire(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define ipc_load_relaxed(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define ipc_store_release(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define ipc_store_relaxed(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define ipc_store_seqcst(p, v) __atomic_store_n((p), (v), __ATOMIC_SEQ_CST)
#define ipc_load_seqcst(p) __atomic_load_n((p), __ATOMIC_SEQ_CST)

static inline int ipc_cas(uint64_t *p, uint64_t *expected, uint64_t desired)
{
	return __atomic_compare_exchange_n(p, expected, desired, 0,
					   __ATOMIC_SEQ_CST, __ATOMIC_RELAXED);
}

static inline void ipc_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

#endif
