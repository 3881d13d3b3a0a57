/*
 * check_operate.c - what an operator uses: the Prometheus endpoint (scraped
 * and parsed), gpuqctl stat from shared memory while the broker is frozen,
 * pause/resume, clients, queues, --json everywhere, exit codes, and
 * gpuqd --print-config.
 */
#include "config.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench/reference.h"
#include "libclient/gpuq.h"
#include "tests/harness.h"
#include "tests/runner.h"

#define WAIT_MS 5000

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

/* A TCP port nobody listens on right now. */
static int free_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	int s = socket(AF_INET, SOCK_STREAM, 0), port;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(getsockname(s, (struct sockaddr *)&sa, &len), 0);
	port = ntohs(sa.sin_port);
	close(s);
	return port;
}

/* GET path from 127.0.0.1:port; returns the HTTP status, body in buf. */
static int http_get(int port, const char *path, char *buf, size_t cap)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	char req[128], *body;
	size_t got = 0;
	ssize_t n;
	int status = 0, s = socket(AF_INET, SOCK_STREAM, 0);
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(connect(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
	n = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\n\r\n", path);
	ck_assert_int_eq(send(s, req, (size_t)n, 0), n);
	while ((n = recv(s, buf + got, cap - 1 - got, 0)) > 0)
		got += (size_t)n;
	close(s);
	buf[got] = 0;
	if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
		return -1;
	body = strstr(buf, "\r\n\r\n");
	if (body)
		memmove(buf, body + 4, strlen(body + 4) + 1);
	return status;
}

/* The value of the sample whose name and labels are exactly `series`. */
static double sample(const char *text, const char *series)
{
	const char *p = text;
	size_t n = strlen(series);
	while ((p = strstr(p, series))) {
		if ((p == text || p[-1] == '\n') && p[n] == ' ')
			return strtod(p + n + 1, NULL);
		p += n;
	}
	ck_abort_msg("no sample %s", series);
	return -1;
}

/* Every line is a comment or "name{labels} value" with a number. */
static void check_exposition(const char *text)
{
	const char *line = text;
	int samples = 0;
	while (*line) {
		const char *end = strchr(line, '\n');
		char buf[512], *sp, *v;
		size_t len = end ? (size_t)(end - line) : strlen(line);
		ck_assert_uint_lt(len, sizeof(buf));
		memcpy(buf, line, len);
		buf[len] = 0;
		if (len && buf[0] != '#') {
			ck_assert_msg(strncmp(buf, "gpuq_", 5) == 0, "%s", buf);
			sp = strrchr(buf, ' ');
			ck_assert_ptr_nonnull(sp);
			strtod(sp + 1, &v);
			ck_assert_msg(*v == 0 && v != sp + 1, "bad value: %s", buf);
			samples++;
		} else if (len) {
			ck_assert_msg(!strncmp(buf, "# HELP gpuq_", 12) ||
					      !strncmp(buf, "# TYPE gpuq_", 12),
				      "%s", buf);
		}
		line += len + (end ? 1 : 0);
	}
	ck_assert_int_gt(samples, 20);
}

START_TEST(test_metrics)
{
	char set[64], text[65536], series[128];
	const char *argv[] = { "-q", "m,handler=checksum,slot_bytes=64", "--set",
			       set, NULL };
	struct broker_proc b;
	gpuq_client *c;
	gpuq_queue *q;
	uint8_t p[64];
	double prev = -1;
	int port = free_port();
	snprintf(set, sizeof(set), "metrics=127.0.0.1:%d", port);
	ck_assert_int_eq(broker_start(&b, argv), 0);
	ck_assert_int_eq(gpuq_connect(b.socket, &c), 0);
	ck_assert_int_eq(gpuq_open(c, "m", &q), 0);
	for (uint64_t i = 0; i < 500; i++) {
		uint64_t id;
		ref_fill(p, sizeof(p), i);
		ck_assert_int_eq(gpuq_enqueue(q, p, sizeof(p), &id, WAIT_MS), 0);
		ck_assert_int_eq(gpuq_wait(q, id, p, 4, NULL, WAIT_MS), 0);
	}
	ck_assert_int_eq(http_get(port, "/metrics", text, sizeof(text)), 200);
	check_exposition(text);
	ck_assert(sample(text, "gpuq_enqueued_total{queue=\"m\"}") == 500);
	ck_assert(sample(text, "gpuq_completed_total{queue=\"m\"}") == 500);
	ck_assert(sample(text, "gpuq_depth{queue=\"m\"}") == 0);
	ck_assert(sample(text, "gpuq_clients{queue=\"m\"}") == 1);
	{
		const char *be = getenv("GPUQ_TEST_BACKEND");
		snprintf(series, sizeof(series),
			 "gpuq_backend_up{queue=\"m\",backend=\"%s\"}",
			 be && *be ? be : "cpu");
		ck_assert(sample(text, series) == 1);
	}
	/* The histogram: cumulative, ending at the count. */
	for (int k = 0; k < 23; k++) {
		double v;
		snprintf(series, sizeof(series),
			 "gpuq_latency_seconds_bucket{queue=\"m\",le=\"%.6f\"}",
			 (double)(1u << k) / 1e6);
		v = sample(text, series);
		ck_assert(v >= prev);
		prev = v;
	}
	ck_assert(sample(text, "gpuq_latency_seconds_bucket{queue=\"m\",le=\"+Inf\"}") == 500);
	ck_assert(sample(text, "gpuq_latency_seconds_count{queue=\"m\"}") == 500);
	ck_assert(sample(text, "gpuq_latency_seconds_sum{queue=\"m\"}") > 0);
	ck_assert(sample(text, "gpuq_broker_heartbeat_age_seconds") < 1.0);
	ck_assert_int_eq(http_get(port, "/other", text, sizeof(text)), 404);
	/* a queue without tables has no table series */
	ck_assert_ptr_null(strstr(text, "gpuq_table_slots{"));
	gpuq_disconnect(c);
	ck_assert_int_eq(broker_stop(&b, SIGTERM, WAIT_MS), 0);
	broker_cleanup(&b);
}
END_TEST

/* Hash tables report their size, memory and use. */
START_TEST(test_metrics_tables)
{
	char set[64], text[65536];
	const char *argv[] = {
		"-q", "kv,handler=kv,table_slots=1024,table_value_bytes=32",
		"-q", "once,handler=echo,exactly_once=yes,dedupe_slots=2048",
		"--set", set, NULL
	};
	struct broker_proc b;
	gpuq_client *c;
	gpuq_queue *q;
	int port = free_port();
	snprintf(set, sizeof(set), "metrics=127.0.0.1:%d", port);
	ck_assert_int_eq(broker_start(&b, argv), 0);
	ck_assert_int_eq(gpuq_connect(b.socket, &c), 0);
	ck_assert_int_eq(gpuq_open(c, "kv", &q), 0);
	for (int i = 0; i < 10; i++) {
		char k[16];
		snprintf(k, sizeof(k), "k%d", i);
		ck_assert_int_eq(gpuq_kv_put(q, k, strlen(k), "v", 1, WAIT_MS), 0);
	}
	/* Tables in VRAM (cuda) are counted by a pass every 100 ms: wait
	 * for the count rather than read it once. */
	for (int i = 0; i < 100; i++) {
		ck_assert_int_eq(http_get(port, "/metrics", text, sizeof(text)),
				 200);
		if (sample(text, "gpuq_table_used{queue=\"kv\",table=\"state\"}") == 10)
			break;
		sleep_ms(50);
	}
	check_exposition(text);
	ck_assert(sample(text, "gpuq_table_slots{queue=\"kv\",table=\"state\"}") == 1024);
	ck_assert(sample(text, "gpuq_table_used{queue=\"kv\",table=\"state\"}") == 10);
	/* 1024 slots of 48 + 32 bytes, and 128 bucket locks of 4 */
	ck_assert(sample(text, "gpuq_table_bytes{queue=\"kv\",table=\"state\"}") ==
		  1024 * 80 + 128 * 4);
	ck_assert(sample(text, "gpuq_table_slots{queue=\"once\",table=\"dedupe\"}") == 2048);
	ck_assert(sample(text, "gpuq_table_used{queue=\"once\",table=\"dedupe\"}") == 0);
	gpuq_disconnect(c);
	ck_assert_int_eq(broker_stop(&b, SIGTERM, WAIT_MS), 0);
	broker_cleanup(&b);
}
END_TEST

static int ctl(const struct broker_proc *b, char *out, size_t cap,
	       const char *a1, const char *a2, const char *a3)
{
	const char *argv[] = { tool_path("GPUQCTL", "broker/gpuqctl"), "-s",
			       b->socket, "--json", a1, a2, a3, NULL };
	int st = run_capture(argv, out, cap);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* A broker with one echo queue s, a handle on it, and n messages sent
 * and answered through it. */
static gpuq_queue *echo_broker(struct broker_proc *b, gpuq_client **c, int n)
{
	const char *argv[] = { "-q", "s,handler=echo,slot_bytes=64", NULL };
	gpuq_queue *q;
	char out[8];
	uint64_t id;
	ck_assert_int_eq(broker_start(b, argv), 0);
	ck_assert_int_eq(gpuq_connect(b->socket, c), 0);
	ck_assert_int_eq(gpuq_open(*c, "s", &q), 0);
	for (int i = 0; i < n; i++) {
		ck_assert_int_eq(gpuq_enqueue(q, "x", 1, &id, WAIT_MS), 0);
		ck_assert_int_eq(gpuq_wait(q, id, out, 1, NULL, WAIT_MS), 0);
	}
	return q;
}

START_TEST(test_stat_frozen_broker)
{
	struct broker_proc b;
	char out[8192];
	gpuq_client *c;
	echo_broker(&b, &c, 10);
	/* Freeze the whole broker: the socket answers nothing now, yet the
	 * counters are still there to read. */
	ck_assert_int_eq(kill(b.pid, SIGSTOP), 0);
	sleep_ms(300);
	ck_assert_int_eq(ctl(&b, out, sizeof(out), "stat", NULL, NULL), 0);
	ck_assert_int_eq(json_number(out, "\"s\"", "completed"), 10);
	ck_assert_int_eq(json_number(out, "\"s\"", "latency_count"), 10);
	/* ... and the stale heartbeat shows the freeze. */
	ck_assert_int_ge(json_number(out, "\"s\"", "heartbeat_age_ms"), 200);
	ck_assert_int_eq(kill(b.pid, SIGCONT), 0);
	gpuq_disconnect(c);
	ck_assert_int_eq(broker_stop(&b, SIGTERM, WAIT_MS), 0);
	broker_cleanup(&b);
}
END_TEST

/* A frozen broker is counted dead: its heartbeat stops and its loop
 * answers no liveness ping.  Before it froze, a heartbeat bound of 1 ms
 * (every heartbeat "too old") cost the producer only pings, which the
 * running loop answered: no call failed. */
START_TEST(test_frozen_broker_dead)
{
	struct broker_proc b;
	gpuq_client *c;
	gpuq_queue *q;
	uint64_t id;
	ck_assert_int_eq(setenv("GPUQ_HEARTBEAT_TIMEOUT_MS", "1", 1), 0);
	q = echo_broker(&b, &c, 200);
	ck_assert_int_eq(kill(b.pid, SIGSTOP), 0);
	sleep_ms(300); /* past the last ping's vouching */
	ck_assert_int_eq(gpuq_enqueue(q, "x", 1, &id, WAIT_MS), GPUQ_EBROKERDEAD);
	ck_assert_int_eq(kill(b.pid, SIGCONT), 0);
	/* the verdict sticks, even though the broker runs again */
	ck_assert_int_eq(gpuq_enqueue(q, "x", 1, &id, WAIT_MS), GPUQ_EBROKERDEAD);
	gpuq_disconnect(c);
	ck_assert_int_eq(broker_stop(&b, SIGTERM, WAIT_MS), 0);
	broker_cleanup(&b);
	unsetenv("GPUQ_HEARTBEAT_TIMEOUT_MS");
}
END_TEST

START_TEST(test_pause_clients_queues)
{
	const char *argv[] = { "-q", "p,handler=echo,slot_bytes=64",
			       "-q", "o,handler=checksum,ordered=yes,workers=2",
			       NULL };
	struct broker_proc b;
	char out[16384], pid[32];
	gpuq_client *c;
	gpuq_queue *q;
	gpuq_loan loan;
	uint64_t id;
	ck_assert_int_eq(broker_start(&b, argv), 0);
	ck_assert_int_eq(gpuq_connect(b.socket, &c), 0);
	ck_assert_int_eq(gpuq_open(c, "p", &q), 0);

	/* queues */
	ck_assert_int_eq(ctl(&b, out, sizeof(out), "queues", NULL, NULL), 0);
	ck_assert_int_eq(json_number(out, "\"o\"", "rings"), 2);
	ck_assert(strstr(out, "\"ordered\":true") != NULL);
	ck_assert_int_eq(json_number(out, "\"p\"", "capacity"), 4096);

	/* pause: nothing completes; resume: it does. */
	ck_assert_int_eq(ctl(&b, out, sizeof(out), "pause", "p", NULL), 0);
	ck_assert(strstr(out, "\"state\":\"running\"") != NULL);
	ck_assert_int_eq(gpuq_enqueue(q, "held", 4, &id, WAIT_MS), 0);
	ck_assert_int_eq(gpuq_wait(q, id, out, 4, NULL, 200), GPUQ_ETIMEDOUT);
	ck_assert_int_eq(ctl(&b, out, sizeof(out), "resume", NULL, NULL), 0);
	ck_assert_int_eq(gpuq_wait(q, id, out, 4, NULL, WAIT_MS), 0);
	ck_assert_int_eq(memcmp(out, "held", 4), 0);
	ck_assert_int_eq(ctl(&b, out, sizeof(out), "pause", "nosuch", NULL), 1);
	ck_assert(strstr(out, "GPUQ_ENOQUEUE") != NULL);

	/* clients: us, with a loan of 3 out */
	ck_assert_int_eq(gpuq_reserve(q, 3, &loan, 0), 0);
	ck_assert_int_eq(ctl(&b, out, sizeof(out), "clients", NULL, NULL), 0);
	ck_assert_int_eq(json_number(out, NULL, "total"), 1);
	snprintf(pid, sizeof(pid), "\"pid\":%d", (int)getpid());
	ck_assert_msg(strstr(out, pid) != NULL, "%s", out);
	ck_assert_int_eq(json_number(out, NULL, "reserved"), 3);
	ck_assert_int_eq(json_number(out, NULL, "published"), 1);

	/* exit codes: usage 2, broker errors 1 */
	ck_assert_int_eq(ctl(&b, out, sizeof(out), "frobnicate", NULL, NULL), 2);
	{
		const char *a[] = { tool_path("GPUQCTL", "broker/gpuqctl"), "-s",
				    "/nonexistent/gpuqd.sock", "status", NULL };
		int st = run_capture(a, out, sizeof(out));
		ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1);
	}
	gpuq_disconnect(c);
	ck_assert_int_eq(broker_stop(&b, SIGTERM, WAIT_MS), 0);
	broker_cleanup(&b);
}
END_TEST

START_TEST(test_print_config)
{
	char out[8192], path[] = "/tmp/gpuq-conf-XXXXXX";
	const char *a1[] = { tool_path("GPUQD", "broker/gpuqd"), "-q",
			     "x,handler=vector,capacity=1024,ordered=yes,workers=2",
			     "--set", "drain_timeout_ms=1234", "--print-config",
			     NULL };
	const char *a2[] = { tool_path("GPUQD", "broker/gpuqd"), "-c", path,
			     "--print-config", NULL };
	char again[8192];
	FILE *f;
	int fd, st = run_capture(a1, out, sizeof(out));
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	ck_assert(strstr(out, "[queue x]") != NULL);
	ck_assert(strstr(out, "drain_timeout_ms = 1234") != NULL);
	/* What it prints reads back as the same config. */
	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	f = fdopen(fd, "w");
	fputs(out, f);
	fclose(f);
	st = run_capture(a2, again, sizeof(again));
	unlink(path);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	ck_assert_str_eq(again, out);
}
END_TEST

static Suite *suite_operate(void)
{
	Suite *s = suite_create("operate");
	TCase *tc = tcase_create("ops");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_metrics);
	tcase_add_test(tc, test_metrics_tables);
	tcase_add_test(tc, test_stat_frozen_broker);
	tcase_add_test(tc, test_frozen_broker_dead);
	tcase_add_test(tc, test_pause_clients_queues);
	tcase_add_test(tc, test_print_config);
	suite_add_tcase(s, tc);
	return s;
}

GPUQ_CHECK_MAIN(suite_operate)
