/* procs.c - fork, barrier, collect, reap. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/procs.h"

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
	/* The barrier: the parent closes its end once all are forked. */
	if (read(go, &c, 1) < 0)
		_exit(3);
	r.rc = fn(idx, arg, &r);
	if (write(out, &r, sizeof(r)) != (ssize_t)sizeof(r))
		_exit(4);
	_exit(0);
}

int procs_run(int n, proc_fn fn, void *arg, struct proc_result *res)
{
	int go[2], out[2], ok = 0;
	pid_t pids[256];
	if (n < 1 || n > 256 || pipe(go) || pipe(out))
		return -1;
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
	}
	close(go[0]);
	close(go[1]); /* go */
	close(out[1]);
	/* Results arrive in finishing order; callers only aggregate them. */
	for (int i = 0; i < n; i++)
		if (read_full(out[0], &res[i], sizeof(res[i])))
			break;
	close(out[0]);
	for (int i = 0; i < n; i++) {
		int st = 0;
		waitpid(pids[i], &st, 0);
		res[i].exit_status = st;
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
			ok = -1;
	}
	for (int i = 0; i < n; i++)
		if (res[i].rc)
			ok = -1;
	return ok;
}
