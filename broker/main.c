/* main.c - gpuqd: flags, socket, queues, the event loop, and drain. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "broker/broker.h"
#include "broker/loop.h"
#include "broker/metrics.h"
#include "broker/notify.h"
#include "broker/tracka.h"
#include "ipc/clock.h"
#include "libclient/gpuq.h"

static const char usage[] =
	"usage: gpuqd [options]\n"
	"  -c, --config FILE       read FILE (gpuq.conf format)\n"
	"  -s, --socket PATH       control socket (default: see docs/runbook.md)\n"
	"  -b, --backend KIND      auto | cpu | cuda (default auto)\n"
	"  -q, --queue SPEC        add a queue: NAME[,key=value...]\n"
	"      --set KEY=VALUE     any [broker] setting\n"
	"      --force-epoll       do not use io_uring\n"
	"      --print-config      print the effective config and exit\n"
	"  -v, --verbose           more log (repeat for more)\n"
	"  -h, --help, --version\n";

enum { OPT_SET = 256, OPT_EPOLL, OPT_PRINT, OPT_VERSION };

static const struct option opts[] = {
	{ "config", required_argument, NULL, 'c' },
	{ "socket", required_argument, NULL, 's' },
	{ "backend", required_argument, NULL, 'b' },
	{ "queue", required_argument, NULL, 'q' },
	{ "set", required_argument, NULL, OPT_SET },
	{ "force-epoll", no_argument, NULL, OPT_EPOLL },
	{ "print-config", no_argument, NULL, OPT_PRINT },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, OPT_VERSION },
	{ NULL, 0, NULL, 0 },
};

/* "key=value" through the same path as a config-file line. */
static int set_kv(struct gpuqd_config *c, const char *kv, char *err,
		  size_t cap)
{
	char key[64];
	const char *eq = strchr(kv, '=');
	if (!eq || eq == kv || (size_t)(eq - kv) >= sizeof(key)) {
		snprintf(err, cap, "--set wants KEY=VALUE, got '%s'", kv);
		return GPUQ_ECONFIG;
	}
	memcpy(key, kv, (size_t)(eq - kv));
	key[eq - kv] = 0;
	return config_set(c, NULL, key, eq + 1, err, cap);
}

/* Flags override the file, so the file is read first whatever the order. */
static int parse_args(int argc, char **argv, struct gpuqd_config *c,
		      int *print)
{
	char err[256] = "";
	int o, rc = 0;
	/* Pass 1: only the config files, in every spelling getopt accepts
	 * (-c F, -cF, --config F, --config=F). */
	opterr = 0;
	while (!rc && (o = getopt_long(argc, argv, "c:s:b:q:vh", opts, NULL)) != -1)
		if (o == 'c')
			rc = config_load_file(c, optarg, err, sizeof(err));
	opterr = 1;
	optind = 1;
	/* Pass 2: everything else, on top of the files. */
	while (!rc && (o = getopt_long(argc, argv, "c:s:b:q:vh", opts, NULL)) != -1) {
		switch (o) {
		case 'c':
			break;
		case 's':
			rc = config_set(c, NULL, "socket", optarg, err, sizeof(err));
			break;
		case 'b':
			rc = config_set(c, NULL, "backend", optarg, err, sizeof(err));
			break;
		case 'q':
			rc = config_queue_spec(c, optarg, err, sizeof(err));
			break;
		case OPT_SET:
			rc = set_kv(c, optarg, err, sizeof(err));
			break;
		case OPT_EPOLL:
			c->force_epoll = 1;
			break;
		case OPT_PRINT:
			*print = 1;
			break;
		case 'v':
			c->verbose++;
			break;
		case 'h':
			fputs(usage, stdout);
			exit(0);
		case OPT_VERSION:
			printf("gpuqd %s\n", PACKAGE_VERSION);
			exit(0);
		default:
			fputs(usage, stderr);
			exit(2);
		}
	}
	if (!rc && optind < argc) {
		snprintf(err, sizeof(err), "unexpected argument '%s'", argv[optind]);
		rc = GPUQ_ECONFIG;
	}
	if (!rc && !c->nqueues) {
		snprintf(err, sizeof(err), "no queues configured (use -q or a [queue] section)");
		rc = GPUQ_ECONFIG;
	}
	if (!rc)
		rc = config_validate(c, err, sizeof(err));
	if (rc)
		fprintf(stderr, "gpuqd: %s\n", err[0] ? err : gpuq_strerror(rc));
	return rc;
}

/*
 * Create the socket's directory, or check the one that is there: it must
 * belong to us (or root) and not be writable by others unless sticky, or
 * someone else could swap the socket for their own (a pre-created
 * /tmp/gpuq-<uid>, say).
 */
static int socket_dir(const char *path)
{
	char dir[CONF_PATH_MAX];
	struct stat st;
	char *slash;
	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return 0;
	*slash = 0;
	if (mkdir(dir, 0755) == 0)
		return 0;
	if (errno != EEXIST || lstat(dir, &st) < 0)
		return -errno;
	if (!S_ISDIR(st.st_mode) || (st.st_uid != geteuid() && st.st_uid != 0) ||
	    ((st.st_mode & (S_IWGRP | S_IWOTH)) && !(st.st_mode & S_ISVTX))) {
		fprintf(stderr, "gpuqd: %s: not a directory owned by us or root, "
				"or writable by others\n", dir);
		return -EPERM;
	}
	return 0;
}

/*
 * Take <socket>.lock, then (re)create the socket.  The lock, not the
 * socket file, says whether a broker is alive: a socket left by a killed
 * broker is stale and removed, one held by a live broker is refused.
 */
static int listen_socket(struct broker *b)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char lock[CONF_PATH_MAX + 8];
	int rc;
	if (strlen(b->socket_path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	if ((rc = socket_dir(b->socket_path)))
		return rc;
	snprintf(lock, sizeof(lock), "%s.lock", b->socket_path);
	b->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (b->lock_fd < 0)
		return -errno;
	if (flock(b->lock_fd, LOCK_EX | LOCK_NB) < 0)
		return errno == EWOULDBLOCK ? -EADDRINUSE : -errno;
	/* Our pid in the lock file: gpuqctl stat finds the queues' shared
	 * memory through /proc/<pid>/fd even when the loop is stuck. */
	if (ftruncate(b->lock_fd, 0) == 0)
		dprintf(b->lock_fd, "%d\n", (int)getpid());
	unlink(b->socket_path);
	strcpy(sa.sun_path, b->socket_path);
	b->listen_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (b->listen_fd < 0)
		return -errno;
	if (bind(b->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    chmod(b->socket_path, b->conf.socket_mode) < 0 ||
	    listen(b->listen_fd, 128) < 0)
		return -errno;
	return 0;
}

static int create_queues(struct broker *b)
{
	b->queues = calloc(b->conf.nqueues, sizeof(*b->queues));
	if (!b->queues)
		return -ENOMEM;
	for (uint32_t i = 0; i < b->conf.nqueues; i++) {
		int rc = bqueue_create(&b->queues[i], &b->conf.queues[i],
				       b->conf.backend, b->epoch);
		b->nqueues++;
		if (rc) {
			fprintf(stderr, "gpuqd: queue %s: %s\n",
				b->conf.queues[i].name, gpuq_strerror(rc));
			return rc;
		}
	}
	return 0;
}

/* Bind the queues that name a Redis stream (Track A).  Redis need not be
 * up yet: each binding connects, and reconnects, by itself. */
static int start_bindings(struct broker *b)
{
	for (uint32_t i = 0; i < b->nqueues; i++) {
		struct bqueue *q = &b->queues[i];
		int rc;
		if (!tracka_bound(q))
			continue;
		rc = tracka_start(q, b->conf.force_epoll, &q->tracka);
		if (rc) {
			fprintf(stderr, "gpuqd: queue %s: Redis binding: %s\n",
				q->conf.name, gpuq_strerror(rc));
			return rc;
		}
	}
	return 0;
}

/* Stop the bindings before the queues go: each writes the results of what
 * its ring finished and acknowledges them. */
static void stop_bindings(struct broker *b)
{
	for (uint32_t i = 0; i < b->nqueues; i++) {
		tracka_stop(b->queues[i].tracka, 5000);
		b->queues[i].tracka = NULL;
	}
}

static void report_drain(const struct broker *b)
{
	for (uint32_t i = 0; i < b->nqueues; i++) {
		struct proto_qstat s;
		bqueue_qstat(&b->queues[i], &s);
		blog(0, "queue %s: enqueued %llu completed %llu retried %llu "
			"dead-lettered %llu reclaimed %llu left %llu",
		     s.name, (unsigned long long)s.enqueued,
		     (unsigned long long)s.completed,
		     (unsigned long long)s.retried,
		     (unsigned long long)s.dead_lettered,
		     (unsigned long long)s.reclaimed,
		     (unsigned long long)s.depth);
	}
}

static void block_signals(void)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	/* Before any thread exists, so every thread inherits the mask and
	 * the signals reach only the loop's signalfd. */
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
}

int main(int argc, char **argv)
{
	static struct broker b;
	struct metrics *metrics = NULL;
	int print = 0, rc, config_exit = 0;
	uint64_t t0 = ipc_now_ns();
	config_defaults(&b.conf);
	b.listen_fd = b.lock_fd = -1;
	if (parse_args(argc, argv, &b.conf, &print))
		return 2;
	if (print) {
		config_print(&b.conf, STDOUT_FILENO);
		return 0;
	}
	blog_verbose = b.conf.verbose;
	block_signals();
	if (b.conf.socket_path[0])
		snprintf(b.socket_path, sizeof(b.socket_path), "%s", b.conf.socket_path);
	else if ((rc = gpuq_default_socket(b.socket_path, sizeof(b.socket_path))))
		goto out;
	if (getrandom(&b.epoch, sizeof(b.epoch), 0) != sizeof(b.epoch))
		b.epoch = t0 ^ ((uint64_t)getpid() << 32);
	b.started_ns = t0;
	if ((rc = listen_socket(&b))) {
		fprintf(stderr, "gpuqd: socket %s: %s\n", b.socket_path,
			rc == -EADDRINUSE ? "another gpuqd is running there"
					  : gpuq_strerror(rc));
		goto out;
	}
	if ((rc = create_queues(&b)) || (rc = start_bindings(&b)))
		goto out;
	if (b.conf.metrics[0] &&
	    (rc = metrics_start(&b, b.conf.metrics, &metrics))) {
		fprintf(stderr, "gpuqd: metrics on %s: %s\n", b.conf.metrics,
			rc == GPUQ_ECONFIG ? "want an IPv4 HOST:PORT"
					   : gpuq_strerror(rc));
		if (rc == GPUQ_ECONFIG)
			config_exit = 1; /* a config error, like the others */
		goto out;
	}
	if ((rc = loop_create(&b.loop, &b, b.listen_fd, b.conf.force_epoll)))
		goto out;
	b.ready_ns = ipc_now_ns() - t0;
	blog(0, "ready in %.1f ms: %u queue(s), backend %s, %s loop, socket %s",
	     (double)b.ready_ns / 1e6, b.nqueues,
	     b.queues[0].be->name, loop_kind(b.loop), b.socket_path);
	notify_ready("%u queue(s), backend %s, socket %s", b.nqueues,
		     b.queues[0].be->name, b.socket_path);
	rc = loop_run(b.loop);
	notify_stopping();
	report_drain(&b);
out:
	metrics_stop(metrics);
	stop_bindings(&b);
	loop_destroy(b.loop);
	for (uint32_t i = 0; i < b.nqueues; i++)
		bqueue_halt(&b.queues[i]);
	for (uint32_t i = 0; i < b.nqueues; i++)
		bqueue_destroy(&b.queues[i]);
	free(b.queues);
	if (b.listen_fd >= 0) {
		close(b.listen_fd);
		unlink(b.socket_path);
	}
	if (b.lock_fd >= 0)
		close(b.lock_fd);
	if (rc)
		fprintf(stderr, "gpuqd: exiting: %s\n", gpuq_strerror(rc));
	return config_exit ? 2 : b.exit_status ? b.exit_status : rc ? 1 : 0;
}
