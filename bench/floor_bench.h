/*
 * floor_bench.h - gpuq-bench floor: the round trip of one message between
 * a host thread and a persistent kernel over pinned mapped memory, with no
 * gpuq around it, in several shapes of the consumer's loop (floor_cuda.cu).
 * It measures what the host and its PCIe link allow, which is what gpuq's
 * own round trip is compared against (benchmarking.md §8.4).
 */
#ifndef GPUQ_BENCH_FLOOR_BENCH_H
#define GPUQ_BENCH_FLOOR_BENCH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The consumer's loop, one warp unless said otherwise. */
enum floor_shape {
	FLOOR_ONE_READ,    /* polls the stamped slot, one read in flight */
	FLOOR_TWO_READS,   /* two reads in flight, FLOOR_GAP_NS apart */
	FLOOR_TWO_TRIPS,   /* the state word (acquire), then the slot */
	FLOOR_ACQUIRE,     /* two probes of state word and slot; acquire loads */
	FLOOR_RELAXED,     /* the same, relaxed loads; FREE written back */
	FLOOR_FENCED,      /* FLOOR_RELAXED plus a release store a message */
	FLOOR_WT,          /* FLOOR_RELAXED, result and FREE written through
			    * (st.global.wt) instead of a release store */
	/* From here on, 512 threads in gpuq's round shape. */
	FLOOR_ROUND,       /* FLOOR_FENCED inside gpuq's round: 512 threads,
			    * the slot through VRAM and a staged result */
	FLOOR_ROUND_WT,    /* FLOOR_ROUND written through, no release store */
	FLOOR_ROUND_EARLY, /* FLOOR_ROUND, but the next message is probed for
			    * while thread 0 makes the release store */
	FLOOR_NSHAPES
};

struct floor_result {
	double p50_us, p90_us, p99_us, p999_us;
};

struct floor_bench {
	uint32_t count;   /* round trips per shape (the first 10 % not counted) */
	uint32_t payload; /* bytes, at most FLOOR_MAX_PAYLOAD */
	uint32_t gap_ns;  /* between two probes in flight (FLOOR_GAP_NS) */
	/* out */
	struct floor_result r[FLOOR_NSHAPES];
};

#define FLOOR_MAX_PAYLOAD 360 /* 30 stamped chunks: one warp reads a slot */
#define FLOOR_GAP_NS 500 /* the default gap, gpuq's PROBE_GAP_NS */

/* A shape's name as printed. */
const char *floor_shape_name(enum floor_shape s);

/* Run every shape on the GPU: 0, -ENODEV without a usable GPU, or another
 * negative errno (err says why). */
int floor_bench_cuda(struct floor_bench *b, char *err, size_t errcap);

#ifdef __cplusplus
}
#endif
#endif
