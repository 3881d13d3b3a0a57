/*
 * fuzz_conf.c - libFuzzer target for the config-file parser
 * (broker/conf.c: config_load_buffer).  Built and run by
 * tests/fuzz/run-fuzz.sh.
 *
 * Any input may be refused; what must never happen is a crash, a leak,
 * undefined behaviour, or one of these properties failing (abort()):
 *   - the result is 0 or GPUQ_ECONFIG, and an error names "fuzz:LINE:";
 *   - a config that parses can be validated and printed;
 *   - a config that parses and validates prints as text that parses back
 *     to the same config, both from the defaults and on top of itself
 *     (a queue already in the config is not a duplicate section).
 */
#include "config.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "broker/conf.h"
#include "libclient/gpuq.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define TEXT_MAX (64u << 10) /* config_print of a full config is ~8 KiB */

static int null_fd = -1, text_fd = -1;
static char text[TEXT_MAX];
static size_t text_len;

static void fail(const char *what, const char *field)
{
	fprintf(stderr, "fuzz_conf: %s%s%s\n", what, field ? ": " : "",
		field ? field : "");
	if (text_len)
		fprintf(stderr, "printed config:\n%.*s\n", (int)text_len, text);
	abort();
}

static void open_fds(void)
{
	if (null_fd >= 0)
		return;
	null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
	text_fd = memfd_create("fuzz_conf", MFD_CLOEXEC);
	if (null_fd < 0 || text_fd < 0) {
		perror("fuzz_conf: open");
		abort();
	}
}

/* config_print() into text[]. */
static void print_to_text(const struct gpuqd_config *c)
{
	off_t end;
	ssize_t n;

	text_len = 0;
	if (ftruncate(text_fd, 0) || lseek(text_fd, 0, SEEK_SET))
		fail("cannot reset the memfd", NULL);
	config_print(c, text_fd);
	end = lseek(text_fd, 0, SEEK_CUR);
	if (end <= 0 || (size_t)end > sizeof(text))
		fail("config_print wrote nothing, or too much", NULL);
	n = pread(text_fd, text, (size_t)end, 0);
	if (n != end)
		fail("cannot read the memfd back", NULL);
	text_len = (size_t)n;
}

/* The first field where a and b differ, or NULL. */
static const char *differs(const struct gpuqd_config *a,
			   const struct gpuqd_config *b)
{
	if (memcmp(a->socket_path, b->socket_path, sizeof(a->socket_path)))
		return "socket";
	if (a->socket_mode != b->socket_mode)
		return "socket_mode";
	if (a->backend != b->backend)
		return "backend";
	if (a->force_epoll != b->force_epoll)
		return "force_epoll";
	if (a->max_connections != b->max_connections)
		return "max_connections";
	if (a->drain_timeout_ms != b->drain_timeout_ms)
		return "drain_timeout_ms";
	if (a->n_allow_uid != b->n_allow_uid ||
	    a->n_allow_uid > CONF_MAX_IDS ||
	    memcmp(a->allow_uid, b->allow_uid,
		   a->n_allow_uid * sizeof(a->allow_uid[0])))
		return "allow_uid";
	if (a->n_allow_gid != b->n_allow_gid ||
	    a->n_allow_gid > CONF_MAX_IDS ||
	    memcmp(a->allow_gid, b->allow_gid,
		   a->n_allow_gid * sizeof(a->allow_gid[0])))
		return "allow_gid";
	if (a->verbose != b->verbose)
		return "verbose";
	if (a->nqueues != b->nqueues || a->nqueues > CONF_MAX_QUEUES)
		return "nqueues";
	for (uint32_t i = 0; i < a->nqueues; i++) {
		const struct queue_config *p = &a->queues[i], *q = &b->queues[i];

		/* Names are zero-filled past the NUL, so whole arrays. */
		if (memcmp(p->name, q->name, sizeof(p->name)))
			return "queue name";
		if (memcmp(p->handler, q->handler, sizeof(p->handler)))
			return "queue handler";
		if (p->capacity != q->capacity)
			return "queue capacity";
		if (p->slot_bytes != q->slot_bytes)
			return "queue slot_bytes";
		if (p->result_bytes != q->result_bytes)
			return "queue result_bytes";
		if (p->cq_capacity != q->cq_capacity)
			return "queue cq_capacity";
		if (p->max_clients != q->max_clients)
			return "queue max_clients";
		if (p->workers != q->workers)
			return "queue workers";
		if (p->backend != q->backend)
			return "queue backend";
		/* Catches a field added to the struct but not above. */
		if (memcmp(p, q, sizeof(*p)))
			return "queue (a field not compared above)";
	}
	return NULL;
}

static void check_error(int rc, const char *err)
{
	if (rc != GPUQ_ECONFIG)
		fail("config_load_buffer returned an undocumented code", NULL);
	if (strncmp(err, "fuzz:", 5) != 0)
		fail("error message lacks its location", err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* Static: the structs are ~6 KiB each, and libFuzzer runs one input
	 * at a time. */
	static struct gpuqd_config a, b;
	char err[512];
	const char *diff;
	int rc;

	open_fds();
	text_len = 0;
	config_defaults(&a);
	err[0] = '\0';
	rc = config_load_buffer(&a, (const char *)data, size, "fuzz", err,
				sizeof(err));
	if (rc) {
		check_error(rc, err);
		return 0;
	}
	/* Parsed: validating and printing must be safe whatever it holds. */
	rc = config_validate(&a, err, sizeof(err));
	config_print(&a, null_fd);
	if (rc)
		return 0;

	/* Round trip from the defaults. */
	print_to_text(&a);
	config_defaults(&b);
	rc = config_load_buffer(&b, text, text_len, "fuzz", err, sizeof(err));
	if (rc)
		fail("printed config does not parse", err);
	diff = differs(&a, &b);
	if (diff)
		fail("printed config parses differently", diff);
	if (config_validate(&b, err, sizeof(err)))
		fail("printed config does not validate", err);

	/* And on top of itself: every queue is already there. */
	b = a;
	rc = config_load_buffer(&b, text, text_len, "fuzz", err, sizeof(err));
	if (rc)
		fail("printed config does not load on top of itself", err);
	diff = differs(&a, &b);
	if (diff)
		fail("printed config loaded on top of itself changes it", diff);
	return 0;
}
