/* procs.c - fork, barrier, collect, reap. */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench/procs.h"

uint64_t procs_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int read_full(int fd, void *buf, size_t n)
{
	size_t got = 0;
	while (got < n) {
		ssize_t r = read(fd, (char *)buf + got, n - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		got += (size_t)r;
	}
	return 0;
}

static void child(int idx, proc_fn fn, void *arg, int go, int out)
{
	struct proc_result r;
	char c;
	memset(&r, 0, sizeof(r));
	/* The parent may catch signals to clean up; a child should not. */
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	/* The barrier: the parent closes its end once all are forked. */
	if (read(go, &c, 1) < 0)
		_exit(3);
	r.rc = fn(idx, arg, &r);
	r.idx = idx;
	/* One write of less than PIPE_BUF bytes: children never interleave. */
	if (write(out, &r, sizeof(r)) != (ssize_t)sizeof(r))
		_exit(4);
	_exit(0);
}

/* Read one child's result, calling tick while none is ready. */
static int collect_one(int fd, struct proc_result *res, int n,
		       void (*tick)(void *), void *tick_arg, int tick_ms)
{
	struct proc_result r;
	struct pollfd p = { .fd = fd, .events = POLLIN };
	while (tick) {
		int k = poll(&p, 1, tick_ms);
		if (k > 0)
			break;
		if (k < 0 && errno != EINTR)
			return -1;
		tick(tick_arg);
	}
	if (read_full(fd, &r, sizeof(r)) || r.idx < 0 || r.idx >= n)
		return -1;
	res[r.idx] = r;
	return 0;
}

int procs_run_tick(int n, proc_fn fn, void *arg, struct proc_result *res,
		   void (*tick)(void *), void *tick_arg, int tick_ms)
{
	int go[2], out[2], ok = 0;
	pid_t pids[PROCS_MAX];
	if (n < 1 || n > PROCS_MAX || pipe(go))
		return -1;
	if (pipe(out)) {
		close(go[0]);
		close(go[1]);
		return -1;
	}
	fflush(NULL);
	for (int i = 0; i < n; i++) {
		pids[i] = fork();
		if (pids[i] == 0) {
			close(go[1]);
			close(out[0]);
			child(i, fn, arg, go[0], out[1]);
		}
		memset(&res[i], 0, sizeof(res[i]));
		res[i].rc = -1;
		res[i].idx = i;
	}
	close(go[0]);
	close(go[1]); /* go */
	close(out[1]);
	/* Results arrive in finishing order, each tagged with its child. */
	for (int i = 0; i < n; i++)
		if (collect_one(out[0], res, n, tick, tick_arg, tick_ms))
			break;
	close(out[0]);
	for (int i = 0; i < n; i++) {
		int st = 0;
		if (pids[i] > 0)
			waitpid(pids[i], &st, 0);
		else
			st = 127 << 8; /* fork failed */
		res[i].exit_status = st;
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
			ok = -1;
	}
	for (int i = 0; i < n; i++)
		if (res[i].rc)
			ok = -1;
	return ok;
}

int procs_run(int n, proc_fn fn, void *arg, struct proc_result *res)
{
	return procs_run_tick(n, fn, arg, res, NULL, NULL, 0);
}

/* ---- the start gate ---- */

static long futex(uint32_t *word, int op, uint32_t val,
		  const struct timespec *ts)
{
	/* Not FUTEX_PRIVATE_FLAG: the word is shared between processes. */
	return syscall(SYS_futex, word, op, val, ts, NULL, 0);
}

void procs_gate_init(struct procs_gate *g, uint32_t n)
{
	memset(g, 0, sizeof(*g));
	g->n = n;
}

uint64_t procs_gate_opened(const struct procs_gate *g)
{
	if (!__atomic_load_n(&g->open, __ATOMIC_ACQUIRE))
		return 0;
	return g->t0_ns;
}

uint64_t procs_gate_wait(struct procs_gate *g, int timeout_ms)
{
	uint64_t deadline = procs_now_ns() + (uint64_t)timeout_ms * 1000000ull;
	if (__atomic_add_fetch(&g->arrived, 1, __ATOMIC_ACQ_REL) >= g->n) {
		g->t0_ns = procs_now_ns();
		__atomic_store_n(&g->open, 1, __ATOMIC_RELEASE);
		futex(&g->open, FUTEX_WAKE, INT_MAX, NULL);
		return g->t0_ns;
	}
	while (!__atomic_load_n(&g->open, __ATOMIC_ACQUIRE)) {
		uint64_t now = procs_now_ns();
		struct timespec ts;
		if (now >= deadline)
			return 0;
		ts.tv_sec = (time_t)((deadline - now) / 1000000000ull);
		ts.tv_nsec = (long)((deadline - now) % 1000000000ull);
		/* Sleeps only while the word still reads 0 (closed). */
		futex(&g->open, FUTEX_WAIT, 0, &ts);
	}
	return g->t0_ns;
}

void *procs_shared(size_t bytes)
{
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

void procs_shared_free(void *p, size_t bytes)
{
	if (p)
		munmap(p, bytes);
}
