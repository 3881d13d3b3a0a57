/*
 * gpuqctl_stat.c - gpuqctl stat: counters read straight from the queues'
 * shared memory, so they can be read even when the broker's event loop is
 * stuck.  gpuqd writes its pid into <socket>.lock; its queues are the memfds
 * named "gpuq:<queue>" among /proc/<pid>/fd, which the broker's own user (or
 * root) may open.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "broker/gpuqctl.h"
#include "ipc/clock.h"
#include "ipc/ring.h"
#include "libclient/gpuq.h"

#define STAT_MAX_QUEUES 32

static int broker_pid(const char *socket_path, pid_t *pid)
{
	char lock[160], buf[32];
	ssize_t n;
	int fd;
	*pid = 0;
	snprintf(lock, sizeof(lock), "%s.lock", socket_path);
	fd = open(lock, O_RDONLY | O_CLOEXEC);
	if (fd < 0) /* not there: no broker; EACCES: not ours to read */
		return errno == ENOENT || !errno ? GPUQ_ENOBROKER : -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return GPUQ_ENOBROKER;
	buf[n] = 0;
	*pid = (pid_t)atoi(buf);
	return *pid > 0 && kill(*pid, 0) == 0 ? 0 : GPUQ_ENOBROKER;
}

/* Map one fd of the broker if it is one of its queues. */
static int map_if_queue(pid_t pid, const char *fdname, struct ipc_ring *r)
{
	char path[300], target[128];
	struct stat st;
	ssize_t n;
	int fd, rc;
	snprintf(path, sizeof(path), "/proc/%d/fd/%s", (int)pid, fdname);
	n = readlink(path, target, sizeof(target) - 1);
	if (n <= 0)
		return 0;
	target[n] = 0;
	if (strncmp(target, "/memfd:gpuq:", 12) != 0)
		return 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	rc = fstat(fd, &st) < 0 ? -errno : ipc_ring_map_ro(r, fd, (size_t)st.st_size);
	close(fd);
	return rc ? rc : 1;
}

static int open_queues(const char *socket_path, struct ipc_ring *rings, int max)
{
	struct dirent *de;
	char dir[32];
	pid_t pid;
	DIR *d;
	int n = 0, rc = broker_pid(socket_path, &pid);
	if (rc)
		return rc;
	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
	d = opendir(dir);
	if (!d)
		return -errno;
	while ((de = readdir(d)) && n < max) {
		if (de->d_name[0] == '.')
			continue;
		rc = map_if_queue(pid, de->d_name, &rings[n]);
		if (rc < 0) {
			closedir(d);
			while (n)
				ipc_ring_unmap(&rings[--n]);
			return rc;
		}
		n += rc;
	}
	closedir(d);
	return n;
}

/* Upper bound (us) of the bucket holding the p-th fraction of samples. */
static uint64_t percentile_us(const struct ipc_counts *c, double p)
{
	uint64_t want = (uint64_t)(p * (double)c->lat_count), seen = 0;
	if (!c->lat_count)
		return 0;
	for (uint32_t b = 0; b < IPC_LAT_BUCKETS; b++) {
		seen += c->lat[b];
		if (seen > want || seen == c->lat_count)
			return 1ull << b;
	}
	return 1ull << (IPC_LAT_BUCKETS - 1);
}

struct sample {
	struct ipc_counts c;
	uint64_t t_ns, hb_age_ns;
};

static void take_sample(const struct ipc_ring *r, struct sample *s)
{
	uint64_t hb = ipc_load_acquire(&r->hdr->heartbeat_ns);
	ipc_counts_read(r, &s->c);
	s->t_ns = ipc_now_ns();
	s->hb_age_ns = s->t_ns > hb ? s->t_ns - hb : 0;
}

static void print_sample(const struct ipc_ring *r, const struct sample *s,
			 const struct sample *prev, int json)
{
	const struct ipc_counts *c = &s->c;
	uint64_t depth = c->head > c->completed + c->skipped
				 ? c->head - c->completed - c->skipped : 0;
	double dt = prev ? (double)(s->t_ns - prev->t_ns) / 1e9 : 0;
	double rate = prev && dt > 0
			      ? (double)(c->completed - prev->c.completed) / dt : 0;
	if (json) {
		printf("{\"queue\":\"%s\",\"paused\":%s,\"depth\":%" PRIu64
		       ",\"enqueued\":%" PRIu64 ",\"completed\":%" PRIu64
		       ",\"retried\":%" PRIu64 ",\"dead_lettered\":%" PRIu64
		       ",\"reclaimed\":%" PRIu64 ",\"full_events\":%" PRIu64
		       ",\"dlq_pending\":%" PRIu64 ",\"completed_per_s\":%.1f"
		       ",\"latency_p50_us_le\":%" PRIu64
		       ",\"latency_p99_us_le\":%" PRIu64
		       ",\"latency_count\":%" PRIu64
		       ",\"heartbeat_age_ms\":%.1f}\n",
		       r->hdr->name, r->hdr->paused ? "true" : "false", depth,
		       c->published, c->completed, c->retried, c->dead_lettered,
		       c->skipped, c->full_events, c->dlq_pending, rate,
		       percentile_us(c, 0.5), percentile_us(c, 0.99),
		       c->lat_count, (double)s->hb_age_ns / 1e6);
		return;
	}
	printf("%-16s %-6s %8" PRIu64 " %12" PRIu64 " %12" PRIu64 " %9" PRIu64
	       " %7" PRIu64 " %7" PRIu64 " %12.0f %8" PRIu64 " %8" PRIu64
	       " %8.0f\n",
	       r->hdr->name, r->hdr->paused ? "paused" : "-", depth,
	       c->published, c->completed, c->retried, c->dead_lettered,
	       c->skipped, rate, percentile_us(c, 0.5), percentile_us(c, 0.99),
	       (double)s->hb_age_ns / 1e6);
}

static void print_header(void)
{
	printf("%-16s %-6s %8s %12s %12s %9s %7s %7s %12s %8s %8s %8s\n",
	       "QUEUE", "PAUSE", "DEPTH", "ENQUEUED", "COMPLETED", "RETRIED",
	       "DEAD", "RECLAIM", "DONE/S", "P50<=US", "P99<=US", "HB_MS");
}

int gpuqctl_stat(const char *socket_path, double interval_s, long count,
		 int json)
{
	struct ipc_ring rings[STAT_MAX_QUEUES];
	struct sample prev[STAT_MAX_QUEUES], cur;
	/* On a terminal a watch redraws in place, like top; piped, every
	 * sample is appended as plain lines (or JSON), with a timestamp. */
	int tty = !json && isatty(STDOUT_FILENO);
	int n = open_queues(socket_path, rings, STAT_MAX_QUEUES);
	if (n < 0)
		return n;
	if (n == 0)
		return GPUQ_ENOBROKER;
	for (long round = 0; interval_s <= 0 ? round < 1 : (count <= 0 || round < count);
	     round++) {
		if (round) {
			struct timespec ts = { (time_t)interval_s,
					       (long)((interval_s - (double)(time_t)interval_s) * 1e9) };
			nanosleep(&ts, NULL);
		}
		if (tty && interval_s > 0)
			printf("\033[H\033[2J");
		if (!json && interval_s > 0 && !tty)
			printf("# %.3f\n", (double)ipc_now_ns() / 1e9);
		if (!json)
			print_header();
		for (int i = 0; i < n; i++) {
			take_sample(&rings[i], &cur);
			print_sample(&rings[i], &cur, round ? &prev[i] : NULL, json);
			prev[i] = cur;
		}
		fflush(stdout);
	}
	for (int i = 0; i < n; i++)
		ipc_ring_unmap(&rings[i]);
	return 0;
}
