/*
 * lincheck.h - a linearizability checker for histories of one key of the
 * hash table (broker/kvtable.h), shared by the host test (check_kvtable)
 * and the GPU one (check_gpu, whose histories come from tests/gpu_kvt.cu).
 *
 * Wing and Gong's search: find an order of the operations that respects
 * real time (an operation that responded before another was invoked comes
 * first) and in which each outcome is what a sequential map gives.
 */
#ifndef GPUQ_TESTS_LINCHECK_H
#define GPUQ_TESTS_LINCHECK_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum lin_kind { LIN_GET, LIN_UPSERT, LIN_INSERT, LIN_UPDATE, LIN_DEL,
		LIN_CAS, LIN_N };

/* One completed operation on one key.  Values are 64-bit ids, unique per
 * write; 0 means absent.  inv and resp are logical times from one counter
 * that every thread increments atomically before and after its
 * operation, so resp(a) < inv(b) means a finished before b began. */
struct lin_op {
	int32_t k;            /* enum lin_kind */
	uint64_t arg, expect; /* value written; CAS's expected value */
	uint64_t res;         /* GET: value read (0: absent) */
	int32_t rc;
	uint64_t inv, resp;
};

#define LIN_MAXOPS 64

/* Is this history of one key (n <= LIN_MAXOPS operations), which started
 * in state initial and left the table in state final, linearizable?
 * 1 yes, 0 no, -1 if n is out of range. */
int lin_check(const struct lin_op *ops, int n, uint64_t initial,
	      uint64_t final);

#ifdef __cplusplus
}
#endif

#endif
