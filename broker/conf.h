/*
 * conf.h - gpuqd configuration: the file format (docs/runbook.md) and the
 * command-line flags both land in struct gpuqd_config.
 */
#ifndef GPUQ_BROKER_CONFIG_H
#define GPUQ_BROKER_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define CONF_MAX_QUEUES 32
#define CONF_MAX_IDS 16
#define CONF_PATH_MAX 108 /* sun_path */

enum conf_backend { CONF_BACKEND_AUTO = 0, CONF_BACKEND_CPU = 1,
		    CONF_BACKEND_CUDA = 2 };

/* Track A: the queue bound to a Redis stream (docs/tracka.md).  Bound when
 * stream is set; empty strings take the defaults described there. */
struct tracka_config {
	char host[64];          /* "" = 127.0.0.1 */
	uint32_t port;          /* default 6379 */
	char password[128];     /* "" = no AUTH */
	char stream[128];       /* "" = not bound */
	char group[64];         /* "" = gpuq */
	char consumer[64];      /* "" = <hostname>-<queue> */
	char result_stream[128];/* "" = <stream>:results */
	char dlq_stream[128];   /* "" = <stream>:dlq */
	uint32_t batch;         /* XREADGROUP COUNT; default 256 */
	uint32_t result_batch;  /* results per result-stream entry; 1 */
	uint32_t block_ms;      /* XREADGROUP BLOCK when idle; default 100 */
	uint32_t max_deliveries;/* deliveries before the DLQ stream; 5 */
	uint32_t claim_idle_ms; /* XAUTOCLAIM min-idle; default 30000 */
};

struct queue_config {
	char name[64];        /* [a-zA-Z0-9_.-]{1,63} */
	char handler[32];     /* echo | checksum | vector */
	/* A CUDA handler module (.fatbin/.cubin built against
	 * gpu/gpuq_handler.cuh) whose kernels replace the built-in handler;
	 * "" for none.  Needs the cuda backend and an explicit result_bytes. */
	char handler_module[256];
	uint32_t capacity;    /* slots, power of two; default 4096 */
	uint32_t slot_bytes;  /* default 256 */
	uint32_t result_bytes;/* 0 = the handler's natural size */
	uint32_t cq_capacity; /* power of two; 0 = capacity */
	uint32_t max_clients; /* default 64 */
	uint32_t workers;     /* CPU threads / GPU blocks; default 1 */
	int backend;          /* enum conf_backend; default: broker's */
	int ordered;          /* 1: per-key order, one ring per worker; 0 */
	int stamped;          /* 1: stamped slots, for the lowest latency
				 (ipc/stamp.h); 0 */
	int stamped_results;  /* 1: stamped completion entries, no fence
				 before a result shows (ipc/cq.h); 0 */
	uint32_t max_attempts;/* handler runs before dead-letter; default 3 */
	uint32_t fail_ppm;    /* fault injection, messages per million; 0 */
	uint32_t fail_attempts; /* runs a chosen message fails (0 = all); 0 */
	uint32_t dlq_capacity;  /* dead letters per worker, power of 2; 1024 */
	/* The queue's hash table of handler state (design.md §15); 0: none */
	uint32_t table_slots;
	uint32_t table_value_bytes; /* largest value; default 64 */
	/* Exactly-once: the message key is an idempotency key, deduplicated
	 * in a table of dedupe_slots (0: 4 x capacity, at least 65536)
	 * for dedupe_window_ms after the first run (0: for ever). */
	int exactly_once;
	uint32_t dedupe_slots;
	uint32_t dedupe_window_ms; /* default 600000 */
	struct tracka_config redis;
};

struct gpuqd_config {
	char socket_path[CONF_PATH_MAX]; /* "" = gpuq_default_socket() */
	char metrics[64];                /* "HOST:PORT" to serve /metrics; "" off */
	uint32_t socket_mode;            /* default 0660 */
	int backend;                     /* enum conf_backend; default AUTO */
	int force_epoll;                 /* 1 = never use io_uring */
	uint32_t max_connections;        /* default 256 */
	uint32_t drain_timeout_ms;       /* default 10000 */
	uint32_t n_allow_uid, n_allow_gid;
	uid_t allow_uid[CONF_MAX_IDS];   /* none given = broker's euid only */
	gid_t allow_gid[CONF_MAX_IDS];
	int verbose;
	uint32_t nqueues;
	struct queue_config queues[CONF_MAX_QUEUES];
};

/* Defaults for everything (no queues). */
void config_defaults(struct gpuqd_config *c);
/* Defaults for one queue called name. */
void config_queue_defaults(struct queue_config *q, const char *name);

/*
 * Parse a config file into c (on top of what is there).  On error returns
 * GPUQ_ECONFIG (or a negated errno if the file cannot be read) and writes
 * "path:line: what is wrong" into err (errcap bytes).
 */
int config_load_file(struct gpuqd_config *c, const char *path, char *err,
		     size_t errcap);
/* Same, from a buffer; `origin` names it in messages (used by tests and the
 * fuzz target). */
int config_load_buffer(struct gpuqd_config *c, const char *buf, size_t len,
		       const char *origin, char *err, size_t errcap);

/*
 * Apply one "key=value" setting to section "broker" or to the queue `queue`
 * (created with defaults if new) - the shared path for file lines and for
 * gpuqd's --set / --queue flags.  Returns 0 or GPUQ_ECONFIG with a message
 * (no location prefix) in err.
 */
int config_set(struct gpuqd_config *c, const char *queue, const char *key,
	       const char *value, char *err, size_t errcap);

/* Parse "name[,key=value...]" as given to gpuqd --queue. */
int config_queue_spec(struct gpuqd_config *c, const char *spec, char *err,
		      size_t errcap);

/* Check the whole config once loaded: each queue's geometry and handler
 * exist and fit.  err says which queue and why. */
int config_validate(const struct gpuqd_config *c, char *err, size_t errcap);

/* Print the effective config in file format (gpuqd --print-config). */
void config_print(const struct gpuqd_config *c, int fd);

#endif
