/*
 * check_gpu.c - the GPU suite: what only the CUDA backend does.
 *  - every built-in handler on the GPU gives the CPU backend's result,
 *    bit for bit, on fresh random inputs (one broker, one queue of each);
 *  - a handler module loaded at start (gpu/example_handler.cu) runs,
 *    fails where it should, and a bad module is refused with a clear error;
 *  - drain on SIGTERM finishes every published message and exits;
 *  - the hash table in VRAM, under warps of four blocks on one window's
 *    keys, gives linearizable histories (the host test's checker);
 *  - a GPU producer, beside a host producer.
 * Exits 77 (skipped) when gpuqd cannot start a CUDA queue here.
 * Tests that use CUDA themselves do so in check's forked child.
 */
#include "config.h"

#include <check.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench/reference.h"
#include "libclient/gpuq.h"
#include "tests/gpu_kvt.h"
#include "tests/gpu_producer.h"
#include "tests/harness.h"

#define WAIT_MS 20000

static uint64_t seed;

static uint64_t next_rand(uint64_t *s)
{
	*s = *s * 6364136223846793005ull + 1442695040888963407ull;
	return *s >> 17;
}

/* A handler module: $env (the bundle's runner sets it), else the file the
 * build made, rel under the build tree.  path holds the result. */
static const char *module_file(const char *env, const char *rel,
			       char path[512])
{
	const char *e = getenv(env);
	if (e && *e)
		return e;
	snprintf(path, 512, "%s/%s",
		 getenv("abs_top_builddir") ? getenv("abs_top_builddir") : ".", rel);
	return path;
}

static const char *module_path(void)
{
	static char path[512];
	return module_file("GPUQ_TEST_MODULE", "gpu/example_handler.fatbin", path);
}

static const char *trap_module_path(void)
{
	static char path[512];
	return module_file("GPUQ_TEST_TRAP_MODULE", "tests/trap_handler.fatbin",
			   path);
}

static gpuq_queue *open_queue(gpuq_client *c, const char *name)
{
	gpuq_queue *q = NULL;
	int rc = gpuq_open(c, name, &q);
	ck_assert_msg(rc == 0, "open %s: %s", name, gpuq_strerror(rc));
	return q;
}

/* Send the same n random payloads through queue a and queue b and require
 * the same status and result bytes from both. */
static void compare_queues(gpuq_client *c, const char *a, const char *b,
			   int multiple_of_4, int n)
{
	gpuq_queue *qa = open_queue(c, a), *qb = open_queue(c, b);
	uint8_t buf[256], ra[512], rb[512];
	uint64_t s = seed, ida, idb;
	for (int i = 0; i < n; i++) {
		size_t len = 1 + next_rand(&s) % sizeof(buf), la, lb;
		int sa, sb;
		if (multiple_of_4) {
			/* Finite floats: NaN payloads differ by design (a GPU
			 * makes every NaN canonical, x86 keeps the input's). */
			len = (len + 3) & ~(size_t)3;
			if (len > sizeof(buf))
				len = sizeof(buf);
			for (size_t j = 0; j < len; j += 4) {
				float f = (float)((int64_t)(next_rand(&s) % 2000001) -
						  1000000) / 997.0f;
				memcpy(buf + j, &f, 4);
			}
		} else {
			ref_fill(buf, len, next_rand(&s));
		}
		ck_assert_int_eq(gpuq_enqueue(qa, buf, len, &ida, WAIT_MS), 0);
		ck_assert_int_eq(gpuq_enqueue(qb, buf, len, &idb, WAIT_MS), 0);
		sa = gpuq_wait(qa, ida, ra, sizeof(ra), &la, WAIT_MS);
		sb = gpuq_wait(qb, idb, rb, sizeof(rb), &lb, WAIT_MS);
		ck_assert_msg(sa == sb && la == lb && !memcmp(ra, rb, la),
			      "%s vs %s differ on message %d (len %zu, seed %llu)",
			      a, b, i, len, (unsigned long long)seed);
	}
	gpuq_close(qa);
	gpuq_close(qb);
}

START_TEST(test_builtins_match_cpu)
{
	const char *args[] = {
		"-q", "echo_cpu,handler=echo,backend=cpu",
		"-q", "echo_gpu,handler=echo,backend=cuda,workers=4",
		"-q", "crc_cpu,handler=checksum,backend=cpu",
		"-q", "crc_gpu,handler=checksum,backend=cuda,workers=4",
		"-q", "vec_cpu,handler=vector,backend=cpu",
		"-q", "vec_gpu,handler=vector,backend=cuda,workers=4", NULL
	};
	struct broker_proc b;
	gpuq_client *c;
	ck_assert_int_eq(broker_start(&b, args), 0);
	ck_assert_int_eq(gpuq_connect(b.socket, &c), 0);
	compare_queues(c, "echo_cpu", "echo_gpu", 0, 2000);
	compare_queues(c, "crc_cpu", "crc_gpu", 0, 2000);
	compare_queues(c, "vec_cpu", "vec_gpu", 1, 2000);
	gpuq_disconnect(c);
	ck_assert_int_eq(broker_stop(&b, SIGTERM, 10000), 0);
	broker_cleanup(&b);
}
END_TEST

START_TEST(test_module_handler)
{
	char spec[700];
	const char *args[] = { "-q", spec, NULL };
	struct broker_proc b;
	gpuq_client *c;
	gpuq_queue *q;
	uint8_t buf[256], out[256];
	uint64_t s = seed, ids[2100];
	int n = 2100;
	snprintf(spec, sizeof(spec),
		 "upper,handler_module=%s,result_bytes=256,max_attempts=2,workers=4",
		 module_path());
	ck_assert_msg(broker_start(&b, args) == 0, "gpuqd did not start with %s",
		      spec);
	ck_assert_int_eq(gpuq_connect(b.socket, &c), 0);
	q = open_queue(c, "upper");
	for (int i = 0; i < n; i++) {
		size_t len = 1 + next_rand(&s) % sizeof(buf);
		for (size_t j = 0; j < len; j++)
			buf[j] = (uint8_t)(32 + next_rand(&s) % 95);
		if (i % 100 == 7) /* the example refuses a NUL byte */
			buf[len / 2] = 0;
		ck_assert_int_eq(gpuq_enqueue(q, buf, len, &ids[i], WAIT_MS), 0);
	}
	s = seed;
	for (int i = 0; i < n; i++) {
		size_t len = 1 + next_rand(&s) % sizeof(buf), got = 0;
		int bad = i % 100 == 7, rc;
		for (size_t j = 0; j < len; j++)
			buf[j] = (uint8_t)(32 + next_rand(&s) % 95);
		rc = gpuq_wait(q, ids[i], out, sizeof(out), &got, WAIT_MS);
		if (bad) {
			ck_assert_msg(rc == GPUQ_EHANDLER, "message %d: %s", i,
				      gpuq_err_name(rc));
			continue;
		}
		ck_assert_msg(rc == 0 && got == len, "message %d: %s, %zu bytes",
			      i, gpuq_err_name(rc), got);
		for (size_t j = 0; j < len; j++) {
			uint8_t want = buf[j] >= 'a' && buf[j] <= 'z'
					       ? (uint8_t)(buf[j] - 32)
					       : buf[j];
			ck_assert_msg(out[j] == want, "message %d byte %zu", i, j);
		}
	}
	{
		gpuq_stats st;
		ck_assert_int_eq(gpuq_stats_get(q, &st), 0);
		ck_assert_uint_eq(st.dead_lettered, (uint64_t)n / 100);
		/* max_attempts=2: each refused message ran twice */
		ck_assert_uint_eq(st.retried, (uint64_t)n / 100);
	}
	gpuq_close(q);
	gpuq_disconnect(c);
	ck_assert_int_eq(broker_stop(&b, SIGTERM, 10000), 0);
	broker_cleanup(&b);
}
END_TEST

/* A module that is missing, or is not a gpuq handler module, stops gpuqd
 * at start with a message naming the file. */
static void refused(const char *path, const char *needle)
{
	char spec[700];
	const char *args[] = { "-q", spec, NULL };
	struct broker_proc b;
	snprintf(spec, sizeof(spec), "m,handler_module=%s,result_bytes=16", path);
	ck_assert_int_ne(broker_start(&b, args), 0);
	ck_assert_msg(broker_log_contains(&b, needle) &&
			      broker_log_contains(&b, path),
		      "log lacks \"%s\" or the file name for %s", needle, path);
	broker_cleanup(&b);
}

START_TEST(test_module_refused)
{
	char junk[] = "/tmp/gpuq-junk-module-XXXXXX";
	int fd = mkstemp(junk);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "not a cubin\n", 12), 12);
	close(fd);
	refused("/nonexistent/handler.fatbin", "cannot load handler module");
	/* Loading can be lazy: a file the driver takes is refused when it
	 * lacks gpuq's symbols instead. */
	refused(junk, "handler module");
	unlink(junk);
}
END_TEST

/* SIGTERM while producers' messages wait: the kernel finishes every one of
 * them, then gpuqd exits 0, and the results are all there to read. */
START_TEST(test_drain)
{
	const char *args[] = { "-q", "d,handler=checksum,capacity=65536,workers=8",
			       NULL };
	enum { N = 60000 };
	static uint8_t data[N][64];
	static gpuq_iov iov[N];
	static uint64_t ids[N];
	struct broker_proc b;
	gpuq_client *c;
	gpuq_queue *q;
	uint8_t out[16];
	int status;
	ck_assert_int_eq(broker_start(&b, args), 0);
	ck_assert_int_eq(gpuq_connect(b.socket, &c), 0);
	q = open_queue(c, "d");
	for (int i = 0; i < N; i++) {
		ref_fill(data[i], sizeof(data[i]), seed + (uint64_t)i);
		iov[i] = (gpuq_iov){ data[i], sizeof(data[i]), 0 };
	}
	ck_assert_int_eq(gpuq_enqueue_batch(q, iov, N, ids, WAIT_MS), N);
	kill(b.pid, SIGTERM);
	status = broker_stop(&b, 0, 10000); /* signal 0: just wait */
	ck_assert_msg(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "gpuqd did not drain and exit 0 within 10 s");
	for (int i = 0; i < N; i++) {
		size_t got = 0;
		int rc = gpuq_result(q, ids[i], out, sizeof(out), &got);
		ck_assert_msg(ref_crc_result_ok(data[i], sizeof(data[i]), rc, out,
						got),
			      "message %d after drain: %s", i, gpuq_err_name(rc));
	}
	gpuq_close(q);
	gpuq_disconnect(c);
	broker_cleanup(&b);
}
END_TEST

/* The device fault policy: a handler traps mid-stream.  gpuqd must
 * complete every published message, with its result or GPUQ_EDEVICE (the
 * trapping one certainly GPUQ_EDEVICE), and exit with status 3. */
START_TEST(test_device_fault)
{
	char spec[700];
	const char *args[] = { "-q", spec, NULL };
	enum { WARM = 1000, N = 400, TRAP_AT = 200 };
	static uint64_t ids[N];
	struct broker_proc b;
	gpuq_client *c;
	gpuq_queue *q;
	uint8_t buf[64], out[16];
	int status, ok = 0, failed = 0;
	snprintf(spec, sizeof(spec),
		 "t,handler_module=%s,result_bytes=16,workers=2",
		 trap_module_path());
	ck_assert_msg(broker_start(&b, args) == 0, "gpuqd did not start with %s",
		      spec);
	ck_assert_int_eq(gpuq_connect(b.socket, &c), 0);
	q = open_queue(c, "t");
	memset(buf, 'x', sizeof(buf));
	for (int i = 0; i < WARM; i++) { /* the module works before the trap */
		uint64_t id;
		size_t got = 0;
		uint32_t v = 0;
		size_t len = 1 + (size_t)i % sizeof(buf);
		ck_assert_int_eq(gpuq_enqueue(q, buf, len, &id, WAIT_MS), 0);
		ck_assert_int_eq(gpuq_wait(q, id, out, sizeof(out), &got, WAIT_MS), 0);
		memcpy(&v, out, 4);
		ck_assert(got == 4 && v == len);
	}
	for (int i = 0; i < N; i++) {
		if (i == TRAP_AT)
			memcpy(buf, "TRAP", 4);
		ck_assert_int_eq(gpuq_enqueue(q, buf, sizeof(buf), &ids[i], WAIT_MS),
				 0);
		memset(buf, 'x', 4);
	}
	status = broker_stop(&b, 0, 10000); /* signal 0: wait for it to exit */
	ck_assert_msg(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 3,
		      "gpuqd did not exit with status 3 after the trap (%#x)", status);
	ck_assert(broker_log_contains(&b, "device fault"));
	for (int i = 0; i < N; i++) {
		size_t got = 0;
		int rc = gpuq_result(q, ids[i], out, sizeof(out), &got);
		ck_assert_msg(rc == 0 || rc == GPUQ_EDEVICE,
			      "message %d: %s (lost?)", i, gpuq_err_name(rc));
		if (i == TRAP_AT)
			ck_assert_int_eq(rc, GPUQ_EDEVICE);
		ok += rc == 0;
		failed += rc == GPUQ_EDEVICE;
	}
	ck_assert_int_eq(ok + failed, N);
	gpuq_close(q);
	gpuq_disconnect(c);
	broker_cleanup(&b);
}
END_TEST

/* The same policy on the lone path (design.md §10, step 5a): a stamped
 * queue and one message in flight at a time, so the probing warp runs
 * the trapping message alone, from shared memory, where no VRAM copy of
 * it exists.  Its producer must still get GPUQ_EDEVICE. */
START_TEST(test_device_fault_lone)
{
	char spec[700];
	const char *args[] = { "-q", spec, NULL };
	enum { WARM = 300 };
	struct broker_proc b;
	gpuq_client *c;
	gpuq_queue *q;
	uint8_t buf[64], out[16];
	uint64_t id;
	size_t got = 0;
	int status;
	snprintf(spec, sizeof(spec),
		 "t,handler_module=%s,result_bytes=16,workers=2,stamped=1,"
		 "stamped_results=1",
		 trap_module_path());
	ck_assert_msg(broker_start(&b, args) == 0, "gpuqd did not start with %s",
		      spec);
	ck_assert_int_eq(gpuq_connect(b.socket, &c), 0);
	q = open_queue(c, "t");
	memset(buf, 'x', sizeof(buf));
	for (int i = 0; i < WARM; i++) { /* lone messages, each its result */
		uint32_t v = 0;
		ck_assert_int_eq(gpuq_enqueue(q, buf, sizeof(buf), &id, WAIT_MS),
				 0);
		ck_assert_int_eq(gpuq_wait(q, id, out, sizeof(out), &got, WAIT_MS),
				 0);
		memcpy(&v, out, 4);
		ck_assert(got == 4 && v == sizeof(buf));
	}
	memcpy(buf, "TRAP", 4);
	ck_assert_int_eq(gpuq_enqueue(q, buf, sizeof(buf), &id, WAIT_MS), 0);
	status = broker_stop(&b, 0, 10000); /* signal 0: wait for it to exit */
	ck_assert_msg(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 3,
		      "gpuqd did not exit with status 3 after the trap (%#x)", status);
	ck_assert(broker_log_contains(&b, "device fault"));
	ck_assert_int_eq(gpuq_result(q, id, out, sizeof(out), &got), GPUQ_EDEVICE);
	gpuq_close(q);
	gpuq_disconnect(c);
	broker_cleanup(&b);
}
END_TEST

#ifdef HAVE_CUDA
/* The table in VRAM: rounds of 128 concurrent operations from four blocks
 * on 16 keys that share one window (so their buckets and locks), each
 * key's history checked for linearizability, as check_kvtable does for
 * host threads.  Each key's state carries over from round to round. */
#define KVT_ROUNDS 2000
START_TEST(test_table_linearizable)
{
	static struct lin_op ops[GPU_KVT_OPS];
	static int key[GPU_KVT_OPS];
	uint64_t state[GPU_KVT_KEYS] = { 0 }, final[GPU_KVT_KEYS];
	uint64_t checked = 0, writes_ok = 0;
	struct gpu_kvt *g = NULL;
	char err[256];
	ck_assert_msg(gpu_kvt_open(&g, err, sizeof(err)) == 0, "%s", err);
	for (uint32_t r = 0; r < KVT_ROUNDS; r++) {
		ck_assert_msg(gpu_kvt_round(g, r, ops, key, final, err,
					    sizeof(err)) == 0, "%s", err);
		for (int k = 0; k < GPU_KVT_KEYS; k++) {
			struct lin_op h[LIN_MAXOPS];
			int n = 0;
			for (int i = 0; i < GPU_KVT_OPS; i++)
				if (key[i] == k)
					h[n++] = ops[i];
			ck_assert_msg(lin_check(h, n, state[k], final[k]) == 1,
				      "round %u key %d: %d operations are not "
				      "linearizable", r, k, n);
			state[k] = final[k];
			checked += (uint64_t)n;
		}
		for (int i = 0; i < GPU_KVT_OPS; i++)
			writes_ok += ops[i].k != LIN_GET && ops[i].rc == 0;
	}
	gpu_kvt_close(g);
	ck_assert_uint_eq(checked, (uint64_t)KVT_ROUNDS * GPU_KVT_OPS);
	/* the histories are not all refusals */
	ck_assert_uint_gt(writes_ok, checked / 10);
	printf("table in VRAM: %llu operations in %d rounds linearizable\n",
	       (unsigned long long)checked, KVT_ROUNDS);
}
END_TEST

/* A GPU producer: payloads in device memory go into the VRAM ring through
 * the IPC handle and are committed with gpuq_commit_device; every result is
 * the payload's CRC32C.  A host producer on the same queue at the same time
 * must be unaffected. */
START_TEST(test_gpu_producer)
{
	const char *args[] = {
		"-q", "crc,handler=checksum,workers=4,capacity=16384", NULL
	};
	struct broker_proc b;
	gpuq_client *c;
	gpuq_queue *q;
	char err[256] = "";
	double rate = 0;
	uint8_t p[200], out[16];
	uint64_t id;
	size_t got;
	ck_assert_int_eq(broker_start(&b, args), 0);
	ck_assert_msg(gpu_producer_run(b.socket, "crc", 20000, 256, &rate, err,
				       sizeof(err)) == 0,
		      "GPU producer: %s", err);
	printf("GPU producer: 20000 messages, %.0f msg/s\n", rate);
	/* Host producers still work, and a host loan cannot be committed as
	 * a device one by mistake of the CPU backend: this queue is CUDA. */
	ck_assert_int_eq(gpuq_connect(b.socket, &c), 0);
	q = open_queue(c, "crc");
	ref_fill(p, sizeof(p), seed);
	ck_assert_int_eq(gpuq_enqueue(q, p, sizeof(p), &id, WAIT_MS), 0);
	ck_assert_int_eq(gpuq_wait(q, id, out, sizeof(out), &got, WAIT_MS), 0);
	ck_assert(ref_crc_result_ok(p, sizeof(p), 0, out, got));
	gpuq_close(q);
	gpuq_disconnect(c);
	ck_assert_int_eq(broker_stop(&b, SIGTERM, 10000), 0);
	broker_cleanup(&b);
}
END_TEST
#endif

/* 1 if gpuqd can run a CUDA queue on this machine. */
static int gpu_usable(void)
{
	const char *args[] = { "-q", "probe", NULL };
	struct broker_proc b;
	int ok;
	setenv("GPUQ_TEST_BACKEND", "cuda", 1);
	ok = broker_start(&b, args) == 0;
	/* Drain it, never SIGKILL it: under MPS a client killed while its
	 * persistent kernel runs is a fatal error for every client on the
	 * GPU, a concurrent gpuqd included (docs/runbook.md, MPS). */
	if (ok)
		broker_stop(&b, SIGTERM, 10000);
	broker_cleanup(&b);
	return ok;
}

static Suite *suite_gpu(void)
{
	Suite *s = suite_create("gpu");
	TCase *tc = tcase_create("cuda");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_builtins_match_cpu);
	tcase_add_test(tc, test_module_handler);
	tcase_add_test(tc, test_module_refused);
	tcase_add_test(tc, test_drain);
	tcase_add_test(tc, test_device_fault);
	tcase_add_test(tc, test_device_fault_lone);
	suite_add_tcase(s, tc);
#ifdef HAVE_CUDA
	tc = tcase_create("table");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_table_linearizable);
	suite_add_tcase(s, tc);
	/* its own case, so CK_RUN_CASE=producer runs it alone (under MPS) */
	tc = tcase_create("producer");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_gpu_producer);
	suite_add_tcase(s, tc);
#endif
	return s;
}

int main(void)
{
	SRunner *sr;
	int failed;
	if (!gpu_usable()) {
		printf("no usable CUDA device for gpuqd: GPU suite skipped\n");
		return 77;
	}
	seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
	printf("gpu suite seed %llu\n", (unsigned long long)seed);
	sr = srunner_create(suite_gpu());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
