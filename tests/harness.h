/*
 * harness.h - run a real gpuqd for a test: private socket directory, start,
 * wait until it answers, stop with a signal and collect its exit status.
 * The broker binary comes from $GPUQD (set by make check).
 */
#ifndef GPUQ_TESTS_HARNESS_H
#define GPUQ_TESTS_HARNESS_H

#include <stddef.h>
#include <sys/types.h>

struct broker_proc {
	pid_t pid;
	char dir[64];     /* private temp dir, removed by broker_cleanup */
	char socket[128]; /* dir/gpuqd.sock */
	char log[128];    /* dir/gpuqd.log: the broker's stderr */
};

/* A fresh private directory for a broker (under $GPUQ_TEST_DIR, default
 * /tmp) with its socket and log paths, nothing started.  0 or -1. */
int broker_dir(struct broker_proc *b);

/* Start gpuqd -s <socket> plus argv (NULL-terminated).  Waits up to 5 s for
 * it to accept a connection.  Returns 0, or -1 (and the log says why). */
int broker_start(struct broker_proc *b, const char *const *argv);
/* Same socket directory, new process (for restart tests). */
int broker_restart(struct broker_proc *b, const char *const *argv);
/* Send sig and wait up to timeout_ms; returns the wait status, or -1 if it
 * did not exit in time (then it is SIGKILLed). */
int broker_stop(struct broker_proc *b, int sig, int timeout_ms);
/* Stop if still running, remove the directory. */
void broker_cleanup(struct broker_proc *b);
/* The end of a test's broker: SIGTERM, wait up to timeout_ms, and 0 (the
 * directory removed) if gpuqd exited 0 with no sanitizer report in its
 * log; else -1 with why (the directory kept, so the runner shows the
 * log). */
int broker_finish(struct broker_proc *b, int timeout_ms, char *why, size_t n);

/* Run a command with argv, capture up to cap-1 bytes of stdout into out;
 * returns the wait status. */
int run_capture(const char *const *argv, char *out, size_t cap);

/* Path of a built tool: $GPUQD / $GPUQCTL, else the build-tree default. */
const char *tool_path(const char *env, const char *fallback);

/* Pull "key":<number> out of a JSON text, searching from `from`. */
long long json_number(const char *json, const char *from, const char *key);

/* 1 if the broker's log (its stderr) contains needle. */
int broker_log_contains(const struct broker_proc *b, const char *needle);

#endif
