/*
 * report.h - what gpuq-bench prints: a table for people, one JSON document
 * with every figure, and an SVG with the plots.
 */
#ifndef GPUQ_BENCH_REPORT_H
#define GPUQ_BENCH_REPORT_H

#include <stdio.h>

#include "bench/bench.h"

/* One point of the run: a workload and each system's result on it. */
struct point {
	const char *section; /* "single", "payload", "producers", "batch",
				"latency", "failure" */
	double x;            /* the section's variable (bytes, producers, ...) */
	struct workload w;
	struct sys_result res[SYS_COUNT];
};

/* The run as a whole: where, on what, how. */
struct bench_info {
	const char *queue, *handler, *backend;
	unsigned slot_bytes, capacity, cq_capacity;
	char cpu[96];
	int cpus;
	char kernel[96];
	char cmdline[512];
	const char *redis;   /* address used, or NULL */
	double duration_s;   /* per run, 0 if by count */
	int single;          /* one point (legacy output), not a sweep */
};

void report_machine(struct bench_info *bi);
void report_text_single(FILE *f, const struct bench_info *bi,
			const struct point *p);
/* The table of every point of one section. */
void report_text_section(FILE *f, const struct bench_info *bi,
			 const struct point *pts, int n, const char *section);
void report_json(FILE *f, const struct bench_info *bi, const struct point *pts,
		 int n);
/* 0, or a negative errno if the file could not be written. */
int report_svg(const char *path, const struct bench_info *bi,
	       const struct point *pts, int n);

#endif
