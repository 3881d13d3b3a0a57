/*
 * check_broker.c - libgpuqclient against a real gpuqd: every documented
 * error code for bad input, garbled control messages, and the lifecycle
 * (full ring, full completion area, full client table, config errors,
 * refused credentials, a broker killed and restarted, a second broker on
 * the same socket, a producer killed while holding a loan, SIGTERM drain)
 * on both event loops.
 *
 * Each test starts its own broker on a private socket (tests/harness.h);
 * $GPUQD and $GPUQCTL name the binaries.  A failed assertion leaves no
 * broker running and no directory behind, with or without CK_FORK (see
 * teardown() and teardown_runner()).
 */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench/reference.h"
#include "ipc/proto.h"
#include "libclient/gpuq.h"
#include "tests/harness.h"

/* Generous: the suite runs under ASan too, on two shared cores. */
#define TEST_TIMEOUT_S 60
#define WAIT_MS 5000 /* for results that are certain to come */
#define MAX_BROKERS 32

/* Loop tests: index 0 runs the default (io_uring) loop, 1 --force-epoll. */
#define EPOLL_ARG(i) ((i) ? "--force-epoll" : NULL)

#define EXPECT_RC(want, call)                                               \
	do {                                                                \
		int rc_ = (call);                                           \
		ck_assert_msg(rc_ == (want), "%s = %s (%d), want %s (%d)",  \
			      #call, gpuq_err_name(rc_), rc_,               \
			      gpuq_err_name(want), (int)(want));            \
	} while (0)

/*
 * The brokers (and bare test directories) the running test made.  Shared
 * with the runner (main() maps it MAP_SHARED): with CK_FORK a failed
 * assertion ends the test's process at once, without the checked teardown,
 * and check kills its process group; the runner then removes what it left.
 */
static struct broker_proc *brokers;

/* ---- time ---- */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double ms_since(uint64_t t0)
{
	return (double)(now_ns() - t0) / 1e6;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static uint64_t cpu_ns(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ((uint64_t)ru.ru_utime.tv_sec + (uint64_t)ru.ru_stime.tv_sec) *
		       1000000000ull +
	       ((uint64_t)ru.ru_utime.tv_usec + (uint64_t)ru.ru_stime.tv_usec) *
		       1000ull;
}

/* ---- brokers ---- */

static struct broker_proc *broker_slot(void)
{
	for (int i = 0; i < MAX_BROKERS; i++)
		if (!brokers[i].dir[0] && !brokers[i].pid)
			return &brokers[i];
	ck_abort_msg("all %d broker slots in use", MAX_BROKERS);
	return NULL;
}

/* A file's text, or "" (a static buffer). */
static const char *file_text(const char *path)
{
	static char text[65536];
	size_t n = 0;
	FILE *f = fopen(path, "r");

	if (f) {
		n = fread(text, 1, sizeof(text) - 1, f);
		fclose(f);
	}
	text[n] = '\0';
	return text;
}

/* The broker's stderr so far. */
static const char *log_text(const struct broker_proc *b)
{
	return file_text(b->log);
}

/*
 * Several tests hold a message back by keeping an earlier ticket on loan:
 * the CPU backend consumes each chunk of tickets in order, so everything
 * behind the loan waits.  The CUDA kernel consumes every published ticket
 * of a window independently, so there those "not done yet" assertions do
 * not apply (the bundle runs this suite with GPUQ_TEST_BACKEND=cuda).
 */
static int consumer_in_order(void)
{
	const char *b = getenv("GPUQ_TEST_BACKEND");
	return !b || !*b || !strcmp(b, "cpu");
}

static const char *backend_name(void)
{
	const char *b = getenv("GPUQ_TEST_BACKEND");
	return b && *b ? b : "cpu";
}

static struct broker_proc *start(const char *const *argv)
{
	struct broker_proc *b = broker_slot();
	int rc = broker_start(b, argv);

	ck_assert_msg(rc == 0, "gpuqd did not start (%s): %s", b->log,
		      log_text(b));
	return b;
}

/* Stop, remove the directory, and fail on any sanitizer report in the
 * broker's log (the ASan build runs gpuqd under ASan too). */
static void finish(struct broker_proc *b)
{
	const char *text = log_text(b);
	int bad = strstr(text, "Sanitizer") || strstr(text, "runtime error");

	broker_cleanup(b);
	memset(b, 0, sizeof(*b));
	ck_assert_msg(!bad, "gpuqd log has a sanitizer report:\n%s", text);
}

/* Checked: in the test's process, after each test. */
static void teardown(void)
{
	for (int i = 0; i < MAX_BROKERS; i++) {
		if (brokers[i].dir[0] || brokers[i].pid) {
			broker_cleanup(&brokers[i]);
			memset(&brokers[i], 0, sizeof(brokers[i]));
		}
	}
}

/* Unchecked: in the runner, after each test case.  Whatever is left was
 * abandoned by a failed test in a process that is gone; its brokers were
 * in that process group, and its pids may belong to others by now. */
static void teardown_runner(void)
{
	for (int i = 0; i < MAX_BROKERS; i++) {
		if (brokers[i].dir[0]) {
			brokers[i].pid = 0;
			broker_cleanup(&brokers[i]);
		}
		memset(&brokers[i], 0, sizeof(brokers[i]));
	}
}

/* A private directory laid out like broker_start()'s, nothing started. */
static struct broker_proc *prep_dir(void)
{
	struct broker_proc *b = broker_slot();

	ck_assert_int_eq(broker_dir(b), 0);
	return b;
}

/* Run argv[0] in the background with stdout and stderr appended to path. */
static pid_t spawn_tool(const char *const *argv, const char *path)
{
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
			      0600);

		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	return pid;
}

/* Wait status of pid, or -1 if it runs past timeout_ms (then killed). */
static int wait_pid(pid_t pid, int timeout_ms)
{
	uint64_t t0 = now_ns();
	int st = -1;

	while (ms_since(t0) < timeout_ms) {
		if (waitpid(pid, &st, WNOHANG) == pid)
			return st;
		sleep_ms(2);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	return -1;
}

static int file_exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fputs(text, f) >= 0, 1);
	ck_assert_int_eq(fclose(f), 0);
}

static void assert_loop_kind(const struct broker_proc *b, int epoll)
{
	const char *log = log_text(b);

	if (epoll || strstr(log, "io_uring unavailable"))
		ck_assert_msg(strstr(log, "epoll loop") != NULL,
			      "no 'epoll loop' in log:\n%s", log);
	else
		ck_assert_msg(strstr(log, "io_uring loop") != NULL,
			      "no 'io_uring loop' in log:\n%s", log);
}

/* ---- clients ---- */

static gpuq_client *connect_ok(const struct broker_proc *b)
{
	gpuq_client *c = NULL;
	int rc = gpuq_connect(b->socket, &c);

	ck_assert_msg(rc == 0, "gpuq_connect: %s", gpuq_err_name(rc));
	ck_assert_ptr_nonnull(c);
	return c;
}

static gpuq_queue *open_ok(gpuq_client *c, const char *name)
{
	gpuq_queue *q = NULL;
	int rc = gpuq_open(c, name, &q);

	ck_assert_msg(rc == 0, "gpuq_open(%s): %s", name, gpuq_err_name(rc));
	ck_assert_ptr_nonnull(q);
	return q;
}

static gpuq_stats stats_of(const gpuq_queue *q)
{
	gpuq_stats s;

	ck_assert_int_eq(gpuq_stats_get(q, &s), 0);
	return s;
}

/* Consumer counters (completed, failed) move just after the result is
 * published: wait, bounded, for the one at off to reach want. */
static uint64_t stat_reaches(const gpuq_queue *q, size_t off, uint64_t want)
{
	uint64_t t0 = now_ns(), v;

	for (;;) {
		gpuq_stats s = stats_of(q);

		memcpy(&v, (const char *)&s + off, sizeof(v));
		if (v >= want || ms_since(t0) > WAIT_MS)
			return v;
		sleep_ms(1);
	}
}

/* Payload of message seq: 1..max bytes of ref_fill(seq). */
static size_t payload(void *buf, size_t max, uint64_t seq)
{
	size_t n = 1 + (size_t)((seq * 37u) % max);

	ref_fill(buf, n, seq);
	return n;
}

static void expect_echo(gpuq_queue *q, uint64_t id, const void *p, size_t n)
{
	uint8_t res[1024];
	size_t len = 0;
	int rc = gpuq_wait(q, id, res, sizeof(res), &len, WAIT_MS);

	ck_assert_msg(rc == 0, "wait id %llu: %s", (unsigned long long)id,
		      gpuq_err_name(rc));
	ck_assert_uint_eq(len, n);
	for (size_t i = 0; i < n; i++)
		ck_assert_msg(res[i] == ((const uint8_t *)p)[i],
			      "id %llu, %zu bytes: byte %zu is %#x, not %#x",
			      (unsigned long long)id, n, i, res[i],
			      ((const uint8_t *)p)[i]);
}

static uint32_t le32(const uint8_t *b)
{
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
	       (uint32_t)b[3] << 24;
}

static void expect_crc(gpuq_queue *q, uint64_t id, const void *p, size_t n)
{
	uint8_t res[16];
	size_t len = 0;
	int rc = gpuq_wait(q, id, res, sizeof(res), &len, WAIT_MS);

	ck_assert_msg(rc == 0, "wait id %llu: %s", (unsigned long long)id,
		      gpuq_err_name(rc));
	ck_assert_uint_eq(len, 4);
	ck_assert_uint_eq(le32(res), ref_crc32c(p, n));
}

/* ---- bad input ---- */

START_TEST(test_bad_arguments)
{
	const char *argv[] = { "-q", "e,handler=echo,capacity=16,slot_bytes=64",
			       NULL };
	struct broker_proc *b = start(argv);
	uint8_t big[65], data[64], buf[64];
	gpuq_client *c = NULL;
	gpuq_queue *q = NULL, *q2 = (gpuq_queue *)&q;
	gpuq_iov v[4];
	gpuq_loan loan;
	gpuq_completion comp;
	gpuq_stats st;
	gpuq_queue_info info;
	uint32_t lens[2] = { 1, 1 };
	uint64_t id = 77, ids[4];
	size_t len;

	memset(big, 'x', sizeof(big));
	ref_fill(data, sizeof(data), 1);

	/* connect / open */
	EXPECT_RC(-EINVAL, gpuq_connect(b->socket, NULL));
	c = connect_ok(b);
	EXPECT_RC(-EINVAL, gpuq_open(NULL, "e", &q));
	EXPECT_RC(-EINVAL, gpuq_open(c, NULL, &q));
	EXPECT_RC(-EINVAL, gpuq_open(c, "e", NULL));
	q = open_ok(c, "e");

	/* Sizes: nothing enqueued and no id used by a refused message. */
	EXPECT_RC(GPUQ_ETOOBIG, gpuq_enqueue(q, big, sizeof(big), &id, 0));
	EXPECT_RC(GPUQ_EEMPTY, gpuq_enqueue(q, data, 0, &id, 0));
	EXPECT_RC(-EINVAL, gpuq_enqueue(NULL, data, 1, &id, 0));
	EXPECT_RC(-EINVAL, gpuq_enqueue(q, NULL, 1, &id, 0));
	ck_assert_uint_eq(id, 77);

	/* A batch with one bad message enqueues none of it. */
	for (int i = 0; i < 4; i++) {
		v[i].data = data;
		v[i].len = 8;
	}
	v[2].len = 0;
	EXPECT_RC(GPUQ_EEMPTY, gpuq_enqueue_batch(q, v, 4, ids, 0));
	v[2].len = sizeof(big);
	v[2].data = big;
	EXPECT_RC(GPUQ_ETOOBIG, gpuq_enqueue_batch(q, v, 4, ids, 0));
	v[2].len = 8;
	v[2].data = NULL;
	EXPECT_RC(-EINVAL, gpuq_enqueue_batch(q, v, 4, ids, 0));
	v[3].len = 0; /* the last one too: order must not matter */
	v[2].data = data;
	EXPECT_RC(GPUQ_EEMPTY, gpuq_enqueue_batch(q, v, 4, ids, 0));
	EXPECT_RC(-EINVAL, gpuq_enqueue_batch(NULL, v, 4, ids, 0));
	EXPECT_RC(-EINVAL, gpuq_enqueue_batch(q, NULL, 2, ids, 0));
	st = stats_of(q);
	ck_assert_uint_eq(st.enqueued, 0);
	ck_assert_uint_eq(st.depth, 0);
	ck_assert_uint_eq(gpuq_inflight(q), 0);

	/* The first good message still gets id 0; slot_bytes itself fits. */
	EXPECT_RC(0, gpuq_enqueue(q, data, sizeof(data), &id, WAIT_MS));
	ck_assert_uint_eq(id, 0);
	expect_echo(q, 0, data, sizeof(data));
	ck_assert_uint_eq(stats_of(q).enqueued, 1);

	/* reserve / commit */
	EXPECT_RC(-EINVAL, gpuq_reserve(NULL, 1, &loan, 0));
	EXPECT_RC(-EINVAL, gpuq_reserve(q, 1, NULL, 0));
	EXPECT_RC(-EINVAL, gpuq_reserve(q, 0, &loan, 0));
	EXPECT_RC(-EINVAL, gpuq_reserve(q, 17, &loan, 0));
	EXPECT_RC(-EINVAL, gpuq_commit(q, &loan, lens)); /* no loan open */
	EXPECT_RC(0, gpuq_reserve(q, 2, &loan, 0));
	/* The GPU-producer calls: refused on a CPU queue (and publishing
	 * nothing: the loan stays open for gpuq_commit); on a CUDA queue
	 * the handle is there (check_gpu drives that path). */
	{
		unsigned char h[64];
		int cuda = !strcmp(backend_name(), "cuda");
		EXPECT_RC(-EINVAL, gpuq_vram_handle(NULL, h, sizeof(h)));
		EXPECT_RC(-EINVAL, (int)gpuq_vram_offset(q, NULL, 0));
		EXPECT_RC(-EINVAL, (int)gpuq_vram_offset(q, &loan, 2));
		if (cuda) {
			EXPECT_RC(64, gpuq_vram_handle(q, h, sizeof(h)));
			EXPECT_RC(-ENOSPC, gpuq_vram_handle(q, h, 63));
			ck_assert_int_gt(gpuq_vram_offset(q, &loan, 1),
					 gpuq_vram_offset(q, &loan, 0));
		} else {
			EXPECT_RC(GPUQ_EBACKEND, gpuq_vram_handle(q, h, sizeof(h)));
			EXPECT_RC(GPUQ_EBACKEND, (int)gpuq_vram_offset(q, &loan, 0));
			EXPECT_RC(GPUQ_EBACKEND, gpuq_commit_device(q, &loan, lens));
			ck_assert_uint_eq(stats_of(q).enqueued, 1);
		}
	}
	EXPECT_RC(-EINVAL, gpuq_commit(NULL, &loan, lens));
	EXPECT_RC(-EINVAL, gpuq_commit(q, NULL, lens));
	EXPECT_RC(-EINVAL, gpuq_commit(q, &loan, NULL));
	ck_assert_ptr_null(gpuq_loan_slot(NULL, &loan, 0));
	ck_assert_ptr_null(gpuq_loan_slot(q, NULL, 0));
	ck_assert_ptr_null(gpuq_loan_slot(q, &loan, 2));
	memset(gpuq_loan_slot(q, &loan, 0), 'a', 1);
	memset(gpuq_loan_slot(q, &loan, 1), 'b', 1);
	EXPECT_RC(0, gpuq_commit(q, &loan, lens));
	expect_echo(q, 1, "a", 1);
	expect_echo(q, 2, "b", 1);

	/* results, stats, info */
	EXPECT_RC(-EINVAL, gpuq_poll(NULL, &comp, 1));
	EXPECT_RC(-EINVAL, gpuq_poll(q, NULL, 1));
	EXPECT_RC(0, gpuq_poll(q, NULL, 0));
	EXPECT_RC(-EINVAL, gpuq_result(NULL, 0, buf, sizeof(buf), &len));
	EXPECT_RC(-EINVAL, gpuq_result(q, 0, NULL, sizeof(buf), &len));
	EXPECT_RC(-EINVAL, gpuq_wait(NULL, 0, buf, sizeof(buf), &len, 10));
	EXPECT_RC(-EINVAL, gpuq_wait(q, 0, NULL, sizeof(buf), &len, 10));
	EXPECT_RC(-EINVAL, gpuq_stats_get(NULL, &st));
	EXPECT_RC(-EINVAL, gpuq_stats_get(q, NULL));
	EXPECT_RC(-EINVAL, gpuq_queue_info_get(NULL, &info));
	EXPECT_RC(-EINVAL, gpuq_queue_info_get(q, NULL));
	ck_assert_uint_eq(gpuq_inflight(NULL), 0);

	/* NULL closes are no-ops; a failed open leaves *out NULL. */
	gpuq_close(NULL);
	gpuq_disconnect(NULL);
	EXPECT_RC(GPUQ_ENOQUEUE, gpuq_open(c, "nope", &q2));
	ck_assert_ptr_null(q2);

	/* The connection is still good after all that. */
	EXPECT_RC(0, gpuq_enqueue(q, data, 5, &id, WAIT_MS));
	ck_assert_uint_eq(id, 3);
	expect_echo(q, 3, data, 5);
	gpuq_disconnect(c);
	finish(b);
}
END_TEST

START_TEST(test_bad_names)
{
	const char *argv[] = { "-q", "e,handler=echo,capacity=16", NULL };
	struct broker_proc *b = start(argv);
	char name[80];
	gpuq_client *c = connect_ok(b);
	gpuq_queue *q = NULL;

	EXPECT_RC(GPUQ_ENOQUEUE, gpuq_open(c, "nope", &q));
	ck_assert_ptr_null(q);
	EXPECT_RC(GPUQ_ENOQUEUE, gpuq_open(c, "E", &q));
	EXPECT_RC(GPUQ_ENOQUEUE, gpuq_open(c, "e ", &q));
	memset(name, 'x', sizeof(name));
	name[63] = '\0'; /* longest legal name: asked, not found */
	EXPECT_RC(GPUQ_ENOQUEUE, gpuq_open(c, name, &q));
	name[63] = 'x';
	name[64] = '\0';
	EXPECT_RC(-EINVAL, gpuq_open(c, name, &q));
	name[79] = '\0';
	EXPECT_RC(-EINVAL, gpuq_open(c, name, &q));
	EXPECT_RC(-EINVAL, gpuq_open(c, "", &q));
	ck_assert_ptr_null(q);

	q = open_ok(c, "e");
	EXPECT_RC(0, gpuq_enqueue(q, "hi", 2, NULL, WAIT_MS));
	expect_echo(q, 0, "hi", 2);
	gpuq_disconnect(c);
	finish(b);
}
END_TEST

START_TEST(test_no_broker)
{
	struct broker_proc *d = prep_dir();
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	gpuq_client *c = (gpuq_client *)&sa;
	char path[300];
	int s, rc;

	/* Nothing there at all. */
	snprintf(path, sizeof(path), "%s/none.sock", d->dir);
	EXPECT_RC(GPUQ_ENOBROKER, gpuq_connect(path, &c));
	ck_assert_ptr_null(c);
	/* A directory that does not exist. */
	snprintf(path, sizeof(path), "%s/no/such/dir.sock", d->dir);
	EXPECT_RC(GPUQ_ENOBROKER, gpuq_connect(path, &c));

	/* A socket file nobody listens on (left by a dead broker). */
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/stale.sock", d->dir);
	s = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	ck_assert_int_ge(s, 0);
	ck_assert_int_eq(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(s);
	ck_assert(file_exists(sa.sun_path));
	EXPECT_RC(GPUQ_ENOBROKER, gpuq_connect(sa.sun_path, &c));

	/* $GPUQ_SOCKET is used when the path is NULL. */
	snprintf(path, sizeof(path), "%s/env.sock", d->dir);
	setenv("GPUQ_SOCKET", path, 1);
	rc = gpuq_connect(NULL, &c);
	unsetenv("GPUQ_SOCKET");
	EXPECT_RC(GPUQ_ENOBROKER, rc);

	/* Longer than sun_path: documented as -EINVAL. */
	memset(path, 'p', sizeof(path));
	path[0] = '/';
	path[sizeof(path) - 1] = '\0';
	EXPECT_RC(-EINVAL, gpuq_connect(path, &c));
	ck_assert_ptr_null(c);
	setenv("GPUQ_SOCKET", path, 1);
	rc = gpuq_connect(NULL, &c);
	unsetenv("GPUQ_SOCKET");
	EXPECT_RC(-EINVAL, rc);
	finish(d);
}
END_TEST

/* ---- garbled control messages ---- */

static int raw_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { 5, 0 };
	int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

	ck_assert_int_ge(s, 0);
	ck_assert_uint_lt(strlen(path), sizeof(sa.sun_path));
	memcpy(sa.sun_path, path, strlen(path) + 1);
	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	ck_assert_int_eq(connect(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return s;
}

/* A header as the wire carries it, then body_bytes zero bytes. */
static size_t raw_msg(uint8_t *buf, uint16_t version, uint16_t type,
		      uint32_t body_len, uint32_t seq, size_t body_bytes)
{
	struct proto_hdr h = { PROTO_MAGIC, version, type, body_len, seq };

	memcpy(buf, &h, sizeof(h));
	memset(buf + sizeof(h), 0, body_bytes);
	return sizeof(h) + body_bytes;
}

/* Send n bytes, receive the one reply and decode it into *m (body in rx). */
static void raw_call(int s, const void *buf, size_t n, uint8_t *rx,
		     size_t cap, struct proto_msg *m)
{
	int fd = -1, got;

	ck_assert_int_eq(send(s, buf, n, MSG_NOSIGNAL), (ssize_t)n);
	got = proto_recv(s, rx, cap, &fd);
	ck_assert_msg(got > 0, "no reply: %s", gpuq_err_name(got));
	ck_assert_int_eq(fd, -1);
	EXPECT_RC(0, proto_decode(rx, (size_t)got, m));
}

/* The reply to a bad message is PROTO_ERROR with code; seq is checked
 * when the message carried a whole header (seq >= 0). */
static void raw_bad(int s, const void *buf, size_t n, int code, int64_t seq)
{
	_Alignas(8) uint8_t rx[PROTO_MAX_MSG];
	const struct proto_error *e;
	struct proto_msg m;

	raw_call(s, buf, n, rx, sizeof(rx), &m);
	ck_assert_uint_eq(m.hdr.type, PROTO_ERROR);
	e = m.body;
	ck_assert_msg(e->code == code, "reply code %s, want %s",
		      gpuq_err_name(e->code), gpuq_err_name(code));
	if (seq >= 0)
		ck_assert_uint_eq(m.hdr.seq, (uint32_t)seq);
}

static void raw_hello(int s, uint32_t seq)
{
	_Alignas(8) uint8_t tx[64], rx[PROTO_MAX_MSG];
	const struct proto_hello_ok *h;
	struct proto_msg m;
	size_t n = raw_msg(tx, PROTO_VERSION, PROTO_HELLO, 0, seq, 0);

	raw_call(s, tx, n, rx, sizeof(rx), &m);
	ck_assert_uint_eq(m.hdr.type, PROTO_HELLO_OK);
	ck_assert_uint_eq(m.hdr.seq, seq);
	h = m.body;
	ck_assert_uint_eq(h->layout_version, IPC_LAYOUT_VERSION);
}

START_TEST(test_garbled)
{
	const char *argv[] = { "-q", "e,handler=echo,capacity=16",
			       EPOLL_ARG(_i), NULL };
	struct broker_proc *b = start(argv);
	_Alignas(8) uint8_t tx[PROTO_MAX_MSG + 1024];
	struct proto_open *op;
	gpuq_client *c;
	gpuq_queue *q;
	size_t n;
	int s = raw_connect(b->socket);

	assert_loop_kind(b, _i);

	/* Garbage as the very first message, shorter than a header. */
	raw_bad(s, "garbage", 7, GPUQ_EPROTO, 0);
	/* Header-sized garbage: wrong magic. */
	memset(tx, 0xa5, sizeof(struct proto_hdr));
	raw_bad(s, tx, sizeof(struct proto_hdr), GPUQ_EPROTO, -1);
	/* A truncated header. */
	n = raw_msg(tx, PROTO_VERSION, PROTO_HELLO, 0, 3, 0);
	raw_bad(s, tx, n - 5, GPUQ_EPROTO, 0);
	raw_bad(s, tx, 1, GPUQ_EPROTO, 0);
	/* body_len says 4, nothing follows; and the other way round. */
	n = raw_msg(tx, PROTO_VERSION, PROTO_HELLO, 4, 4, 0);
	raw_bad(s, tx, n, GPUQ_EPROTO, 4);
	n = raw_msg(tx, PROTO_VERSION, PROTO_HELLO, 0, 5, 4);
	raw_bad(s, tx, n, GPUQ_EPROTO, 5);
	/* A body that matches body_len but not the type's size. */
	n = raw_msg(tx, PROTO_VERSION, PROTO_OPEN,
		    sizeof(struct proto_open) - 1, 6,
		    sizeof(struct proto_open) - 1);
	raw_bad(s, tx, n, GPUQ_EPROTO, 6);
	/* Another protocol version. */
	n = raw_msg(tx, PROTO_VERSION + 1, PROTO_HELLO, 0, 7, 0);
	raw_bad(s, tx, n, GPUQ_EVERSION, 7);
	n = raw_msg(tx, 0, PROTO_HELLO, 0, 8, 0);
	raw_bad(s, tx, n, GPUQ_EVERSION, 8);
	/* Unknown types, and a reply type sent as a request. */
	n = raw_msg(tx, PROTO_VERSION, 0, 0, 9, 0);
	raw_bad(s, tx, n, GPUQ_EPROTO, 9);
	n = raw_msg(tx, PROTO_VERSION, PROTO_TYPE_MAX, 0, 10, 0);
	raw_bad(s, tx, n, GPUQ_EPROTO, 10);
	n = raw_msg(tx, PROTO_VERSION, PROTO_HELLO_OK,
		    sizeof(struct proto_hello_ok), 11,
		    sizeof(struct proto_hello_ok));
	raw_bad(s, tx, n, GPUQ_EPROTO, 11);
	/* OPEN whose name has no NUL. */
	n = raw_msg(tx, PROTO_VERSION, PROTO_OPEN, sizeof(*op), 12,
		    sizeof(*op));
	op = (struct proto_open *)(tx + sizeof(struct proto_hdr));
	memset(op->name, 'e', sizeof(op->name));
	raw_bad(s, tx, n, GPUQ_EPROTO, 12);
	/* Longer than any message may be.  A good message first, so a reply
	 * that reused its header would show. */
	raw_hello(s, 1234);
	n = raw_msg(tx, PROTO_VERSION, PROTO_HELLO,
		    (uint32_t)(sizeof(tx) - sizeof(struct proto_hdr)), 13,
		    sizeof(tx) - sizeof(struct proto_hdr));
	{
		_Alignas(8) uint8_t rx[PROTO_MAX_MSG];
		const struct proto_error *e;
		struct proto_msg m;

		raw_call(s, tx, n, rx, sizeof(rx), &m);
		ck_assert_uint_eq(m.hdr.type, PROTO_ERROR);
		e = m.body;
		ck_assert_int_eq(e->code, GPUQ_EPROTO);
		ck_assert_msg(m.hdr.seq == 13 || m.hdr.seq == 0,
			      "reply to an oversized message has seq %u: "
			      "neither its own (13) nor 0",
			      m.hdr.seq);
	}

	/* A CLOSE for an attachment this connection does not hold has no
	 * reply; the connection carries on. */
	n = raw_msg(tx, PROTO_VERSION, PROTO_CLOSE, sizeof(struct proto_close),
		    14, sizeof(struct proto_close));
	ck_assert_int_eq(send(s, tx, n, MSG_NOSIGNAL), (ssize_t)n);
	raw_hello(s, 42);
	close(s);

	/* The broker is healthy for everyone else. */
	c = connect_ok(b);
	q = open_ok(c, "e");
	EXPECT_RC(0, gpuq_enqueue(q, "after", 5, NULL, WAIT_MS));
	expect_echo(q, 0, "after", 5);
	gpuq_disconnect(c);
	ck_assert_int_eq(kill(b->pid, 0), 0);
	finish(b);
}
END_TEST

/* ---- full ring, full completion area, full client table ---- */

START_TEST(test_full_ring)
{
	const char *argv[] = { "-q",
			       "c,handler=checksum,capacity=8,slot_bytes=64",
			       NULL };
	struct broker_proc *b = start(argv);
	uint8_t p[8][64], mine[16];
	uint32_t lens[8];
	gpuq_client *c = connect_ok(b);
	gpuq_queue *qa = open_ok(c, "c"), *qb = open_ok(c, "c");
	gpuq_loan loan;
	uint64_t t0, cpu0, id = 99;
	double ms, cpu_ms;
	gpuq_stats st;

	ref_fill(mine, sizeof(mine), 1000);

	/* A holds every slot of the ring. */
	EXPECT_RC(0, gpuq_reserve(qa, 8, &loan, 0));
	for (uint32_t i = 0; i < 8; i++) {
		lens[i] = (uint32_t)payload(p[i], sizeof(p[i]), i);
		memcpy(gpuq_loan_slot(qa, &loan, i), p[i], lens[i]);
	}

	t0 = now_ns();
	EXPECT_RC(GPUQ_EFULL, gpuq_enqueue(qb, mine, sizeof(mine), &id, 0));
	ck_assert_msg(ms_since(t0) < 500, "timeout 0 waited %.1f ms",
		      ms_since(t0));

	t0 = now_ns();
	cpu0 = cpu_ns();
	EXPECT_RC(GPUQ_ETIMEDOUT,
		  gpuq_enqueue(qb, mine, sizeof(mine), &id, 100));
	ms = ms_since(t0);
	cpu_ms = (double)(cpu_ns() - cpu0) / 1e6;
	ck_assert_msg(ms >= 100.0, "timed out after %.1f ms, before 100", ms);
	ck_assert_msg(ms < 2000.0, "timeout 100 took %.1f ms", ms);
	/* A sleeping wait (spin briefly, then nanosleep backoff capped at
	 * 200 us), not a spin: a small fraction of a core. */
	ck_assert_msg(cpu_ms < 0.1 * ms,
		      "waiting used %.1f ms CPU in %.1f ms", cpu_ms, ms);

	EXPECT_RC(GPUQ_EFULL,
		  gpuq_enqueue_batch(qb, &(gpuq_iov){ mine, 4, 0 }, 1, NULL, 0));
	ck_assert_uint_eq(id, 99);
	st = stats_of(qb);
	ck_assert_uint_gt(st.full_events, 0);
	ck_assert_uint_eq(st.enqueued, 0);
	ck_assert_uint_eq(st.depth, 8);
	ck_assert_uint_eq(gpuq_inflight(qb), 0);

	/* A publishes; B's enqueue gets in once the consumer frees a slot. */
	EXPECT_RC(0, gpuq_commit(qa, &loan, lens));
	EXPECT_RC(0, gpuq_enqueue(qb, mine, sizeof(mine), &id, WAIT_MS));
	ck_assert_uint_eq(id, 0);
	for (uint32_t i = 0; i < 8; i++)
		expect_crc(qa, loan.first_id + i, p[i], lens[i]);
	expect_crc(qb, 0, mine, sizeof(mine));
	st = stats_of(qa);
	ck_assert_uint_eq(st.enqueued, 9);
	ck_assert_uint_gt(st.full_events, 0);
	ck_assert_uint_eq(stat_reaches(qa, offsetof(gpuq_stats, completed), 9),
			  9);
	gpuq_disconnect(c);
	finish(b);
}
END_TEST

START_TEST(test_cq_full)
{
	const char *argv[] = { "-q",
			       "e,handler=echo,capacity=64,cq_capacity=16,"
			       "slot_bytes=32",
			       NULL };
	struct broker_proc *b = start(argv);
	uint8_t p[18][32];
	size_t n[18];
	gpuq_client *c = connect_ok(b);
	gpuq_queue *q = open_ok(c, "e");
	gpuq_queue_info info;
	gpuq_loan loan;
	gpuq_iov v;
	uint64_t id;

	EXPECT_RC(0, gpuq_queue_info_get(q, &info));
	ck_assert_uint_eq(info.cq_capacity, 16);
	ck_assert_uint_eq(info.capacity, 64);
	for (uint64_t i = 0; i < 18; i++)
		n[i] = payload(p[i], sizeof(p[i]), i);
	for (uint64_t i = 0; i < 16; i++) {
		EXPECT_RC(0, gpuq_enqueue(q, p[i], n[i], &id, WAIT_MS));
		ck_assert_uint_eq(id, i);
	}
	ck_assert_uint_eq(gpuq_inflight(q), 16);
	EXPECT_RC(GPUQ_ECQFULL, gpuq_enqueue(q, p[16], n[16], &id, 0));
	EXPECT_RC(GPUQ_ECQFULL, gpuq_enqueue(q, p[16], n[16], &id, 50));
	v.data = p[16];
	v.len = n[16];
	EXPECT_RC(GPUQ_ECQFULL, gpuq_enqueue_batch(q, &v, 1, NULL, 0));
	EXPECT_RC(GPUQ_ECQFULL, gpuq_reserve(q, 1, &loan, 0));
	ck_assert_uint_eq(id, 15);
	ck_assert_uint_eq(stats_of(q).enqueued, 16);

	/* Reading one result makes room for exactly one more. */
	expect_echo(q, 0, p[0], n[0]);
	EXPECT_RC(0, gpuq_enqueue(q, p[16], n[16], &id, WAIT_MS));
	ck_assert_uint_eq(id, 16);
	EXPECT_RC(GPUQ_ECQFULL, gpuq_enqueue(q, p[17], n[17], &id, 0));
	for (uint64_t i = 1; i < 17; i++)
		expect_echo(q, i, p[i], n[i]);
	ck_assert_uint_eq(gpuq_inflight(q), 0);
	EXPECT_RC(0, gpuq_enqueue(q, p[17], n[17], &id, WAIT_MS));
	expect_echo(q, 17, p[17], n[17]);
	ck_assert_uint_eq(stats_of(q).enqueued, 18);
	gpuq_disconnect(c);
	finish(b);
}
END_TEST

START_TEST(test_too_many_clients)
{
	const char *argv[] = { "-q", "e,handler=echo,capacity=16,max_clients=2",
			       NULL };
	struct broker_proc *b = start(argv);
	gpuq_client *c = connect_ok(b), *c2 = connect_ok(b);
	gpuq_queue *q1 = open_ok(c, "e"), *q2 = open_ok(c2, "e"), *q3 = NULL;
	uint64_t t0;
	int rc;

	ck_assert_uint_eq(stats_of(q1).clients, 2);
	EXPECT_RC(GPUQ_ETOOMANY, gpuq_open(c, "e", &q3));
	ck_assert_ptr_null(q3);
	EXPECT_RC(GPUQ_ETOOMANY, gpuq_open(c2, "e", &q3));

	/* The freed entry comes back once the broker has released it. */
	gpuq_close(q2);
	t0 = now_ns();
	while ((rc = gpuq_open(c2, "e", &q3)) == GPUQ_ETOOMANY &&
	       ms_since(t0) < 2000)
		sleep_ms(10);
	ck_assert_msg(rc == 0, "open after a close: %s after %.0f ms",
		      gpuq_err_name(rc), ms_since(t0));
	ck_assert_uint_eq(stats_of(q1).clients, 2);
	EXPECT_RC(GPUQ_ETOOMANY, gpuq_open(c, "e", &q2));

	/* The new handle is a fresh producer: ids from 0. */
	EXPECT_RC(0, gpuq_enqueue(q3, "three", 5, NULL, WAIT_MS));
	expect_echo(q3, 0, "three", 5);
	EXPECT_RC(0, gpuq_enqueue(q1, "one", 3, NULL, WAIT_MS));
	expect_echo(q1, 0, "one", 3);
	gpuq_disconnect(c2);
	gpuq_disconnect(c);
	finish(b);
}
END_TEST

/* ---- the broker's own start-up errors ---- */

START_TEST(test_config_errors)
{
	struct broker_proc *d = prep_dir();
	char conf[160], err[160], sock[160];
	const char *argv[] = { tool_path("GPUQD", "broker/gpuqd"), "-c", conf,
			       "-s", sock, NULL };
	const char *text;
	char want[200];
	int st;

	snprintf(conf, sizeof(conf), "%s/bad.conf", d->dir);
	snprintf(err, sizeof(err), "%s/err1.txt", d->dir);
	snprintf(sock, sizeof(sock), "%s/x.sock", d->dir);

	/* An unknown key on line 3. */
	write_file(conf, "[broker]\n"
			 "verbose = 0\n"
			 "no_such_key = 1\n"
			 "[queue q]\n"
			 "handler = echo\n");
	st = wait_pid(spawn_tool(argv, err), WAIT_MS);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 2,
		      "gpuqd exit status %#x, want exit 2", st);
	text = file_text(err);
	snprintf(want, sizeof(want), "%s:3:", conf);
	ck_assert_msg(strstr(text, want) != NULL, "no '%s' in: %s", want,
		      text);
	ck_assert_msg(strstr(text, "no_such_key") != NULL, "%s", text);
	ck_assert(!file_exists(sock));

	/* A bad value on line 5, in a queue section. */
	snprintf(err, sizeof(err), "%s/err2.txt", d->dir);
	write_file(conf, "# comment\n"
			 "\n"
			 "[queue q]\n"
			 "handler = echo\n"
			 "capacity = 3\n");
	st = wait_pid(spawn_tool(argv, err), WAIT_MS);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 2,
		      "gpuqd exit status %#x, want exit 2", st);
	text = file_text(err);
	snprintf(want, sizeof(want), "%s:5:", conf);
	ck_assert_msg(strstr(text, want) != NULL, "no '%s' in: %s", want,
		      text);
	ck_assert(!file_exists(sock));

	/* Every spelling of the config flag reads the file. */
	{
		char opt1[200], opt2[200];
		const char *a1[] = { argv[0], opt1, "-s", sock, NULL };
		const char *a2[] = { argv[0], opt2, "-s", sock, NULL };
		snprintf(opt1, sizeof(opt1), "--config=%s", conf);
		snprintf(opt2, sizeof(opt2), "-c%s", conf);
		for (int i = 0; i < 2; i++) {
			snprintf(err, sizeof(err), "%s/err%d.txt", d->dir, 3 + i);
			st = wait_pid(spawn_tool(i ? a2 : a1, err), WAIT_MS);
			ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 2,
				      "gpuqd %s: status %#x", i ? opt2 : opt1, st);
			text = file_text(err);
			ck_assert_msg(strstr(text, want) != NULL,
				      "%s: no '%s' in: %s", i ? opt2 : opt1,
				      want, text);
		}
	}
	finish(d);
}
END_TEST

START_TEST(test_denied)
{
	struct broker_proc *b = prep_dir();
	const char *argv[] = { tool_path("GPUQD", "broker/gpuqd"), "-s",
			       b->socket, "-q", "e", "--set", "allow_uid=4242",
			       "-v", EPOLL_ARG(_i), NULL };
	gpuq_client *c = NULL;
	uint64_t t0;
	int rc;

	if (getuid() == 4242 || geteuid() == 4242)
		return; /* we would be allowed: nothing to test */
	b->pid = spawn_tool(argv, b->log);
	t0 = now_ns();
	while ((rc = gpuq_connect(b->socket, &c)) == GPUQ_ENOBROKER &&
	       ms_since(t0) < WAIT_MS && waitpid(b->pid, NULL, WNOHANG) == 0)
		sleep_ms(10);
	ck_assert_msg(rc == GPUQ_EDENIED, "connect: %s, log: %s",
		      gpuq_err_name(rc), log_text(b));
	ck_assert_ptr_null(c);
	/* Again: refusing one peer must not hurt the broker. */
	EXPECT_RC(GPUQ_EDENIED, gpuq_connect(b->socket, &c));
	ck_assert_int_eq(kill(b->pid, 0), 0);
	ck_assert_int_eq(waitpid(b->pid, NULL, WNOHANG), 0);
	ck_assert_ptr_nonnull(strstr(log_text(b), "denied"));
	finish(b);
}
END_TEST

/* ---- results ---- */

START_TEST(test_results_api)
{
	const char *argv[] = { "-q", "e,handler=echo,capacity=16,slot_bytes=64",
			       NULL };
	struct broker_proc *b = start(argv);
	uint8_t p[64], buf[64], small[10];
	gpuq_client *c = connect_ok(b);
	gpuq_queue *qa = open_ok(c, "e"), *qb = open_ok(c, "e");
	gpuq_completion comp[8];
	gpuq_loan loan;
	uint32_t one = 1;
	uint64_t id, t0, seen = 0;
	size_t len;
	int got = 0;

	ref_fill(p, sizeof(p), 5);

	/* Never enqueued. */
	EXPECT_RC(GPUQ_ENOTFOUND, gpuq_result(qa, 0, buf, sizeof(buf), &len));
	EXPECT_RC(GPUQ_ENOTFOUND,
		  gpuq_result(qa, 12345, buf, sizeof(buf), &len));
	EXPECT_RC(GPUQ_ENOTFOUND,
		  gpuq_wait(qa, 3, buf, sizeof(buf), &len, 50));
	EXPECT_RC(0, gpuq_poll(qa, comp, 8));

	/* Too small a buffer: -EMSGSIZE, the size, and the result stays. */
	EXPECT_RC(0, gpuq_enqueue(qa, p, 40, &id, WAIT_MS));
	ck_assert_uint_eq(id, 0);
	len = 0;
	EXPECT_RC(-EMSGSIZE,
		  gpuq_wait(qa, 0, small, sizeof(small), &len, WAIT_MS));
	ck_assert_uint_eq(len, 40);
	len = 0;
	EXPECT_RC(-EMSGSIZE, gpuq_result(qa, 0, NULL, 0, &len));
	ck_assert_uint_eq(len, 40);
	ck_assert_uint_eq(gpuq_inflight(qa), 1);
	len = 0;
	EXPECT_RC(0, gpuq_result(qa, 0, buf, sizeof(buf), &len));
	ck_assert_uint_eq(len, 40);
	ck_assert_int_eq(memcmp(buf, p, 40), 0);
	/* Read twice. */
	EXPECT_RC(GPUQ_ENOTFOUND, gpuq_result(qa, 0, buf, sizeof(buf), &len));
	EXPECT_RC(GPUQ_ENOTFOUND,
		  gpuq_wait(qa, 0, buf, sizeof(buf), &len, 50));
	ck_assert_uint_eq(gpuq_inflight(qa), 0);

	/* Not done yet: B's open loan holds the consumer, so A's message
	 * behind it cannot complete; the loan's own ids cannot either. */
	EXPECT_RC(0, gpuq_reserve(qb, 1, &loan, 0));
	EXPECT_RC(0, gpuq_enqueue(qa, p, 7, &id, WAIT_MS));
	ck_assert_uint_eq(id, 1);
	EXPECT_RC(GPUQ_EAGAIN,
		  gpuq_result(qb, loan.first_id, buf, sizeof(buf), &len));
	EXPECT_RC(GPUQ_ENOTFOUND,
		  gpuq_result(qb, loan.first_id + 1, buf, sizeof(buf), &len));
	if (consumer_in_order()) {
		EXPECT_RC(GPUQ_EAGAIN,
			  gpuq_result(qa, 1, buf, sizeof(buf), &len));
		t0 = now_ns();
		EXPECT_RC(GPUQ_ETIMEDOUT,
			  gpuq_wait(qa, 1, buf, sizeof(buf), &len, 50));
		ck_assert_msg(ms_since(t0) >= 50.0, "timed out after %.1f ms",
			      ms_since(t0));
		EXPECT_RC(GPUQ_ETIMEDOUT,
			  gpuq_wait(qa, 1, buf, sizeof(buf), &len, 0));
		EXPECT_RC(0, gpuq_poll(qa, comp, 8));
	}
	*(uint8_t *)gpuq_loan_slot(qb, &loan, 0) = 'L';
	EXPECT_RC(0, gpuq_commit(qb, &loan, &one));
	/* Wait with a timeout, and forever. */
	expect_echo(qa, 1, p, 7);
	len = 0;
	EXPECT_RC(0, gpuq_wait(qb, loan.first_id, buf, sizeof(buf), &len, -1));
	ck_assert_uint_eq(len, 1);
	ck_assert_uint_eq(buf[0], 'L');

	/* poll: five messages, each reported once, in whatever order. */
	for (int i = 0; i < 5; i++) {
		EXPECT_RC(0, gpuq_enqueue(qa, p + i, 10, &id, WAIT_MS));
		ck_assert_uint_eq(id, 2 + (uint64_t)i);
	}
	t0 = now_ns();
	while (got < 5 && ms_since(t0) < WAIT_MS) {
		int n = gpuq_poll(qa, comp, 8);

		ck_assert_int_ge(n, 0);
		for (int i = 0; i < n; i++) {
			uint64_t k = comp[i].id - 2;

			ck_assert_uint_lt(k, 5);
			ck_assert_uint_eq(seen & (1ull << k), 0);
			seen |= 1ull << k;
			ck_assert_int_eq(comp[i].status, 0);
			ck_assert_uint_eq(comp[i].len, 10);
			ck_assert_int_eq(memcmp(comp[i].result, p + k, 10), 0);
		}
		got += n;
		if (got < 5)
			sleep_ms(1);
	}
	ck_assert_int_eq(got, 5);
	EXPECT_RC(0, gpuq_poll(qa, comp, 8));
	EXPECT_RC(GPUQ_ENOTFOUND, gpuq_result(qa, 4, buf, sizeof(buf), &len));
	ck_assert_uint_eq(gpuq_inflight(qa), 0);
	gpuq_disconnect(c);
	finish(b);
}
END_TEST

START_TEST(test_zero_copy)
{
	const char *argv[] = { "-q",
			       "c,handler=checksum,capacity=64,slot_bytes=128",
			       NULL };
	struct broker_proc *b = start(argv);
	uint8_t ref[128];
	uint32_t lens[32], keep;
	gpuq_client *c = connect_ok(b);
	gpuq_queue *q = open_ok(c, "c");
	gpuq_loan loan, other;
	uint64_t id;

	EXPECT_RC(0, gpuq_reserve(q, 32, &loan, WAIT_MS));
	ck_assert_uint_eq(loan.count, 32);
	ck_assert_uint_eq(loan.slot_bytes, 128);
	ck_assert_uint_eq(loan.first_id, 0);
	for (uint32_t i = 0; i < 32; i++) {
		uint8_t *slot = gpuq_loan_slot(q, &loan, i);

		ck_assert_ptr_nonnull(slot);
		lens[i] = (uint32_t)payload(slot, 128, i);
	}
	ck_assert_ptr_null(gpuq_loan_slot(q, &loan, 32));

	/* One bad length: an error, nothing published, the loan still open. */
	keep = lens[7];
	lens[7] = 0;
	EXPECT_RC(GPUQ_EEMPTY, gpuq_commit(q, &loan, lens));
	lens[7] = 129;
	EXPECT_RC(GPUQ_ETOOBIG, gpuq_commit(q, &loan, lens));
	lens[7] = keep;
	lens[31] = 1000;
	EXPECT_RC(GPUQ_ETOOBIG, gpuq_commit(q, &loan, lens));
	lens[31] = (uint32_t)payload(ref, 128, 31);
	ck_assert_uint_eq(stats_of(q).enqueued, 0);
	sleep_ms(20);
	EXPECT_RC(GPUQ_EAGAIN, gpuq_result(q, 0, ref, sizeof(ref), NULL));
	EXPECT_RC(GPUQ_EAGAIN, gpuq_result(q, 8, ref, sizeof(ref), NULL));
	ck_assert_ptr_nonnull(gpuq_loan_slot(q, &loan, 0));
	EXPECT_RC(-EBUSY, gpuq_reserve(q, 1, &other, 0));
	EXPECT_RC(-EBUSY, gpuq_enqueue(q, "x", 1, &id, 0));

	/* Fixed: all 32 go, and the loan is closed. */
	EXPECT_RC(0, gpuq_commit(q, &loan, lens));
	EXPECT_RC(-EINVAL, gpuq_commit(q, &loan, lens));
	ck_assert_ptr_null(gpuq_loan_slot(q, &loan, 0));
	for (uint32_t i = 0; i < 32; i++) {
		size_t n = payload(ref, 128, i);

		ck_assert_uint_eq(n, lens[i]);
		expect_crc(q, loan.first_id + i, ref, n);
	}
	ck_assert_uint_eq(stats_of(q).enqueued, 32);
	EXPECT_RC(0, gpuq_enqueue(q, "x", 1, &id, WAIT_MS));
	ck_assert_uint_eq(id, 32);
	expect_crc(q, 32, "x", 1);
	gpuq_disconnect(c);
	finish(b);
}
END_TEST

/* Stamped slots (ipc/stamp.h) and stamped results (ipc/cq.h), alone and
 * together: every length through echo and checksum comes back intact,
 * over many laps of a small ring and of its completion area, singly and
 * in batches, on the windowed and the ordered kernels, with slots that a
 * part-warp (a window of 16) and a whole warp (4 chunks a lane) read
 * ahead on the GPU; loans are refused with a clear error on stamped
 * slots. */
START_TEST(test_stamped)
{
	const char *argv[] = {
		"-q", "s,handler=echo,capacity=16,slot_bytes=200,stamped=1,"
		      "stamped_results=1",
		"-q", "k,handler=checksum,capacity=16,slot_bytes=100,stamped=1",
		"-q", "o,handler=echo,capacity=16,slot_bytes=100,stamped=1,"
		      "ordered=1,workers=2,stamped_results=1",
		"-q", "w,handler=echo,capacity=64,slot_bytes=1000,stamped=1,"
		      "workers=2",
		"-q", "r,handler=echo,capacity=16,slot_bytes=300,workers=2,"
		      "stamped_results=1",
		NULL
	};
	struct broker_proc *b = start(argv);
	gpuq_client *c = connect_ok(b);
	gpuq_queue *s = open_ok(c, "s"), *k = open_ok(c, "k");
	gpuq_queue *o = open_ok(c, "o"), *w = open_ok(c, "w");
	gpuq_queue *rq = open_ok(c, "r");
	static uint8_t p[8][1000];
	gpuq_iov iov[8];
	uint64_t ids[8];
	gpuq_loan loan;

	for (uint32_t len = 1; len <= 200; len++) {
		uint64_t id;

		ref_fill(p[0], len, len);
		EXPECT_RC(0, gpuq_enqueue(s, p[0], len, &id, WAIT_MS));
		expect_echo(s, id, p[0], len);
		if (len <= 100) {
			EXPECT_RC(0, gpuq_enqueue(k, p[0], len, &id, WAIT_MS));
			expect_crc(k, id, p[0], len);
			EXPECT_RC(0, gpuq_enqueue_key(o, len % 3, p[0], len, &id,
						      WAIT_MS));
			expect_echo(o, id, p[0], len);
		}
	}
	for (uint32_t len = 1; len <= 1000; len += 37) {
		uint64_t id;

		ref_fill(p[0], len, len + 7);
		EXPECT_RC(0, gpuq_enqueue(w, p[0], len, &id, WAIT_MS));
		expect_echo(w, id, p[0], len);
	}
	/* Plain slots, stamped results: by gpuq_wait, then in batches
	 * through gpuq_poll, whose results are gathered out of the entries. */
	for (uint32_t len = 1; len <= 300; len++) {
		uint64_t id;

		ref_fill(p[0], len, len + 11);
		EXPECT_RC(0, gpuq_enqueue(rq, p[0], len, &id, WAIT_MS));
		expect_echo(rq, id, p[0], len);
	}
	for (uint32_t round = 0; round < 20; round++) {
		gpuq_completion comp[8];
		uint32_t got = 0;

		for (uint32_t i = 0; i < 8; i++) {
			iov[i].len = 1 + (round * 8 + i) * 37 % 300;
			ref_fill(p[i], iov[i].len, round * 8 + i);
			iov[i].data = p[i];
			iov[i].key = 0;
		}
		EXPECT_RC(8, gpuq_enqueue_batch(rq, iov, 8, ids, WAIT_MS));
		for (int spins = 0; got < 8 && spins < 100000; spins++) {
			int n = gpuq_poll(rq, comp, 8);

			ck_assert_int_ge(n, 0);
			for (int i = 0; i < n; i++) {
				uint32_t j = (uint32_t)(comp[i].id - ids[0]);

				ck_assert_uint_lt(j, 8);
				ck_assert_int_eq(comp[i].status, 0);
				ck_assert_uint_eq(comp[i].len, iov[j].len);
				ck_assert_int_eq(memcmp(comp[i].result, p[j],
							iov[j].len), 0);
				got++;
			}
			if (!n)
				usleep(100);
		}
		ck_assert_uint_eq(got, 8);
	}
	EXPECT_RC(GPUQ_ETOOBIG, gpuq_enqueue(rq, p[0], 301, NULL, 0));
	EXPECT_RC(0, gpuq_poll(rq, NULL, 0)); /* settles the last batch */
	ck_assert_uint_eq(gpuq_inflight(rq), 0);
	for (uint32_t round = 0; round < 20; round++) {
		for (uint32_t i = 0; i < 8; i++) {
			iov[i].len = payload(p[i], 200, round * 8 + i);
			iov[i].data = p[i];
			iov[i].key = 0;
		}
		EXPECT_RC(8, gpuq_enqueue_batch(s, iov, 8, ids, WAIT_MS));
		for (uint32_t i = 0; i < 8; i++)
			expect_echo(s, ids[i], p[i], iov[i].len);
	}
	EXPECT_RC(GPUQ_ETOOBIG, gpuq_enqueue(k, p[0], 101, NULL, 0));
	EXPECT_RC(-EOPNOTSUPP, gpuq_reserve(s, 1, &loan, 0));
	EXPECT_RC(-EOPNOTSUPP, gpuq_reserve_key(k, 3, 2, &loan, 0));
	ck_assert_uint_eq(gpuq_inflight(s), 0);
	gpuq_disconnect(c);
	finish(b);
}
END_TEST

START_TEST(test_handlers)
{
	const char *argv[] = {
		"-q", "e,handler=echo,capacity=64,slot_bytes=256",
		"-q", "c,handler=checksum,capacity=64,slot_bytes=256",
		"-q", "v,handler=vector,capacity=64,slot_bytes=1024",
		NULL
	};
	static const size_t sizes[] = { 1, 3, 16, 100, 255, 256 };
	static const size_t nfloats[] = { 1, 2, 7, 64, 255, 256 };
	const size_t ns = sizeof(sizes) / sizeof(sizes[0]);
	struct broker_proc *b = start(argv);
	uint8_t p[6][256], res[64];
	float x[6][256];
	gpuq_client *c = connect_ok(b);
	gpuq_queue *qe = open_ok(c, "e"), *qc = open_ok(c, "c");
	gpuq_queue *qv = open_ok(c, "v");
	gpuq_queue_info info;
	gpuq_iov v[6];
	uint64_t ids[6], id;
	size_t len;

	EXPECT_RC(0, gpuq_queue_info_get(qv, &info));
	ck_assert_str_eq(info.name, "v");
	ck_assert_str_eq(info.handler, "vector");
	ck_assert_str_eq(info.backend, backend_name());
	ck_assert_uint_eq(info.slot_bytes, 1024);
	ck_assert_uint_ge(info.result_bytes, 16);
	EXPECT_RC(0, gpuq_queue_info_get(qc, &info));
	ck_assert_str_eq(info.handler, "checksum");
	ck_assert_uint_eq(info.capacity, 64);

	for (size_t i = 0; i < ns; i++) {
		ref_fill(p[i], sizes[i], 100 + i);
		v[i].data = p[i];
		v[i].len = sizes[i];
	}
	/* echo and checksum, as one batch each: consecutive ids. */
	EXPECT_RC((int)ns, gpuq_enqueue_batch(qe, v, ns, ids, WAIT_MS));
	for (size_t i = 0; i < ns; i++) {
		ck_assert_uint_eq(ids[i], i);
		expect_echo(qe, ids[i], p[i], sizes[i]);
	}
	EXPECT_RC((int)ns, gpuq_enqueue_batch(qc, v, ns, ids, WAIT_MS));
	for (size_t i = 0; i < ns; i++)
		expect_crc(qc, ids[i], p[i], sizes[i]);
	/* The CRC32C check value. */
	EXPECT_RC(0, gpuq_enqueue(qc, "123456789", 9, &id, WAIT_MS));
	len = 0;
	EXPECT_RC(0, gpuq_wait(qc, id, res, sizeof(res), &len, WAIT_MS));
	ck_assert_uint_eq(len, 4);
	ck_assert_uint_eq(le32(res), 0xe3069283u);

	/* vector */
	for (size_t i = 0; i < ns; i++) {
		for (size_t k = 0; k < nfloats[i]; k++)
			x[i][k] = (float)((int)((k * 7919 + i * 31) % 2001) -
					  1000) / 8.0f;
		EXPECT_RC(0, gpuq_enqueue(qv, x[i], nfloats[i] * 4, &ids[i],
					  WAIT_MS));
	}
	for (size_t i = 0; i < ns; i++) {
		float got[4];

		len = 0;
		EXPECT_RC(0, gpuq_wait(qv, ids[i], got, sizeof(got), &len,
				       WAIT_MS));
		ck_assert_uint_eq(len, sizeof(got));
		ck_assert_msg(ref_vector_ok(x[i], nfloats[i], got),
			      "vector %zu: got %g %g %g %g", i, got[0],
			      got[1], got[2], got[3]);
	}
	/* A length that is not whole floats fails that message only. */
	EXPECT_RC(0, gpuq_enqueue(qv, x[3], 6, &id, WAIT_MS));
	EXPECT_RC(GPUQ_EHANDLER,
		  gpuq_wait(qv, id, res, sizeof(res), &len, WAIT_MS));
	ck_assert_uint_eq(stat_reaches(qv, offsetof(gpuq_stats, dead_lettered), 1), 1);
	/* A bad length fails every attempt: retried max_attempts - 1 times. */
	ck_assert_uint_eq(stats_of(qv).retried, 2);
	ck_assert_uint_eq(stats_of(qv).dlq_pending, 1);
	EXPECT_RC(0, gpuq_enqueue(qv, x[3], 8, &id, WAIT_MS));
	EXPECT_RC(0, gpuq_wait(qv, id, res, sizeof(res), &len, WAIT_MS));
	ck_assert_uint_eq(stats_of(qc).dead_lettered, 0);
	gpuq_disconnect(c);
	finish(b);
}
END_TEST

START_TEST(test_basic)
{
	const char *argv[] = { "-q", "e,handler=echo,capacity=64",
			       EPOLL_ARG(_i), NULL };
	const char *ctl[] = { tool_path("GPUQCTL", "broker/gpuqctl"), "-s",
			      NULL, "--json", "status", NULL };
	struct broker_proc *b = start(argv);
	uint8_t p[50][256];
	size_t n[50];
	char out[4096];
	gpuq_client *c = connect_ok(b);
	gpuq_queue *q = open_ok(c, "e");
	gpuq_queue_info info;
	uint64_t id;
	int st;

	assert_loop_kind(b, _i);
	EXPECT_RC(0, gpuq_queue_info_get(q, &info));
	ck_assert_str_eq(info.name, "e");
	ck_assert_str_eq(info.handler, "echo");
	ck_assert_uint_eq(info.capacity, 64);
	ck_assert_uint_eq(info.slot_bytes, 256);
	ck_assert_uint_eq(info.cq_capacity, 64);
	ck_assert_uint_ne(info.broker_epoch, 0);
	for (uint64_t round = 0; round < 2; round++) {
		for (uint64_t i = 0; i < 50; i++) {
			n[i] = payload(p[i], 256, round * 50 + i);
			EXPECT_RC(0, gpuq_enqueue(q, p[i], n[i], &id, WAIT_MS));
			ck_assert_uint_eq(id, round * 50 + i);
		}
		for (uint64_t i = 0; i < 50; i++)
			expect_echo(q, round * 50 + i, p[i], n[i]);
	}
	ck_assert_uint_eq(stats_of(q).enqueued, 100);
	ck_assert_uint_eq(stats_of(q).clients, 1);
	ck_assert_uint_eq(stat_reaches(q, offsetof(gpuq_stats, completed), 100),
			  100);

	/* The operator's view agrees. */
	ctl[2] = b->socket;
	st = run_capture(ctl, out, sizeof(out));
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "gpuqctl: %#x",
		      st);
	ck_assert_int_eq(json_number(out, "\"name\":\"e\"", "enqueued"), 100);
	ck_assert_int_eq(json_number(out, "\"name\":\"e\"", "completed"), 100);
	ck_assert_int_eq(json_number(out, "\"name\":\"e\"", "clients"), 1);
	gpuq_disconnect(c);
	finish(b);
}
END_TEST

/* ---- brokers that die, restart, collide ---- */

START_TEST(test_dead_broker)
{
	const char *argv[] = { "-q", "e,handler=echo,capacity=16", NULL };
	struct broker_proc *b = start(argv);
	gpuq_client *c = connect_ok(b), *c2;
	gpuq_queue *qa = open_ok(c, "e"), *qb = open_ok(c, "e"), *q = NULL;
	gpuq_completion comp[4];
	gpuq_queue_info info;
	gpuq_loan loan;
	uint8_t buf[64];
	uint64_t id, t0, epoch;
	size_t len;
	int st, rc;

	EXPECT_RC(0, gpuq_queue_info_get(qb, &info));
	epoch = info.broker_epoch;
	/* A's loan is outstanding on every backend (and, on the in-order
	 * CPU backend, so is B's message behind it). */
	EXPECT_RC(0, gpuq_reserve(qa, 1, &loan, 0));
	EXPECT_RC(0, gpuq_enqueue(qb, "out", 3, &id, 0));
	EXPECT_RC(GPUQ_EAGAIN,
		  gpuq_result(qa, loan.first_id, buf, sizeof(buf), &len));
	if (consumer_in_order())
		EXPECT_RC(GPUQ_EAGAIN,
			  gpuq_result(qb, id, buf, sizeof(buf), &len));

	st = broker_stop(b, SIGKILL, WAIT_MS);
	ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL,
		      "status %#x", st);

	t0 = now_ns();
	EXPECT_RC(GPUQ_EBROKERDEAD, gpuq_wait(qa, loan.first_id, buf,
					      sizeof(buf), &len, WAIT_MS));
	ck_assert_msg(ms_since(t0) < 1500.0,
		      "noticed the dead broker after %.0f ms", ms_since(t0));
	EXPECT_RC(GPUQ_EBROKERDEAD, gpuq_poll(qa, comp, 4));
	if (consumer_in_order()) {
		EXPECT_RC(GPUQ_EBROKERDEAD,
			  gpuq_wait(qb, id, buf, sizeof(buf), &len, WAIT_MS));
		EXPECT_RC(GPUQ_EBROKERDEAD, gpuq_poll(qb, comp, 4));
	}

	/* A message sent after the death is never answered either. */
	rc = gpuq_enqueue(qb, "new", 3, &id, 0);
	ck_assert_msg(rc == 0 || rc == GPUQ_EBROKERDEAD, "enqueue: %s",
		      gpuq_err_name(rc));
	if (rc == 0) {
		t0 = now_ns();
		EXPECT_RC(GPUQ_EBROKERDEAD,
			  gpuq_wait(qb, id, buf, sizeof(buf), &len, -1));
		ck_assert_msg(ms_since(t0) < 1500.0,
			      "noticed the dead broker after %.0f ms",
			      ms_since(t0));
	}
	EXPECT_RC(GPUQ_EBROKERDEAD, gpuq_open(c, "e", &q));
	ck_assert_ptr_null(q);
	/* Right after a SIGKILL the kernel may still hold the listening socket
	 * open for a moment (io_uring tears a dead process's ring down in a
	 * worker, and a pending accept pins the socket), so a connect can be
	 * accepted by the backlog and then reset: that reads as a dead broker.
	 * Either answer is right; a hang or success is not. */
	rc = gpuq_connect(b->socket, &c2);
	ck_assert_msg(rc == GPUQ_ENOBROKER || rc == GPUQ_EBROKERDEAD,
		      "connect to a killed broker: %s", gpuq_err_name(rc));
	gpuq_disconnect(c);

	/* The socket and lock it left behind do not stop a new broker. */
	ck_assert_int_eq(broker_restart(b, argv), 0);
	c2 = connect_ok(b);
	q = open_ok(c2, "e");
	EXPECT_RC(0, gpuq_queue_info_get(q, &info));
	ck_assert_uint_ne(info.broker_epoch, epoch);
	EXPECT_RC(0, gpuq_enqueue(q, "again", 5, &id, WAIT_MS));
	ck_assert_uint_eq(id, 0);
	expect_echo(q, 0, "again", 5);
	ck_assert_uint_eq(stats_of(q).enqueued, 1);
	gpuq_disconnect(c2);
	finish(b);
}
END_TEST

START_TEST(test_second_broker)
{
	const char *argv[] = { "-q", "e,handler=echo,capacity=16", NULL };
	struct broker_proc *b = start(argv);
	char err[160];
	const char *second[] = { tool_path("GPUQD", "broker/gpuqd"), "-s",
				 b->socket, "-q", "e", NULL };
	gpuq_client *c;
	gpuq_queue *q;
	int st;

	snprintf(err, sizeof(err), "%s/second.log", b->dir);
	st = wait_pid(spawn_tool(second, err), WAIT_MS);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 1,
		      "second gpuqd: status %#x, want exit 1", st);
	ck_assert_msg(strstr(file_text(err), "another gpuqd") != NULL, "%s",
		      file_text(err));

	/* The first broker did not notice. */
	ck_assert(file_exists(b->socket));
	ck_assert_int_eq(waitpid(b->pid, NULL, WNOHANG), 0);
	c = connect_ok(b);
	q = open_ok(c, "e");
	EXPECT_RC(0, gpuq_enqueue(q, "first", 5, NULL, WAIT_MS));
	expect_echo(q, 0, "first", 5);
	gpuq_disconnect(c);
	finish(b);
}
END_TEST

/* The child: attach, take a loan of 5, say so, and hang until killed. */
static void loan_holder(const char *socket, int fd)
{
	gpuq_client *c;
	gpuq_queue *q;
	gpuq_loan loan;
	char ok = 'r';

	alarm(30); /* never outlive a test that failed before killing us */
	if (gpuq_connect(socket, &c) || gpuq_open(c, "c", &q) ||
	    gpuq_reserve(q, 5, &loan, WAIT_MS))
		ok = 'x';
	if (write(fd, &ok, 1) != 1)
		_exit(1);
	for (;;)
		pause();
}

START_TEST(test_crashed_producer)
{
	const char *argv[] = { "-q",
			       "c,handler=checksum,capacity=8,slot_bytes=64",
			       NULL };
	struct broker_proc *b = start(argv);
	struct pollfd pfd;
	uint8_t p[16][64];
	size_t n[16];
	gpuq_client *c;
	gpuq_queue *q;
	uint64_t id, t0;
	pid_t child;
	char got = 0;
	int fds[2], st;

	ck_assert_int_eq(pipe(fds), 0);
	child = fork();
	ck_assert_int_ge(child, 0);
	if (child == 0) {
		close(fds[0]);
		loan_holder(b->socket, fds[1]);
	}
	close(fds[1]);
	pfd.fd = fds[0];
	pfd.events = POLLIN;
	ck_assert_int_eq(poll(&pfd, 1, WAIT_MS), 1);
	ck_assert_int_eq(read(fds[0], &got, 1), 1);
	close(fds[0]);
	if (got != 'r')
		kill(child, SIGKILL);
	ck_assert_msg(got == 'r', "child could not take its loan");

	/* Behind the child's 5 tickets our message cannot complete... */
	c = connect_ok(b);
	q = open_ok(c, "c");
	n[0] = payload(p[0], 64, 0);
	EXPECT_RC(0, gpuq_enqueue(q, p[0], n[0], &id, 0));
	if (consumer_in_order())
		EXPECT_RC(GPUQ_ETIMEDOUT, gpuq_wait(q, id, NULL, 0, NULL, 100));
	ck_assert_uint_eq(stats_of(q).reclaimed, 0);
	ck_assert_uint_eq(stats_of(q).clients, 2);

	/* ...until the broker reclaims them from the dead child. */
	ck_assert_int_eq(kill(child, SIGKILL), 0);
	ck_assert_int_eq(waitpid(child, &st, 0), child);
	ck_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	t0 = now_ns();
	expect_crc(q, 0, p[0], n[0]);
	/* On the CUDA backend our message did not wait for the reclaim. */
	ck_assert_uint_eq(stat_reaches(q, offsetof(gpuq_stats, reclaimed), 5), 5);
	ck_assert_msg(ms_since(t0) < 3000.0, "reclaim took %.0f ms",
		      ms_since(t0));
	ck_assert_uint_eq(stats_of(q).clients, 1);

	/* The skipped slots are usable on the next laps of the ring. */
	for (uint64_t i = 1; i < 16; i++) {
		n[i] = payload(p[i], 64, i);
		EXPECT_RC(0, gpuq_enqueue(q, p[i], n[i], &id, WAIT_MS));
		ck_assert_uint_eq(id, i);
		expect_crc(q, i, p[i], n[i]);
	}
	ck_assert_uint_eq(stats_of(q).reclaimed, 5);
	ck_assert_uint_eq(stats_of(q).enqueued, 16);
	gpuq_disconnect(c);
	finish(b);
}
END_TEST

/* ---- SIGTERM drain ---- */

#define DRAIN_N 2000
#define DRAIN_MAX 4000

START_TEST(test_drain)
{
	const char *argv[] = { "-q",
			       "d,handler=checksum,capacity=4096,slot_bytes=64,"
			       "max_clients=4",
			       EPOLL_ARG(_i), NULL };
	struct broker_proc *b = start(argv);
	static uint8_t p[DRAIN_MAX][64];
	static size_t n[DRAIN_MAX];
	gpuq_client *c = connect_ok(b);
	gpuq_queue *qa = open_ok(c, "d"), *qb = open_ok(c, "d"), *qx = NULL;
	gpuq_loan loan, l2;
	gpuq_iov v[100];
	uint64_t ids[100], sent = 0, id, t0;
	uint32_t len1;
	const char *log;
	int rc, st;

	assert_loop_kind(b, _i);
	/* A's loan of ticket 0 keeps everything after it in the ring. */
	EXPECT_RC(0, gpuq_reserve(qa, 1, &loan, 0));
	while (sent < DRAIN_N) {
		for (int i = 0; i < 100; i++) {
			n[sent + i] = payload(p[sent + i], 64, sent + i);
			v[i].data = p[sent + i];
			v[i].len = n[sent + i];
		}
		EXPECT_RC(100, gpuq_enqueue_batch(qb, v, 100, ids, WAIT_MS));
		ck_assert_uint_eq(ids[0], sent);
		sent += 100;
	}
	if (consumer_in_order())
		EXPECT_RC(GPUQ_EAGAIN, gpuq_result(qb, 0, NULL, 0, NULL));

	ck_assert_int_eq(kill(b->pid, SIGTERM), 0);
	/* Intake closes once the broker has read the signal. */
	t0 = now_ns();
	for (;;) {
		n[sent] = payload(p[sent], 64, sent);
		rc = gpuq_enqueue(qb, p[sent], n[sent], &id, 0);
		if (rc != 0)
			break;
		ck_assert_uint_eq(id, sent);
		sent++;
		ck_assert_msg(sent < DRAIN_MAX && ms_since(t0) < WAIT_MS,
			      "intake still open after %.0f ms", ms_since(t0));
		sleep_ms(2);
	}
	EXPECT_RC(GPUQ_ESHUTDOWN, rc);
	EXPECT_RC(GPUQ_ESHUTDOWN, gpuq_reserve(qb, 1, &l2, 0));
	EXPECT_RC(GPUQ_ESHUTDOWN, gpuq_open(c, "d", &qx));
	ck_assert_ptr_null(qx);

	/* A's ticket came before the close: it still counts. */
	memcpy(gpuq_loan_slot(qa, &loan, 0), "drain", 5);
	len1 = 5;
	EXPECT_RC(0, gpuq_commit(qa, &loan, &len1));
	expect_crc(qa, loan.first_id, "drain", 5);
	for (uint64_t i = 0; i < sent; i++)
		expect_crc(qb, i, p[i], n[i]);

	/* Drained: the broker exits 0 by itself and removes its socket. */
	st = broker_stop(b, 0, WAIT_MS);
	ck_assert_msg(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
		      "gpuqd status %#x after drain", st);
	ck_assert(!file_exists(b->socket));
	log = log_text(b);
	ck_assert_msg(strstr(log, "draining: SIGTERM") != NULL, "%s", log);
	ck_assert_msg(strstr(log, "left 0") != NULL, "%s", log);
	gpuq_disconnect(c);
	finish(b);
}
END_TEST

Suite *suite_broker(void);

/* ---- hardening: socket directory, SIGHUP, stale loans ---- */

START_TEST(test_hardening)
{
	const char *argv[] = { "-q", "e,handler=echo,capacity=16", NULL };
	struct broker_proc *d = prep_dir(), *b;
	char open_dir[200], sock[260], err[200];
	const char *bad[] = { tool_path("GPUQD", "broker/gpuqd"), "-s", sock,
			      "-q", "e", NULL };
	gpuq_client *c;
	gpuq_queue *q;
	gpuq_loan loan, stale;
	uint32_t one = 1;
	uint8_t buf[16];
	size_t len;
	int st;

	/* A socket directory others can write to (and not sticky) is
	 * refused: they could replace the socket. */
	snprintf(open_dir, sizeof(open_dir), "%s/open", d->dir);
	ck_assert_int_eq(mkdir(open_dir, 0777), 0);
	ck_assert_int_eq(chmod(open_dir, 0777), 0);
	snprintf(sock, sizeof(sock), "%s/gpuqd.sock", open_dir);
	snprintf(err, sizeof(err), "%s/err.txt", d->dir);
	st = wait_pid(spawn_tool(bad, err), WAIT_MS);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 1, "status %#x", st);
	ck_assert_msg(strstr(file_text(err), "writable by others") != NULL,
		      "%s", file_text(err));
	ck_assert(!file_exists(sock));
	finish(d);

	/* SIGHUP is logged and ignored, not a kill without a drain. */
	b = start(argv);
	ck_assert_int_eq(kill(b->pid, SIGHUP), 0);
	c = connect_ok(b);
	q = open_ok(c, "e");
	EXPECT_RC(0, gpuq_enqueue(q, "hup", 3, NULL, WAIT_MS));
	expect_echo(q, 0, "hup", 3);
	ck_assert_msg(strstr(log_text(b), "SIGHUP ignored") != NULL, "%s",
		      log_text(b));

	/* Only the open loan can be committed or written. */
	EXPECT_RC(0, gpuq_reserve(q, 1, &loan, 0));
	stale = loan;
	stale.ticket += 1;
	ck_assert_ptr_null(gpuq_loan_slot(q, &stale, 0));
	EXPECT_RC(-EINVAL, gpuq_commit(q, &stale, &one));
	*(uint8_t *)gpuq_loan_slot(q, &loan, 0) = 'x';
	EXPECT_RC(0, gpuq_commit(q, &loan, &one));
	EXPECT_RC(-EINVAL, gpuq_commit(q, &loan, &one)); /* committed */
	expect_echo(q, 1, "x", 1);

	/* gpuq_result on a message the dead broker never finished. */
	EXPECT_RC(0, gpuq_reserve(q, 1, &loan, 0));
	st = broker_stop(b, SIGKILL, WAIT_MS);
	ck_assert(WIFSIGNALED(st));
	/* Polling it reports the death (within the liveness bound), never
	 * "not ready" forever. */
	{
		uint64_t t0 = now_ns();
		int rc;
		while ((rc = gpuq_result(q, loan.first_id, buf, sizeof(buf),
					 &len)) == GPUQ_EAGAIN &&
		       ms_since(t0) < 1500.0)
			sleep_ms(1);
		EXPECT_RC(GPUQ_EBROKERDEAD, rc);
	}
	gpuq_disconnect(c);
	finish(b);
}
END_TEST

Suite *suite_broker(void)
{
	Suite *s = suite_create("broker");
	TCase *te = tcase_create("errors");
	TCase *tl = tcase_create("lifecycle");
	TCase *tp = tcase_create("loops");

	tcase_add_checked_fixture(te, NULL, teardown);
	tcase_add_unchecked_fixture(te, NULL, teardown_runner);
	tcase_set_timeout(te, TEST_TIMEOUT_S);
	tcase_add_test(te, test_bad_arguments);
	tcase_add_test(te, test_bad_names);
	tcase_add_test(te, test_no_broker);
	tcase_add_test(te, test_full_ring);
	tcase_add_test(te, test_cq_full);
	tcase_add_test(te, test_too_many_clients);
	tcase_add_test(te, test_config_errors);
	tcase_add_loop_test(te, test_denied, 0, 2);
	tcase_add_test(te, test_results_api);
	suite_add_tcase(s, te);

	tcase_add_checked_fixture(tl, NULL, teardown);
	tcase_add_unchecked_fixture(tl, NULL, teardown_runner);
	tcase_set_timeout(tl, TEST_TIMEOUT_S);
	tcase_add_test(tl, test_zero_copy);
	tcase_add_test(tl, test_stamped);
	tcase_add_test(tl, test_handlers);
	tcase_add_test(tl, test_dead_broker);
	tcase_add_test(tl, test_second_broker);
	tcase_add_test(tl, test_crashed_producer);
	tcase_add_test(tl, test_hardening);
	suite_add_tcase(s, tl);

	/* 0: the default (io_uring) loop, 1: --force-epoll. */
	tcase_add_checked_fixture(tp, NULL, teardown);
	tcase_add_unchecked_fixture(tp, NULL, teardown_runner);
	tcase_set_timeout(tp, TEST_TIMEOUT_S);
	tcase_add_loop_test(tp, test_basic, 0, 2);
	tcase_add_loop_test(tp, test_garbled, 0, 2);
	tcase_add_loop_test(tp, test_drain, 0, 2);
	suite_add_tcase(s, tp);
	return s;
}

int main(void)
{
	SRunner *sr;
	int failed;

	brokers = mmap(NULL, MAX_BROKERS * sizeof(*brokers),
		       PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1,
		       0);
	if (brokers == MAP_FAILED) {
		perror("mmap");
		return EXIT_FAILURE;
	}
	sr = srunner_create(suite_broker());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
