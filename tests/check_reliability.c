/*
 * check_reliability.c - delivery guarantees under faults (docs/guarantees.md):
 * exact dead-letter counts under deterministic fault injection, the dlq
 * commands, per-key order across retries, a kill -9 loop of producers, a
 * broker killed under live clients, and gpuqctl drain.
 *
 * GPUQ_KILL_LOOPS sets the number of producer kills (default 200).
 */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench/reference.h"
#include "libclient/gpuq.h"
#include "tests/harness.h"
#include "tests/runner.h"

#define WAIT_MS 5000

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sleep_us(unsigned us)
{
	struct timespec ts = { us / 1000000, (long)(us % 1000000) * 1000 };
	nanosleep(&ts, NULL);
}

/* The fault-injection choice, written again here from its definition in
 * docs/guarantees.md (splitmix64 finaliser of id ^ "fault", mod 10^6), so
 * the broker's copy is checked against an independent one. */
static int chosen(uint64_t id, uint32_t ppm)
{
	uint64_t x = id ^ 0x6661756c74ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	x ^= x >> 31;
	return ppm && x % 1000000u < ppm;
}

static gpuq_client *connect_ok(const struct broker_proc *b)
{
	gpuq_client *c = NULL;
	int rc = gpuq_connect(b->socket, &c);
	ck_assert_msg(rc == 0, "connect: %s", gpuq_err_name(rc));
	return c;
}

static gpuq_queue *open_ok(gpuq_client *c, const char *name)
{
	gpuq_queue *q = NULL;
	int rc = gpuq_open(c, name, &q);
	ck_assert_msg(rc == 0, "open %s: %s", name, gpuq_err_name(rc));
	return q;
}

static gpuq_stats stats_of(const gpuq_queue *q)
{
	gpuq_stats st;
	ck_assert_int_eq(gpuq_stats_get(q, &st), 0);
	return st;
}

/* Wait until depth is 0 (everything reserved was consumed or skipped). */
static void wait_idle(const gpuq_queue *q)
{
	uint64_t t0 = now_ns();
	while (stats_of(q).depth && now_ns() - t0 < 5000000000ull)
		sleep_us(1000);
	ck_assert_uint_eq(stats_of(q).depth, 0);
}

static void start(struct broker_proc *b, const char *const *argv)
{
	int rc = broker_start(b, argv);
	ck_assert_msg(rc == 0, "gpuqd did not start, see %s", b->log);
}

static void finish(struct broker_proc *b)
{
	char why[256];
	ck_assert_msg(broker_finish(b, WAIT_MS, why, sizeof(why)) == 0, "%s", why);
}

/* Send n checksum messages (ids 0..n-1), read every completion. */
static void send_all(gpuq_queue *q, uint64_t n, uint64_t *dead, uint64_t *ok)
{
	uint8_t p[64];
	uint64_t sent = 0, done = 0, t0 = now_ns();
	gpuq_completion comp[64];
	*dead = *ok = 0;
	while (done < n) {
		if (sent < n && gpuq_inflight(q) < 256) {
			ref_fill(p, sizeof(p), sent);
			if (gpuq_enqueue(q, p, sizeof(p), NULL, 0) == 0)
				sent++;
		}
		int k = gpuq_poll(q, comp, 64);
		ck_assert_int_ge(k, 0);
		for (int i = 0; i < k; i++) {
			ck_assert_msg(comp[i].status == 0 ||
					      comp[i].status == GPUQ_EHANDLER,
				      "status %d", comp[i].status);
			if (comp[i].status) {
				ck_assert_msg(chosen(comp[i].id, 50000),
					      "id %llu dead but not chosen",
					      (unsigned long long)comp[i].id);
				(*dead)++;
			} else {
				ref_fill(p, sizeof(p), comp[i].id);
				ck_assert(ref_crc_result_ok(p, sizeof(p), 0,
							    comp[i].result,
							    comp[i].len));
				(*ok)++;
			}
		}
		done += (uint64_t)k;
		ck_assert_msg(now_ns() - t0 < 30000000000ull, "stalled");
	}
}

/* ---- dead letters: exact counts ---- */

START_TEST(test_dlq_exact)
{
	/* All attempts fail for a chosen message: each one is dead-lettered
	 * after exactly max_attempts runs; nothing else is. */
	const char *argv[] = {
		"-q", "all,handler=checksum,slot_bytes=64,fail_ppm=50000,"
		      "max_attempts=3,dlq_capacity=4096,workers=2",
		"-q", "some,handler=checksum,slot_bytes=64,fail_ppm=50000,"
		      "fail_attempts=2,max_attempts=3,workers=2",
		NULL };
	struct broker_proc b;
	uint64_t n = 20000, want = 0, dead, ok;
	gpuq_client *c;
	gpuq_queue *qa, *qs;
	for (uint64_t id = 0; id < n; id++)
		want += (uint64_t)chosen(id, 50000);
	ck_assert(want > 800 && want < 1200); /* about 5% */

	start(&b, argv);
	c = connect_ok(&b);
	qa = open_ok(c, "all");
	send_all(qa, n, &dead, &ok);
	ck_assert_uint_eq(dead, want);
	ck_assert_uint_eq(ok, n - want);
	wait_idle(qa);
	ck_assert_uint_eq(stats_of(qa).dead_lettered, want);
	ck_assert_uint_eq(stats_of(qa).dlq_pending, want);
	ck_assert_uint_eq(stats_of(qa).retried, 2 * want);
	ck_assert_uint_eq(stats_of(qa).completed, n);

	/* Failing the first two runs of three: retried, never dead. */
	qs = open_ok(c, "some");
	send_all(qs, n, &dead, &ok);
	ck_assert_uint_eq(dead, 0);
	ck_assert_uint_eq(ok, n);
	wait_idle(qs);
	ck_assert_uint_eq(stats_of(qs).dead_lettered, 0);
	ck_assert_uint_eq(stats_of(qs).retried, 2 * want);
	gpuq_disconnect(c);
	finish(&b);
}
END_TEST

/* ---- dead letters: the operator's commands ---- */

static int ctl(const struct broker_proc *b, char *out, size_t cap,
	       const char *a1, const char *a2, const char *a3, const char *a4)
{
	const char *argv[] = { tool_path("GPUQCTL", "broker/gpuqctl"), "-s",
			       b->socket, "--json", a1, a2, a3, a4, NULL };
	return run_capture(argv, out, cap);
}

/* gpuqctl dlq show (human form: a hex dump of the payload) of queue q's
 * first dead letter, whose position is taken from the dlq ls JSON in out;
 * the dump replaces it. */
static void show_first_dead_letter(const struct broker_proc *b, const char *q,
				   char *out, size_t cap)
{
	const char *p = strstr(out, "\"at\":\"");
	char at[32];
	int st;
	ck_assert_ptr_nonnull(p);
	snprintf(at, sizeof(at), "%.*s", (int)strcspn(p + 6, "\""), p + 6);
	const char *argv[] = { tool_path("GPUQCTL", "broker/gpuqctl"), "-s",
			       b->socket, "dlq", "show", q, at, NULL };
	st = run_capture(argv, out, cap);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

START_TEST(test_dlq_commands)
{
	const char *argv[] = { "-q", "v,handler=vector,slot_bytes=64,max_attempts=2",
			       NULL };
	struct broker_proc b;
	char out[16384];
	float good[4] = { 1, 2, 3, 4 };
	uint8_t bad[7] = { 1, 2, 3, 4, 5, 6, 7 };
	gpuq_client *c;
	gpuq_queue *q;
	uint64_t id;
	int st;

	start(&b, argv);
	c = connect_ok(&b);
	q = open_ok(c, "v");
	/* Three messages whose length is not whole floats: dead letters. */
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(gpuq_enqueue_key(q, 100 + (uint64_t)i, bad,
						  (size_t)(5 + i % 2), &id, WAIT_MS), 0);
		ck_assert_int_eq(gpuq_wait(q, id, NULL, 0, NULL, WAIT_MS),
				 GPUQ_EHANDLER);
	}
	ck_assert_int_eq(gpuq_enqueue(q, good, sizeof(good), &id, WAIT_MS), 0);
	ck_assert_int_eq(gpuq_wait(q, id, out, sizeof(out), NULL, WAIT_MS), 0);
	ck_assert_uint_eq(stats_of(q).dlq_pending, 3);

	st = ctl(&b, out, sizeof(out), "dlq", "ls", "v", NULL);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	ck_assert_int_eq(json_number(out, NULL, "total"), 3);
	ck_assert_int_eq(json_number(out, "\"key\":100", "attempts"), 2);
	ck_assert_int_eq(json_number(out, "\"key\":101", "len"), 6);
	ck_assert_int_eq(json_number(out, "\"key\":102", "pid"), (long long)getpid());

	/* show: the first one, payload included (human form: hex dump). */
	show_first_dead_letter(&b, "v", out, sizeof(out));
	ck_assert_msg(strstr(out, "01 02 03 04 05") != NULL, "%s", out);
	st = ctl(&b, out, sizeof(out), "dlq", "show", "v", "0:999");
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1);
	ck_assert(strstr(out, "GPUQ_ENOTFOUND") != NULL);

	/* replay 1: it fails again and comes back; purge 1 drops one. */
	st = ctl(&b, out, sizeof(out), "dlq", "replay", "v", "1");
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	ck_assert_int_eq(json_number(out, NULL, "done"), 1);
	wait_idle(q);
	ck_assert_uint_eq(stats_of(q).dlq_pending, 3);
	ck_assert_uint_eq(stats_of(q).dead_lettered, 4);
	st = ctl(&b, out, sizeof(out), "dlq", "purge", "v", "1");
	ck_assert_int_eq(json_number(out, NULL, "done"), 1);
	ck_assert_int_eq(json_number(out, NULL, "total"), 2);
	st = ctl(&b, out, sizeof(out), "dlq", "purge", "v", "all");
	ck_assert_int_eq(json_number(out, NULL, "done"), 2);
	ck_assert_uint_eq(stats_of(q).dlq_pending, 0);
	st = ctl(&b, out, sizeof(out), "status", NULL, NULL, NULL);
	ck_assert_int_eq(json_number(out, NULL, "dlq_replayed"), 1);
	ck_assert_int_eq(json_number(out, NULL, "dlq_purged"), 3);
	st = ctl(&b, out, sizeof(out), "dlq", "ls", "nosuch", NULL);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1);
	ck_assert(strstr(out, "GPUQ_ENOQUEUE") != NULL);
	gpuq_disconnect(c);
	finish(&b);
}
END_TEST

/* A stamped queue's dead letter holds the payload itself, not its stamped
 * chunks, and a replay writes it back in the stamped format. */
START_TEST(test_dlq_stamped)
{
	const char *argv[] = { "-q", "v,handler=vector,slot_bytes=64,"
				     "max_attempts=2,stamped=1", NULL };
	struct broker_proc b;
	char out[16384];
	uint8_t bad[29];
	float good[4] = { 1, 2, 3, 4 };
	gpuq_client *c;
	gpuq_queue *q;
	uint64_t id;
	int st;

	for (size_t i = 0; i < sizeof(bad); i++)
		bad[i] = (uint8_t)(0xa0 + i);
	start(&b, argv);
	c = connect_ok(&b);
	q = open_ok(c, "v");
	ck_assert_int_eq(gpuq_enqueue_key(q, 7, bad, sizeof(bad), &id, WAIT_MS), 0);
	ck_assert_int_eq(gpuq_wait(q, id, NULL, 0, NULL, WAIT_MS), GPUQ_EHANDLER);
	ck_assert_int_eq(gpuq_enqueue(q, good, sizeof(good), &id, WAIT_MS), 0);
	ck_assert_int_eq(gpuq_wait(q, id, out, sizeof(out), NULL, WAIT_MS), 0);
	ck_assert_uint_eq(stats_of(q).dlq_pending, 1);
	st = ctl(&b, out, sizeof(out), "dlq", "ls", "v", NULL);
	ck_assert_int_eq(json_number(out, "\"key\":7", "len"), (long long)sizeof(bad));
	show_first_dead_letter(&b, "v", out, sizeof(out));
	/* bytes 10 to 14 straddle the first chunk's stamp */
	ck_assert_msg(strstr(out, "aa ab ac ad ae") != NULL, "%s", out);
	ck_assert_msg(strstr(out, "b8 b9 ba bb bc") != NULL, "%s", out);
	st = ctl(&b, out, sizeof(out), "dlq", "replay", "v", "1");
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	wait_idle(q);
	ck_assert_uint_eq(stats_of(q).dead_lettered, 2);
	ck_assert_uint_eq(stats_of(q).dlq_pending, 1);
	st = ctl(&b, out, sizeof(out), "dlq", "ls", "v", NULL);
	ck_assert_int_eq(json_number(out, "\"key\":7", "len"), (long long)sizeof(bad));
	show_first_dead_letter(&b, "v", out, sizeof(out));
	ck_assert_msg(strstr(out, "b8 b9 ba bb bc") != NULL, "%s", out);
	gpuq_disconnect(c);
	finish(&b);
}
END_TEST

/* ---- per-key order across retries ---- */

#define KEYS 1000
#define PER_KEY 20
#define ORDER_PRODUCERS 4

/* Each producer owns the keys k with k % ORDER_PRODUCERS == idx and sends
 * PER_KEY messages per key, interleaving keys.  It records, per message,
 * the worker and that worker's completion sequence; in enqueue order of a
 * key they must name one worker and strictly increase. */
static int order_producer(const char *sock, int idx)
{
	static uint32_t worker[KEYS][PER_KEY];
	static uint64_t seq[KEYS][PER_KEY];
	static uint64_t id_key[KEYS * PER_KEY];
	static uint32_t id_n[KEYS * PER_KEY];
	gpuq_completion comp[128];
	uint64_t sent = 0, done = 0, total = 0, retried = 0;
	gpuq_client *c;
	gpuq_queue *q;
	if (gpuq_connect(sock, &c) || gpuq_open(c, "ord", &q))
		return 2;
	for (int k = idx; k < KEYS; k += ORDER_PRODUCERS)
		total += PER_KEY;
	while (done < total) {
		if (sent < total && gpuq_inflight(q) < 512) {
			/* message sent: key and its number within the key */
			uint64_t round = sent / (KEYS / ORDER_PRODUCERS);
			uint64_t k = (uint64_t)idx +
				     (sent % (KEYS / ORDER_PRODUCERS)) * ORDER_PRODUCERS;
			uint64_t body[2] = { k, round }, id;
			if (gpuq_enqueue_key(q, k, body, sizeof(body), &id, 0) == 0) {
				id_key[id] = k;
				id_n[id] = (uint32_t)round;
				sent++;
			}
		}
		int n = gpuq_poll(q, comp, 128);
		if (n < 0)
			return 3;
		for (int i = 0; i < n; i++) {
			uint64_t k = id_key[comp[i].id];
			uint32_t r = id_n[comp[i].id];
			if (comp[i].status)
				return 4; /* retries must have rescued it */
			worker[k][r] = comp[i].worker;
			seq[k][r] = comp[i].seq;
			retried += comp[i].attempts > 1;
		}
		done += (uint64_t)n;
	}
	for (int k = idx; k < KEYS; k += ORDER_PRODUCERS)
		for (int r = 1; r < PER_KEY; r++)
			if (worker[k][r] != worker[k][0] ||
			    seq[k][r] <= seq[k][r - 1]) {
				fprintf(stderr, "key %d: message %d (worker %u "
						"seq %llu) after %d (worker %u seq %llu)\n",
					k, r, worker[k][r],
					(unsigned long long)seq[k][r], r - 1,
					worker[k][r - 1],
					(unsigned long long)seq[k][r - 1]);
				return 5;
			}
	gpuq_disconnect(c);
	return retried > 0 ? 0 : 6; /* retries really were injected */
}

START_TEST(test_ordering)
{
	const char *argv[] = {
		"-q", "ord,handler=echo,slot_bytes=64,ordered=yes,workers=4,"
		      "fail_ppm=200000,fail_attempts=1,max_attempts=3",
		NULL };
	struct broker_proc b;
	pid_t pids[ORDER_PRODUCERS];
	gpuq_client *c;
	gpuq_queue *q;
	gpuq_queue_info info;
	start(&b, argv);
	c = connect_ok(&b);
	q = open_ok(c, "ord");
	ck_assert_int_eq(gpuq_queue_info_get(q, &info), 0);
	ck_assert_uint_eq(info.ordered, 1);
	ck_assert_uint_eq(info.rings, 4);
	for (int i = 0; i < ORDER_PRODUCERS; i++) {
		pids[i] = fork();
		if (pids[i] == 0)
			_exit(order_producer(b.socket, i));
	}
	for (int i = 0; i < ORDER_PRODUCERS; i++) {
		int st;
		ck_assert_int_eq(waitpid(pids[i], &st, 0), pids[i]);
		ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0,
			      "producer %d: status %#x", i, st);
	}
	wait_idle(q);
	ck_assert_uint_eq(stats_of(q).completed, KEYS * PER_KEY);
	ck_assert_uint_eq(stats_of(q).dead_lettered, 0);
	ck_assert_uint_gt(stats_of(q).retried, KEYS * PER_KEY / 10);
	gpuq_disconnect(c);
	finish(&b);
}
END_TEST

/* ---- kill -9 loop ---- */

/* A producer that does a random thing and is killed at a random point:
 * plain enqueues without reading results, or a loan it writes slowly. */
static void victim(const char *sock, unsigned seed)
{
	uint8_t p[64];
	gpuq_client *c;
	gpuq_queue *q;
	gpuq_loan loan;
	uint32_t lens[8];
	srand(seed);
	if (gpuq_connect(sock, &c) || gpuq_open(c, "k", &q))
		_exit(2);
	for (;;) {
		if (rand() % 2) {
			ref_fill(p, sizeof(p), (uint64_t)rand());
			gpuq_enqueue(q, p, sizeof(p), NULL, 0);
		} else if (gpuq_reserve(q, 1 + (uint32_t)rand() % 8, &loan, 0) == 0) {
			for (uint32_t i = 0; i < loan.count; i++) {
				/* halfway through a payload, now and then */
				memset(gpuq_loan_slot(q, &loan, i), 0xab, 32);
				sleep_us((unsigned)rand() % 200);
				memset((uint8_t *)gpuq_loan_slot(q, &loan, i) + 32,
				       0xcd, 32);
				lens[i] = 64;
			}
			gpuq_commit(q, &loan, lens);
		}
		if (gpuq_inflight(q) > 200) {
			gpuq_completion comp[64];
			gpuq_poll(q, comp, 64);
		}
	}
}

struct watch {
	uint64_t max_gap_ns, completed;
	int rc;
};

/* Runs through the whole loop: one message at a time, each checked; the
 * longest wait for a result is the queue's worst stall. */
static void watchdog(const char *sock, volatile int *stop, struct watch *w)
{
	uint8_t p[64], r[4];
	gpuq_client *c;
	gpuq_queue *q;
	uint64_t id;
	if (gpuq_connect(sock, &c) || gpuq_open(c, "k", &q)) {
		w->rc = 2;
		return;
	}
	while (!*stop) {
		uint64_t t0 = now_ns(), gap;
		ref_fill(p, sizeof(p), w->completed);
		if (gpuq_enqueue(q, p, sizeof(p), &id, 10000) ||
		    gpuq_wait(q, id, r, sizeof(r), NULL, 10000)) {
			w->rc = 3;
			break;
		}
		if (!ref_crc_result_ok(p, sizeof(p), 0, r, 4)) {
			w->rc = 4;
			break;
		}
		gap = now_ns() - t0;
		if (gap > w->max_gap_ns)
			w->max_gap_ns = gap;
		w->completed++;
	}
	gpuq_disconnect(c);
}

START_TEST(test_kill_loop)
{
	const char *argv[] = { "-q", "k,handler=checksum,slot_bytes=64,capacity=256,"
				     "workers=2,max_clients=32",
			       NULL };
	const char *env = getenv("GPUQ_KILL_LOOPS");
	int loops = env ? atoi(env) : 200;
	struct broker_proc b;
	volatile int *stop;
	struct watch *w;
	pid_t wd;
	gpuq_client *c;
	gpuq_queue *q;
	gpuq_loan loan;
	gpuq_stats st;
	int status;

	stop = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
		    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ck_assert(stop != MAP_FAILED);
	w = (struct watch *)((char *)stop + 64);
	start(&b, argv);
	wd = fork();
	if (wd == 0) {
		watchdog(b.socket, stop, w);
		_exit(0);
	}
	srand(12345);
	for (int i = 0; i < loops; i++) {
		pid_t v = fork();
		if (v == 0)
			victim(b.socket, (unsigned)i);
		/* anywhere from before attach to deep into its work */
		sleep_us((unsigned)(rand() % 4000));
		kill(v, SIGKILL);
		waitpid(v, &status, 0);
	}
	*stop = 1;
	waitpid(wd, &status, 0);
	ck_assert_msg(w->rc == 0, "watchdog failed (%d) after %llu messages",
		      w->rc, (unsigned long long)w->completed);
	ck_assert_uint_gt(w->completed, 0);
	/* Liveness bound: a dead producer's tickets are reclaimed within a
	 * broker tick or two of its hang-up. */
	ck_assert_msg(w->max_gap_ns < 1000000000ull,
		      "queue stalled %.0f ms", (double)w->max_gap_ns / 1e6);

	c = connect_ok(&b);
	/* The last victims' entries are still being reclaimed and then
	 * quarantined, so all 32 may be taken for a moment. */
	{
		uint64_t t0 = now_ns();
		int rc;
		while ((rc = gpuq_open(c, "k", &q)) == GPUQ_ETOOMANY &&
		       now_ns() - t0 < 3000000000ull)
			sleep_us(20000);
		ck_assert_msg(rc == 0, "open k: %s", gpuq_err_name(rc));
	}
	/* Every reserved ticket was consumed or (never published) skipped,
	 * so every committed message completed: depth reaches 0. */
	wait_idle(q);
	st = stats_of(q);
	ck_assert_uint_ge(st.completed, st.enqueued);
	ck_assert_uint_eq(st.dead_lettered, 0);
	/* No slot leaked: the whole ring can be loaned at once. */
	ck_assert_int_eq(gpuq_reserve(q, 256, &loan, 1000), 0);
	{
		uint32_t lens[256];
		for (int i = 0; i < 256; i++) {
			memset(gpuq_loan_slot(q, &loan, (uint32_t)i), i, 8);
			lens[i] = 8;
		}
		ck_assert_int_eq(gpuq_commit(q, &loan, lens), 0);
	}
	wait_idle(q);
	/* No client entry leaked: all but ours come back. */
	{
		gpuq_queue *more[31];
		uint64_t t0 = now_ns();
		int n = 0, rc;
		while (n < 31) {
			rc = gpuq_open(c, "k", &more[n]);
			if (rc == 0) {
				n++;
				continue;
			}
			ck_assert_msg(rc == GPUQ_ETOOMANY, "%s", gpuq_err_name(rc));
			ck_assert_msg(now_ns() - t0 < 3000000000ull,
				      "only %d client entries came back", n);
			sleep_us(20000);
		}
	}
	fprintf(stderr, "kill loop: %d kills, %llu watchdog messages, worst "
			"stall %.1f ms, reclaimed %llu\n",
		loops, (unsigned long long)w->completed,
		(double)w->max_gap_ns / 1e6, (unsigned long long)st.reclaimed);
	gpuq_disconnect(c);
	finish(&b);
	munmap((void *)stop, 4096);
}
END_TEST

/* ---- broker killed under live clients ---- */

/* A client busy with the queue when the broker dies: mode 0 keeps
 * enqueueing and reading results, mode 1 waits forever on its own loaned
 * message, which cannot complete.  Exits 0 once a call says
 * GPUQ_EBROKERDEAD; any other error is a failure. */
static int live_client(const char *sock, int mode)
{
	uint8_t p[64];
	gpuq_client *c;
	gpuq_queue *q;
	gpuq_loan loan;
	uint64_t id = 0;
	int rc;
	if (gpuq_connect(sock, &c) || gpuq_open(c, "e", &q))
		return 100;
	memset(p, 1, sizeof(p));
	if (mode == 1) {
		/* With time to wait: on two loaded cores (CI's sanitizer run)
		 * a reserve without any once failed before the kill.  The
		 * exit status says how, should it fail again. */
		rc = gpuq_reserve(q, 1, &loan, WAIT_MS);
		if (rc)
			return rc == GPUQ_EBROKERDEAD ? 103
			       : rc == GPUQ_ETIMEDOUT ? 104 : 102;
		id = loan.first_id;
	}
	do {
		if (mode == 0) {
			uint8_t r[64];
			rc = gpuq_enqueue(q, p, sizeof(p), &id, 100);
			/* Read every result, or the completion area would fill
			 * (GPUQ_ECQFULL) before the broker is killed. */
			if (!rc)
				rc = gpuq_wait(q, id, r, sizeof(r), NULL, 100);
			if (rc == GPUQ_ETIMEDOUT)
				rc = 0;
		} else {
			rc = gpuq_wait(q, id, NULL, 0, NULL, -1);
		}
	} while (rc == 0);
	return rc == GPUQ_EBROKERDEAD ? 0 : 101;
}

START_TEST(test_broker_killed)
{
	const char *argv[] = { "-q", "e,handler=echo,slot_bytes=64", NULL };
	struct broker_proc b;
	pid_t pids[3];
	uint64_t t0;
	start(&b, argv);
	for (int i = 0; i < 3; i++) {
		pids[i] = fork();
		if (pids[i] == 0)
			_exit(live_client(b.socket, i == 2));
	}
	sleep_us(300000);
	ck_assert_int_ne(broker_stop(&b, SIGKILL, WAIT_MS), -1);
	t0 = now_ns();
	for (int i = 0; i < 3; i++) {
		int st;
		ck_assert_int_eq(waitpid(pids[i], &st, 0), pids[i]);
		ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0,
			      "client %d: status %#x", i, st);
	}
	ck_assert_msg(now_ns() - t0 < 1000000000ull,
		      "clients took %.0f ms to see the broker die",
		      (double)(now_ns() - t0) / 1e6);
	/* The restart is clean. */
	ck_assert_int_eq(broker_restart(&b, argv), 0);
	{
		gpuq_client *c = connect_ok(&b);
		gpuq_queue *q = open_ok(c, "e");
		uint64_t id;
		ck_assert_int_eq(gpuq_enqueue(q, "x", 1, &id, WAIT_MS), 0);
		ck_assert_int_eq(gpuq_wait(q, id, NULL, 0, NULL, WAIT_MS), -EMSGSIZE);
		gpuq_disconnect(c);
	}
	finish(&b);
}
END_TEST

/* ---- gpuqctl drain ---- */

START_TEST(test_drain_command)
{
	const char *argv[] = { "-q", "d,handler=checksum,slot_bytes=64", NULL };
	struct broker_proc b;
	char out[16384];
	gpuq_client *c;
	gpuq_queue *qa, *qb;
	gpuq_loan loan;
	uint8_t p[64];
	uint32_t len = 64;
	int pfd[2], st;
	pid_t ctlpid;
	start(&b, argv);
	c = connect_ok(&b);
	qa = open_ok(c, "d");
	qb = open_ok(c, "d");
	/* In flight at drain time: a loan, and 100 messages behind it. */
	ck_assert_int_eq(gpuq_reserve(qa, 1, &loan, 0), 0);
	for (int i = 0; i < 100; i++) {
		ref_fill(p, sizeof(p), (uint64_t)i);
		ck_assert_int_eq(gpuq_enqueue(qb, p, sizeof(p), NULL, WAIT_MS), 0);
	}
	ck_assert_int_eq(pipe(pfd), 0);
	ctlpid = fork();
	if (ctlpid == 0) {
		const char *a[] = { tool_path("GPUQCTL", "broker/gpuqctl"), "-s",
				    b.socket, "--json", "drain", NULL };
		dup2(pfd[1], 1);
		execv(a[0], (char *const *)a);
		_exit(127);
	}
	close(pfd[1]);
	sleep_us(300000);
	/* Intake is closed, the in-flight work is not done yet... */
	ck_assert_int_eq(gpuq_enqueue(qb, p, sizeof(p), NULL, 0), GPUQ_ESHUTDOWN);
	ck_assert_int_eq(waitpid(ctlpid, &st, WNOHANG), 0);
	/* The drain began before we saw it: 200 ms more are its lower bound. */
	sleep_us(200000);
	/* ...and finishes once the loan is committed. */
	memset(gpuq_loan_slot(qa, &loan, 0), 7, 64);
	ck_assert_int_eq(gpuq_commit(qa, &loan, &len), 0);
	ck_assert_int_eq(waitpid(ctlpid, &st, 0), ctlpid);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	{
		ssize_t n = read(pfd[0], out, sizeof(out) - 1);
		ck_assert_int_gt(n, 0);
		out[n] = 0;
	}
	close(pfd[0]);
	ck_assert_int_eq(json_number(out, NULL, "enqueued"), 101);
	ck_assert_int_eq(json_number(out, NULL, "completed"), 101);
	ck_assert_int_eq(json_number(out, NULL, "depth"), 0);
	/* The drain waited for the loan (200 ms at least), and its time is
	 * reported for the broker and the queue; so is the time to ready. */
	ck_assert_int_ge(json_number(out, NULL, "drain_us"), 200000);
	ck_assert_int_ge(json_number(out, "\"name\":\"d\"", "drain_us"), 200000);
	ck_assert_int_gt(json_number(out, NULL, "ready_us"), 0);
	ck_assert_int_gt(json_number(out, "\"name\":\"d\"", "start_us"), 0);
	ck_assert_int_le(json_number(out, "\"name\":\"d\"", "start_us"),
			 json_number(out, NULL, "ready_us"));
	for (uint64_t id = 0; id < 100; id++) {
		uint8_t r[4];
		ref_fill(p, sizeof(p), id);
		ck_assert_int_eq(gpuq_wait(qb, id, r, sizeof(r), NULL, WAIT_MS), 0);
		ck_assert(ref_crc_result_ok(p, sizeof(p), 0, r, 4));
	}
	gpuq_disconnect(c);
	st = broker_stop(&b, SIGTERM, WAIT_MS);
	ck_assert(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
	broker_cleanup(&b);
}
END_TEST

static Suite *suite_reliability(void)
{
	Suite *s = suite_create("reliability");
	TCase *tc = tcase_create("faults");
	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, test_dlq_exact);
	tcase_add_test(tc, test_dlq_commands);
	tcase_add_test(tc, test_dlq_stamped);
	tcase_add_test(tc, test_ordering);
	tcase_add_test(tc, test_kill_loop);
	tcase_add_test(tc, test_broker_killed);
	tcase_add_test(tc, test_drain_command);
	suite_add_tcase(s, tc);
	return s;
}

GPUQ_CHECK_MAIN(suite_reliability)
