/* harness.c - real brokers for tests. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "libclient/gpuq.h"
#include "tests/harness.h"

const char *tool_path(const char *env, const char *fallback)
{
	const char *p = getenv(env);
	return p && *p ? p : fallback;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

static pid_t spawn(struct broker_proc *b, const char *const *argv)
{
	const char *args[64];
	int n = 0;
	pid_t pid;
	args[n++] = tool_path("GPUQD", "broker/gpuqd");
	args[n++] = "-s";
	args[n++] = b->socket;
	/* The bundle's runner picks the backend for every suite. */
	if (getenv("GPUQ_TEST_BACKEND") && *getenv("GPUQ_TEST_BACKEND")) {
		args[n++] = "-b";
		args[n++] = getenv("GPUQ_TEST_BACKEND");
	}
	for (int i = 0; argv && argv[i] && n < 62; i++)
		args[n++] = argv[i];
	args[n] = NULL;
	pid = fork();
	if (pid == 0) {
		int fd = open(b->log, O_WRONLY | O_CREAT | O_APPEND, 0600);
		if (fd >= 0) {
			dup2(fd, 2);
			dup2(fd, 1);
		}
		execv(args[0], (char *const *)args);
		_exit(127);
	}
	return pid;
}

static int wait_ready(struct broker_proc *b)
{
	for (int i = 0; i < 500; i++) {
		gpuq_client *c;
		int st;
		if (gpuq_connect(b->socket, &c) == 0) {
			gpuq_disconnect(c);
			return 0;
		}
		if (waitpid(b->pid, &st, WNOHANG) == b->pid) {
			b->pid = 0;
			return -1;
		}
		sleep_ms(10);
	}
	return -1;
}

int broker_restart(struct broker_proc *b, const char *const *argv)
{
	b->pid = spawn(b, argv);
	if (b->pid < 0)
		return -1;
	return wait_ready(b);
}

int broker_dir(struct broker_proc *b)
{
	const char *base = getenv("GPUQ_TEST_DIR");
	memset(b, 0, sizeof(*b));
	snprintf(b->dir, sizeof(b->dir), "%s/gpuq-test-XXXXXX",
		 base && *base ? base : "/tmp");
	if (!mkdtemp(b->dir))
		return -1;
	snprintf(b->socket, sizeof(b->socket), "%s/gpuqd.sock", b->dir);
	snprintf(b->log, sizeof(b->log), "%s/gpuqd.log", b->dir);
	return 0;
}

int broker_start(struct broker_proc *b, const char *const *argv)
{
	if (broker_dir(b))
		return -1;
	return broker_restart(b, argv);
}

int broker_stop(struct broker_proc *b, int sig, int timeout_ms)
{
	int st = -1;
	if (b->pid <= 0)
		return -1;
	kill(b->pid, sig);
	for (int i = 0; i < timeout_ms; i++) {
		if (waitpid(b->pid, &st, WNOHANG) == b->pid) {
			b->pid = 0;
			return st;
		}
		sleep_ms(1);
	}
	kill(b->pid, SIGKILL);
	waitpid(b->pid, &st, 0);
	b->pid = 0;
	return -1;
}

void broker_cleanup(struct broker_proc *b)
{
	char cmd[128];
	if (b->pid > 0)
		broker_stop(b, SIGKILL, 2000);
	if (getenv("GPUQ_TEST_KEEP"))
		return;
	if (b->dir[0]) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", b->dir);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", b->dir);
	}
}

int run_capture(const char *const *argv, char *out, size_t cap)
{
	int p[2], st = -1;
	size_t got = 0;
	pid_t pid;
	if (pipe(p))
		return -1;
	pid = fork();
	if (pid == 0) {
		dup2(p[1], 1);
		close(p[0]);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(p[1]);
	for (;;) {
		ssize_t n = read(p[0], out + got, cap - 1 - got);
		if (n <= 0)
			break;
		got += (size_t)n;
		if (got == cap - 1)
			break;
	}
	out[got] = 0;
	close(p[0]);
	waitpid(pid, &st, 0);
	return st;
}

long long json_number(const char *json, const char *from, const char *key)
{
	char pat[64];
	const char *p = from ? strstr(json, from) : json;
	if (!p)
		return -1;
	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = strstr(p, pat);
	return p ? strtoll(p + strlen(pat), NULL, 10) : -1;
}

int broker_finish(struct broker_proc *b, int timeout_ms, char *why, size_t n)
{
	int st = broker_stop(b, SIGTERM, timeout_ms);
	if (st < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		snprintf(why, n, "gpuqd exit status %#x (log %s)", st, b->log);
		return -1;
	}
	if (broker_log_contains(b, "Sanitizer") ||
	    broker_log_contains(b, "runtime error")) {
		snprintf(why, n, "gpuqd's log has a sanitizer report: %s", b->log);
		return -1;
	}
	broker_cleanup(b);
	return 0;
}

int broker_log_contains(const struct broker_proc *b, const char *needle)
{
	char buf[65536];
	size_t n;
	FILE *f = fopen(b->log, "r");
	if (!f)
		return 0;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	return strstr(buf, needle) != NULL;
}
