/*
 * table_bench.h - gpuq-bench table: the hash table's own speed (design.md
 * §15), inserts then lookups of known keys at a given load, on host
 * threads (sys_table.c) or on the GPU (table_cuda.cu, built with CUDA).
 */
#ifndef GPUQ_BENCH_TABLE_BENCH_H
#define GPUQ_BENCH_TABLE_BENCH_H

#include <stddef.h>
#include <stdint.h>

#include "ipc/hd.h"

#ifdef __cplusplus
extern "C" {
#endif

struct table_bench {
	uint64_t slots;      /* table slots asked for */
	double load;         /* fraction of them filled before the lookups */
	uint64_t lookups;
	uint32_t threads;    /* host threads (cpu) */
	/* out */
	uint64_t real_slots, inserted, refused, found, wrong;
	double insert_s, lookup_s;
};

/* The key and value of entry i, the same on both sides. */
GPUQ_HD uint64_t table_bench_key(uint64_t i)
{
	uint64_t x = i + 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* Run on the GPU: 0, -ENODEV without a usable GPU, or another negative
 * errno (err says why). */
int table_bench_cuda(struct table_bench *b, char *err, size_t errcap);

#ifdef __cplusplus
}
#endif
#endif
