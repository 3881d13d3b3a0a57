/*
 * metrics.c - Prometheus text exposition of every queue's counters, end-to-
 * end latency histogram and backend liveness, served on a TCP port (an
 * IPv4 address; keep it on loopback) by a thread of its own.  Everything it reports is read from the
 * queues' shared memory (the same words gpuqctl stat reads), never from the
 * event loop's state, so scraping is safe from this thread.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "broker/broker.h"
#include "broker/metrics.h"
#include "broker/tracka.h"
#include "ipc/clock.h"
#include "libclient/gpuq.h"

struct metrics {
	struct broker *b;
	int fd;
	int wake[2]; /* written to stop the thread */
	pthread_t th;
};

/* A growing text buffer. */
struct text {
	char *p;
	size_t len, cap;
	int err;
};

static void put(struct text *t, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void put(struct text *t, const char *fmt, ...)
{
	va_list ap;
	int n;
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			t->err = -EINVAL;
			return;
		}
		if ((size_t)n < t->cap - t->len)
			break;
		char *np = realloc(t->p, t->cap * 2 + (size_t)n);
		if (!np) {
			t->err = -ENOMEM;
			return;
		}
		t->p = np;
		t->cap = t->cap * 2 + (size_t)n;
	}
	t->len += (size_t)n;
}

/* One counter or gauge family over every queue, from counts read once
 * per scrape (cs[i] for queue i). */
static void family(struct text *t, struct broker *b,
		   const struct ipc_counts *cs, const char *name,
		   const char *type, const char *help,
		   uint64_t (*get)(const struct ipc_counts *, const struct ipc_ring *))
{
	put(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
	for (uint32_t i = 0; i < b->nqueues; i++)
		put(t, "%s{queue=\"%s\"} %llu\n", name, b->queues[i].conf.name,
		    (unsigned long long)get(&cs[i], &b->queues[i].r));
}

static uint64_t g_enq(const struct ipc_counts *c, const struct ipc_ring *r) { (void)r; return c->published; }
static uint64_t g_done(const struct ipc_counts *c, const struct ipc_ring *r) { (void)r; return c->completed; }
static uint64_t g_retried(const struct ipc_counts *c, const struct ipc_ring *r) { (void)r; return c->retried; }
static uint64_t g_dead(const struct ipc_counts *c, const struct ipc_ring *r) { (void)r; return c->dead_lettered; }
static uint64_t g_reclaimed(const struct ipc_counts *c, const struct ipc_ring *r) { (void)r; return c->skipped; }
static uint64_t g_full(const struct ipc_counts *c, const struct ipc_ring *r) { (void)r; return c->full_events; }
static uint64_t g_dlq(const struct ipc_counts *c, const struct ipc_ring *r) { (void)r; return c->dlq_pending; }
static uint64_t g_depth(const struct ipc_counts *c, const struct ipc_ring *r)
{
	(void)r;
	return c->head > c->completed + c->skipped
		       ? c->head - c->completed - c->skipped : 0;
}
static uint64_t g_clients(const struct ipc_counts *c, const struct ipc_ring *r)
{
	(void)c;
	return ipc_load_relaxed(&r->hdr->clients_attached);
}
static uint64_t g_capacity(const struct ipc_counts *c, const struct ipc_ring *r)
{
	(void)c;
	return (uint64_t)r->hdr->capacity * r->hdr->nrings;
}
static uint64_t g_paused(const struct ipc_counts *c, const struct ipc_ring *r)
{
	(void)c;
	return ipc_load_relaxed(&r->hdr->paused);
}

static void latency(struct text *t, struct broker *b,
		    const struct ipc_counts *cs)
{
	const char *n = "gpuq_latency_seconds";
	put(t, "# HELP %s End-to-end latency, enqueue to result read by the "
	       "producer.\n# TYPE %s histogram\n", n, n);
	for (uint32_t i = 0; i < b->nqueues; i++) {
		const char *q = b->queues[i].conf.name;
		const struct ipc_counts c = cs[i];
		uint64_t cum = 0;
		/* Bucket k holds latencies below 2^k us; the last is +Inf. */
		for (uint32_t k = 0; k + 1 < IPC_LAT_BUCKETS; k++) {
			cum += c.lat[k];
			put(t, "%s_bucket{queue=\"%s\",le=\"%.6f\"} %llu\n", n, q,
			    (double)(1ull << k) / 1e6, (unsigned long long)cum);
		}
		put(t, "%s_bucket{queue=\"%s\",le=\"+Inf\"} %llu\n", n, q,
		    (unsigned long long)c.lat_count);
		put(t, "%s_sum{queue=\"%s\"} %.9f\n", n, q,
		    (double)c.lat_sum_ns / 1e9);
		put(t, "%s_count{queue=\"%s\"} %llu\n", n, q,
		    (unsigned long long)c.lat_count);
	}
}

/* Liveness: the broker's heartbeat, and whether each backend is making
 * progress when it has work (bqueue_tick keeps the last-progress time). */
static void liveness(struct text *t, struct broker *b)
{
	uint64_t now = ipc_now_ns();
	put(t, "# HELP gpuq_backend_up 1 while the queue's backend runs.\n"
	       "# TYPE gpuq_backend_up gauge\n");
	for (uint32_t i = 0; i < b->nqueues; i++) {
		const struct bqueue *q = &b->queues[i];
		uint32_t st = ipc_load_acquire(&q->r.hdr->state);
		put(t, "gpuq_backend_up{queue=\"%s\",backend=\"%s\"} %d\n",
		    q->conf.name, q->be->name,
		    st == IPC_BROKER_RUNNING || st == IPC_BROKER_DRAINING);
	}
	put(t, "# HELP gpuq_backend_idle_seconds Time since the backend last "
	       "completed a message while it had work (0 when it has none).\n"
	       "# TYPE gpuq_backend_idle_seconds gauge\n");
	for (uint32_t i = 0; i < b->nqueues; i++) {
		const struct bqueue *q = &b->queues[i];
		uint64_t since = __atomic_load_n(&q->stalled_since_ns,
						 __ATOMIC_RELAXED);
		put(t, "gpuq_backend_idle_seconds{queue=\"%s\"} %.3f\n",
		    q->conf.name,
		    since && now > since ? (double)(now - since) / 1e9 : 0.0);
	}
	put(t, "# HELP gpuq_broker_heartbeat_age_seconds Since the broker's "
	       "event loop last ran its tick.\n"
	       "# TYPE gpuq_broker_heartbeat_age_seconds gauge\n");
	if (b->nqueues) {
		uint64_t hb = ipc_load_acquire(&b->queues[0].r.hdr->heartbeat_ns);
		put(t, "gpuq_broker_heartbeat_age_seconds %.3f\n",
		    now > hb ? (double)(now - hb) / 1e9 : 0.0);
	}
	put(t, "# HELP gpuq_broker_uptime_seconds Since gpuqd started.\n"
	       "# TYPE gpuq_broker_uptime_seconds gauge\n"
	       "gpuq_broker_uptime_seconds %.3f\n",
	    (double)(now - b->started_ns) / 1e9);
}

/* Track A bindings' counters (only queues bound to a Redis stream).  The
 * binding lives from before the metrics thread starts until after it
 * stops, so q->tracka is stable here. */
static void tracka_families(struct text *t, struct broker *b)
{
	static const struct {
		const char *name, *help;
		size_t off;
	} f[] = {
#define TF(n, h) { "gpuq_tracka_" #n "_total", h, offsetof(struct tracka_stats, n) }
		TF(read, "Stream entries received from Redis."),
		TF(enqueued, "Stream entries published into the ring."),
		TF(results, "Results written to the result stream."),
		TF(acked, "Stream entries acknowledged (XACK)."),
		TF(dead_lettered, "Entries written to the dead-letter stream."),
		TF(redelivered, "Entries received again (own pending or claimed)."),
		TF(claimed, "Entries taken over with XAUTOCLAIM."),
		TF(reconnects, "Connections to Redis after the first."),
		TF(write_errors, "Result or dead-letter writes Redis refused."),
#undef TF
	};
	struct tracka_stats st;
	for (size_t k = 0; k < sizeof(f) / sizeof(f[0]); k++) {
		put(t, "# HELP %s %s\n# TYPE %s counter\n", f[k].name, f[k].help,
		    f[k].name);
		for (uint32_t i = 0; i < b->nqueues; i++) {
			if (!b->queues[i].tracka)
				continue;
			tracka_stats_get(b->queues[i].tracka, &st);
			put(t, "%s{queue=\"%s\"} %llu\n", f[k].name,
			    b->queues[i].conf.name,
			    (unsigned long long)*(const uint64_t *)((const char *)&st +
								    f[k].off));
		}
	}
}

/* Hash tables (design.md §15): size, memory and use, per queue and
 * table ("state": handler state and kv; "dedupe": exactly-once records).
 * Use is a scan of the control words, a few ms for millions of slots; for
 * tables in VRAM, the device's last count (gpu/tables_cuda.cu). */
static void table_families(struct text *t, struct broker *b)
{
	static const char *const help[3] = {
		"Slots in the queue's hash table.",
		"Bytes the queue's hash table takes (slots and locks).",
		"Slots in use in the queue's hash table.",
	};
	static const char *const name[3] = { "gpuq_table_slots",
					     "gpuq_table_bytes",
					     "gpuq_table_used" };
	for (int k = 0; k < 3; k++) {
		put(t, "# HELP %s %s\n# TYPE %s gauge\n", name[k], help[k],
		    name[k]);
		for (uint32_t i = 0; i < b->nqueues; i++) {
			const struct bqueue *q = &b->queues[i];
			const struct gpuq_kvt *tab[2] = { &q->table, &q->once };
			static const char *const kind[2] = { "state", "dedupe" };
			for (int j = 0; j < 2; j++) {
				uint64_t v;
				if (!tab[j]->nbuckets)
					continue;
				v = k == 0 ? tab[j]->nbuckets * GPUQ_KVT_BUCKET
				    : k == 1 ? bqueue_table_bytes(tab[j])
					     : bqueue_table_used(q, j);
				put(t, "%s{queue=\"%s\",table=\"%s\"} %llu\n",
				    name[k], q->conf.name, kind[j],
				    (unsigned long long)v);
			}
		}
	}
}

int metrics_render(struct broker *b, char **out)
{
	struct text t = { malloc(16384), 0, 16384, 0 };
	/* Every family of a queue from one reading of its counters: one
	 * sweep of its workers and clients per scrape, and figures that
	 * agree with each other. */
	struct ipc_counts *cs = calloc(b->nqueues ? b->nqueues : 1, sizeof(*cs));
	if (!t.p || !cs) {
		free(t.p);
		free(cs);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < b->nqueues; i++)
		ipc_counts_read(&b->queues[i].r, &cs[i]);
	family(&t, b, cs, "gpuq_enqueued_total", "counter", "Messages published.", g_enq);
	family(&t, b, cs, "gpuq_completed_total", "counter",
	       "Messages finished, any outcome.", g_done);
	family(&t, b, cs, "gpuq_retried_total", "counter",
	       "Handler re-runs after a failure.", g_retried);
	family(&t, b, cs, "gpuq_dead_lettered_total", "counter",
	       "Messages moved to the dead-letter queue.", g_dead);
	family(&t, b, cs, "gpuq_reclaimed_total", "counter",
	       "Unpublished tickets of dead producers skipped.", g_reclaimed);
	family(&t, b, cs, "gpuq_full_events_total", "counter",
	       "Enqueue calls that found the ring full.", g_full);
	family(&t, b, cs, "gpuq_depth", "gauge",
	       "Messages reserved or published, not completed.", g_depth);
	family(&t, b, cs, "gpuq_capacity", "gauge", "Slots, over all rings.", g_capacity);
	family(&t, b, cs, "gpuq_dlq_pending", "gauge", "Dead letters held.", g_dlq);
	family(&t, b, cs, "gpuq_clients", "gauge", "Attached producers.", g_clients);
	family(&t, b, cs, "gpuq_paused", "gauge", "1 while paused.", g_paused);
	latency(&t, b, cs);
	liveness(&t, b);
	tracka_families(&t, b);
	table_families(&t, b);
	free(cs);
	if (t.err) {
		free(t.p);
		return t.err;
	}
	*out = t.p;
	return (int)t.len;
}

static void send_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
		if (k <= 0)
			return;
		p += k;
		n -= (size_t)k;
	}
}

/* One HTTP/1.0-style exchange: read the request line, answer, close. */
static void serve(struct metrics *m, int fd)
{
	struct timeval tv = { 1, 0 };
	char req[1024], hdr[256];
	char *body = NULL;
	ssize_t n;
	int len;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	n = recv(fd, req, sizeof(req) - 1, 0);
	if (n <= 0)
		return;
	req[n] = 0;
	if (strncmp(req, "GET /metrics ", 13) != 0 &&
	    strncmp(req, "GET /metrics\r", 13) != 0) {
		static const char nf[] = "HTTP/1.0 404 Not Found\r\n"
					 "Content-Length: 0\r\n\r\n";
		send_all(fd, nf, sizeof(nf) - 1);
		return;
	}
	len = metrics_render(m->b, &body);
	if (len < 0) {
		static const char se[] = "HTTP/1.0 500 Internal Server Error\r\n"
					 "Content-Length: 0\r\n\r\n";
		send_all(fd, se, sizeof(se) - 1);
		return;
	}
	n = snprintf(hdr, sizeof(hdr),
		     "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
		     "Content-Length: %d\r\nConnection: close\r\n\r\n", len);
	send_all(fd, hdr, (size_t)n);
	send_all(fd, body, (size_t)len);
	free(body);
}

static void *metrics_main(void *arg)
{
	struct metrics *m = arg;
	struct pollfd p[2] = { { m->fd, POLLIN, 0 }, { m->wake[0], POLLIN, 0 } };
	for (;;) {
		if (poll(p, 2, -1) < 0 && errno != EINTR)
			break;
		if (p[1].revents)
			break;
		if (p[0].revents & POLLIN) {
			int c = accept4(m->fd, NULL, NULL, SOCK_CLOEXEC);
			if (c >= 0) {
				serve(m, c);
				close(c);
			}
		}
	}
	return NULL;
}

static int parse_addr(const char *addr, struct sockaddr_in *sa)
{
	char host[64];
	const char *colon = strrchr(addr, ':');
	char *end;
	long port;
	if (!colon || (size_t)(colon - addr) >= sizeof(host))
		return GPUQ_ECONFIG;
	memcpy(host, addr, (size_t)(colon - addr));
	host[colon - addr] = 0;
	port = strtol(colon + 1, &end, 10);
	if (*end || port < 0 || port > 65535)
		return GPUQ_ECONFIG;
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_port = htons((uint16_t)port);
	return inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : GPUQ_ECONFIG;
}

int metrics_start(struct broker *b, const char *addr, struct metrics **out)
{
	struct sockaddr_in sa;
	struct metrics *m;
	int one = 1, rc = parse_addr(addr, &sa);
	if (rc)
		return rc;
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->b = b;
	m->wake[0] = m->wake[1] = -1;
	m->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (m->fd < 0 || pipe2(m->wake, O_CLOEXEC) < 0)
		goto fail_errno;
	setsockopt(m->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(m->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(m->fd, 16) < 0)
		goto fail_errno;
	rc = -pthread_create(&m->th, NULL, metrics_main, m);
	if (rc)
		goto fail;
	*out = m;
	return 0;
fail_errno:
	rc = -errno;
fail:
	if (m->fd >= 0)
		close(m->fd);
	if (m->wake[0] >= 0) {
		close(m->wake[0]);
		close(m->wake[1]);
	}
	free(m);
	return rc;
}

void metrics_stop(struct metrics *m)
{
	if (!m)
		return;
	if (write(m->wake[1], "x", 1) != 1)
		blog(0, "metrics: could not wake the thread");
	pthread_join(m->th, NULL);
	close(m->fd);
	close(m->wake[0]);
	close(m->wake[1]);
	free(m);
}
