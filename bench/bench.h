/*
 * bench.h - gpuq-bench's pieces: one workload point, how a system under
 * test runs it (gpuq, or a baseline), and what comes back.
 *
 * Every system runs through run_system(): P producer processes (plus
 * helpers: Unix-socket servers, Redis readers) are forked, set up, meet at a
 * gate, optionally warm up, meet at a second gate and run the same timed
 * loop (loop.h) from the same instant.  Each process leaves its figures in
 * its proc_result and its latency histogram in shared memory; the parent
 * merges them.
 */
#ifndef GPUQ_BENCH_BENCH_H
#define GPUQ_BENCH_BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "bench/hist.h"
#include "bench/loop.h"
#include "bench/procs.h"

enum sys_id { SYS_GPUQ, SYS_UDS, SYS_REDIS, SYS_CUDA, SYS_COUNT };

#define BENCH_MAX_REPEAT 9

enum sys_status {
	ST_NOTRUN = 0, /* not asked for */
	ST_OK,
	ST_ERROR,      /* ran and failed: a process reported an error */
	ST_NA,         /* cannot run here (no CUDA, no GPU) */
	ST_SKIPPED,    /* could run, but was not set up (no redis-server) */
};

/* One point of the workload matrix. */
struct workload {
	const char *socket, *queue; /* the gpuq broker and queue */
	uint32_t handler;       /* enum gpuq_handler_id of the queue */
	uint32_t size;          /* payload bytes */
	uint32_t batch, window; /* as the loop uses them (already clipped) */
	int producers;
	uint64_t count;         /* messages per producer; 0: run for duration_s */
	double duration_s;      /* 0: count only */
	double rate;            /* open loop: total offered msgs/s; 0: closed */
	uint64_t warmup;        /* untimed messages per producer first */
	double warmup_s;        /* ... but warm up no longer than this */
	double max_s;           /* baselines stop sending after this */
	int zero_copy, verify, latency;
	int spin;               /* busy-poll for results: no sched_yield */
	double fail_rate;       /* what the queue is configured to inject */
};

/* Per process, in memory shared with the parent. */
struct bench_slot {
	_Alignas(64) uint64_t progress; /* completions so far */
	uint64_t acked;                 /* Redis: this producer's acks */
	struct hist lat;
};

struct bench_shared {
	struct procs_gate ready; /* everybody, after setup */
	struct procs_gate go;    /* producers, after warm-up */
	uint64_t sent_total;     /* Redis: entries added, all producers */
	uint64_t acked_total;
	uint32_t producers_left; /* producers that have not finished */
	uint32_t nprocs;
	struct bench_slot slot[];
};

struct run_env;

/* What a system's producer does around the timed loop. */
struct sys_ops {
	/* Connect/attach; *ctx for the other calls (set it even on failure
	 * if close must clean up).  Timed as setup.  -ENODEV: the system is
	 * not available here (the reason in o->what). */
	int (*open)(const struct run_env *e, int idx, void **ctx,
		    struct proc_result *o);
	/* Run the loop as spec says (window, batch, times already set). */
	int (*run)(void *ctx, const struct loop_spec *ls, struct proc_result *o,
		   uint64_t *end_ns);
	void (*close)(void *ctx);
	/* A helper process (idx >= producers): server or reader.  NULL if the
	 * system has none.  It must call procs_gate_wait(&sh->ready) once its
	 * setup is done (or failed), and return once producers_left is 0. */
	int (*helper)(const struct run_env *e, int idx, struct proc_result *o);
	int lat_by_helper; /* latency is recorded by helpers, not producers */
};

struct sys_result {
	int sys;
	int status;            /* enum sys_status */
	char reason[160];      /* why not ST_OK */
	int producers, helpers;
	struct proc_result *proc; /* [producers + helpers] */
	struct hist *lat;      /* merged; NULL without latency */
	uint64_t messages, failed, bad;
	double seconds;        /* gate to the last producer's last result */
	double rate;           /* messages / seconds */
	double setup_us_max;   /* slowest producer's setup */
	double ratio;          /* gpuq msg/s over this system's; 0: n/a */
	double p50_ratio;      /* this system's p50 latency over gpuq's */
	double p99_ratio;      /* the same at p99 */
	int runs;              /* repeats: this is the median-rate one... */
	double run_rates[BENCH_MAX_REPEAT]; /* ...of these, in run order */
};

struct run_env {
	const struct workload *w;
	struct bench_shared *sh;
	const struct sys_ops *ops;
	void *arg;             /* the system's own */
	int sys;
};

extern const char *const sys_names[SYS_COUNT];

/* Fork and run, fill r.  label is for the progress line. */
int run_system(int sys, const struct workload *w, const struct sys_ops *ops,
	       void *arg, int helpers, struct sys_result *r, const char *label);
void sys_result_free(struct sys_result *r);
/* Set r to a result that did not run (status, reason). */
void sys_result_none(struct sys_result *r, int sys, int status,
		     const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Progress line on stderr (only when it is a terminal). */
extern int bench_progress;

/* ---- payloads (payload.c): the same bytes for every system ---- */
struct payload {
	uint32_t handler, size;
	int idx;              /* producer */
	uint8_t *scratch;     /* for checks: size bytes, 16-aligned */
};

int payload_init(struct payload *p, uint32_t handler, uint32_t size, int idx);
void payload_free(struct payload *p);
size_t payload_fill(void *ctx, uint64_t seq, void *buf, size_t cap);
/* 1 if status/result is what the handler gives for message seq. */
int payload_check(void *ctx, uint64_t seq, int status, const void *res,
		  size_t len);
/* Result bytes the handler writes for a payload of size bytes. */
uint32_t payload_result_bytes(uint32_t handler, uint32_t size);
/* enum gpuq_handler_id by name, 0 if unknown. */
uint32_t payload_handler_id(const char *name);
/* Run the built-in handler the way the broker does (broker/handlers.h) on
 * one message: for baselines that must do the same work. */
int payload_handle(uint32_t handler, const void *data, uint32_t len,
		   uint64_t id, void *res, uint32_t cap, uint32_t *res_len);

/* ---- the systems ---- */
int sys_gpuq_run(const struct workload *w, struct sys_result *r,
		 const char *label);
int sys_uds_run(const struct workload *w, int servers, struct sys_result *r,
		const char *label);
/* addr is "host:port"; NULL: skipped (reason says how to enable it). */
int sys_redis_run(const struct workload *w, const char *addr, int readers,
		  struct sys_result *r, const char *label);
int sys_cuda_run(const struct workload *w, struct sys_result *r,
		 const char *label);

/* A private redis-server on a loopback port: 0 and "127.0.0.1:port" in
 * addr, or a negative errno with the reason in err.  Each call starts
 * another (up to 16); redis_spawn_stop stops them all. */
int redis_spawn(char *addr, size_t cap, char *err, size_t errcap);
void redis_spawn_stop(void);
/* Async-signal-safe: kill it (from a signal handler). */
void redis_spawn_kill(void);
/* Check that addr answers PING; 0 or -errno with reason. */
int redis_ping(const char *addr, char *err, size_t errcap);
/* A hiredis connection to "host:port" (5 s connect timeout), or NULL
 * after saying why on stderr. */
struct redisContext;
struct redisContext *bench_redis_connect(const char *addr);

/* The gpuqd to start, into out unless out is already set: $GPUQD, the
 * build tree's next to this binary, or "gpuqd" from PATH. */
void bench_gpuqd_path(char *out, size_t cap);
/* Start argv (argv[0]: the gpuqd) with its stderr in log; the pid, or -1.
 * The caller waits for it to answer. */
pid_t bench_exec_gpuqd(const char *log, const char *const *argv);

/* gpuq-bench kv: the client KV API against Redis MSET/MGET. */
int kv_bench_main(int argc, char **argv);
/* gpuq-bench table: the hash table's own inserts and lookups. */
int table_bench_main(int argc, char **argv);
/* gpuq-bench floor (sys_floor.c): the host-GPU round trip with no gpuq. */
int floor_bench_main(int argc, char **argv);

#endif
