/*
 * sys_floor.c - gpuq-bench floor: options and the report for the floor
 * measurement of floor_cuda.cu (one message at a time between a host
 * thread and a persistent kernel, no gpuq around it).  Without a usable GPU
 * it says so and exits 77, the automake status for "skipped".
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"
#include "bench/floor_bench.h"

const char *floor_shape_name(enum floor_shape s)
{
	static const char *const names[FLOOR_NSHAPES] = {
		[FLOOR_ONE_READ] = "one-read",
		[FLOOR_TWO_READS] = "two-reads",
		[FLOOR_TWO_TRIPS] = "two-trips",
		[FLOOR_ACQUIRE] = "state-acquire",
		[FLOOR_RELAXED] = "state-relaxed",
		[FLOOR_FENCED] = "state-fenced",
		[FLOOR_WT] = "state-wt",
		[FLOOR_ROUND] = "gpuq-round",
		[FLOOR_ROUND_WT] = "gpuq-round-wt",
		[FLOOR_ROUND_EARLY] = "gpuq-round-early",
	};
	return (unsigned)s < FLOOR_NSHAPES ? names[s] : "?";
}

#ifndef HAVE_CUDA
int floor_bench_cuda(struct floor_bench *b, char *err, size_t errcap)
{
	(void)b;
	snprintf(err, errcap, "gpuq-bench was built without CUDA");
	return -ENODEV;
}
#endif

static void usage(FILE *f)
{
	fputs("usage: gpuq-bench floor [options]\n"
	      "One message at a time between this process and a persistent\n"
	      "kernel over pinned mapped memory, with no gpuq around it, in\n"
	      "each shape of the kernel's loop (benchmarking.md §8.4).\n"
	      "  -n COUNT       round trips per shape (default 40000; the first\n"
	      "                 tenth are not counted)\n"
	      "  -z BYTES       payload bytes, 1 to 360 (default 256)\n"
	      "  -g NS          gap between two probes in flight, 0 to\n"
	      "                 100000 ns (default 500)\n"
	      "  --json         one JSON object\n", f);
}

static void print_text(const struct floor_bench *b)
{
	printf("floor: %u round trips a shape, %u-byte payload, probes %u ns "
	       "apart, us\n", b->count, b->payload, b->gap_ns);
	printf("%-17s %8s %8s %8s %8s\n", "shape", "p50", "p90", "p99",
	       "p99.9");
	for (int s = 0; s < FLOOR_NSHAPES; s++)
		printf("%-17s %8.2f %8.2f %8.2f %8.2f\n", floor_shape_name(s),
		       b->r[s].p50_us, b->r[s].p90_us, b->r[s].p99_us,
		       b->r[s].p999_us);
}

static void print_json(const struct floor_bench *b)
{
	printf("{\"tool\":\"gpuq-bench floor\",\"count\":%u,\"payload\":%u,"
	       "\"gap_ns\":%u,\"shapes\":{", b->count, b->payload, b->gap_ns);
	for (int s = 0; s < FLOOR_NSHAPES; s++)
		printf("%s\"%s\":{\"p50_us\":%.2f,\"p90_us\":%.2f,"
		       "\"p99_us\":%.2f,\"p999_us\":%.2f}", s ? "," : "",
		       floor_shape_name(s), b->r[s].p50_us, b->r[s].p90_us,
		       b->r[s].p99_us, b->r[s].p999_us);
	printf("}}\n");
}

int floor_bench_main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct floor_bench b = { .count = 40000, .payload = 256,
				 .gap_ns = FLOOR_GAP_NS };
	static const long lo_lim[] = { 100, 1, 0 };
	static const long hi_lim[] = { 100000000, FLOOR_MAX_PAYLOAD, 100000 };
	uint32_t *const dst[] = { &b.count, &b.payload, &b.gap_ns };
	char err[256] = "", *end;
	int ch, json = 0, rc;
	long v;
	optind = 1;
	while ((ch = getopt_long(argc, argv, "n:z:g:h", lo, NULL)) != -1) {
		int i = ch == 'n' ? 0 : ch == 'z' ? 1 : 2;
		switch (ch) {
		case 'n':
		case 'z':
		case 'g':
			v = strtol(optarg, &end, 10);
			if (!*optarg || *end || v < lo_lim[i] || v > hi_lim[i]) {
				usage(stderr);
				return 2;
			}
			*dst[i] = (uint32_t)v;
			break;
		case 'j': json = 1; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		usage(stderr);
		return 2;
	}
	rc = floor_bench_cuda(&b, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "gpuq-bench floor: %s\n", err);
		return rc == -ENODEV ? 77 : 1;
	}
	if (json)
		print_json(&b);
	else
		print_text(&b);
	return 0;
}
