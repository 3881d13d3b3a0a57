/* check_config.c - the config file parser, config_set(), --queue specs,
 * validation and config_print() round trips. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker/conf.h"
#include "libclient/gpuq.h"
#include "tests/runner.h"

#define ORIGIN "t.conf"

/* Comments, blanks, CRLF and odd spacing on purpose: they are part of the
 * format being tested. */
static const char good_conf[] =
	"# gpuqd test config\n"
	"; a semicolon comment\n"
	"\n"
	"[broker]\n"
	"socket = /run/gpuq/test.sock   # inline comment\n"
	"socket_mode=0640\n"
	"  backend   =   cpu  \n"
	"force_epoll = yes\r\n"
	"max_connections = 100\n"
	"drain_timeout_ms = 2500\n"
	"allow_uid = 1000, 0,42\n"
	"allow_gid = 100\n"
	"verbose = 2\n"
	"\n"
	"[queue q1]\n"
	"capacity = 1024\n"
	"slot_bytes = 512\n"
	"result_bytes = 4\n"
	"cq_capacity = 256\n"
	"max_clients = 8\n"
	"workers = 4\n"
	"handler = checksum\n"
	"backend = cuda\n"
	"\n"
	"[ queue   jobs.v2-x_ ]\n"
	"handler = vector # sums\n";

static int load(struct gpuqd_config *c, const char *text, char *err,
		size_t cap)
{
	config_defaults(c);
	err[0] = '\0';
	return config_load_buffer(c, text, strlen(text), ORIGIN, err, cap);
}

static void check_good(const struct gpuqd_config *c)
{
	const struct queue_config *q1 = &c->queues[0], *q2 = &c->queues[1];

	ck_assert_str_eq(c->socket_path, "/run/gpuq/test.sock");
	ck_assert_uint_eq(c->socket_mode, 0640);
	ck_assert_int_eq(c->backend, CONF_BACKEND_CPU);
	ck_assert_int_eq(c->force_epoll, 1);
	ck_assert_uint_eq(c->max_connections, 100);
	ck_assert_uint_eq(c->drain_timeout_ms, 2500);
	ck_assert_uint_eq(c->n_allow_uid, 3);
	ck_assert_uint_eq(c->allow_uid[0], 1000);
	ck_assert_uint_eq(c->allow_uid[1], 0);
	ck_assert_uint_eq(c->allow_uid[2], 42);
	ck_assert_uint_eq(c->n_allow_gid, 1);
	ck_assert_uint_eq(c->allow_gid[0], 100);
	ck_assert_int_eq(c->verbose, 2);
	ck_assert_uint_eq(c->nqueues, 2);

	ck_assert_str_eq(q1->name, "q1");
	ck_assert_uint_eq(q1->capacity, 1024);
	ck_assert_uint_eq(q1->slot_bytes, 512);
	ck_assert_uint_eq(q1->result_bytes, 4);
	ck_assert_uint_eq(q1->cq_capacity, 256);
	ck_assert_uint_eq(q1->max_clients, 8);
	ck_assert_uint_eq(q1->workers, 4);
	ck_assert_str_eq(q1->handler, "checksum");
	ck_assert_int_eq(q1->backend, CONF_BACKEND_CUDA);

	/* Only the handler was set: the rest must be the defaults. */
	ck_assert_str_eq(q2->name, "jobs.v2-x_");
	ck_assert_str_eq(q2->handler, "vector");
	ck_assert_uint_eq(q2->capacity, 4096);
	ck_assert_uint_eq(q2->slot_bytes, 256);
	ck_assert_uint_eq(q2->result_bytes, 0);
	ck_assert_uint_eq(q2->cq_capacity, 0);
	ck_assert_uint_eq(q2->max_clients, 64);
	ck_assert_uint_eq(q2->workers, 1);
	ck_assert_int_eq(q2->backend, -1);
}

START_TEST(test_defaults)
{
	struct gpuqd_config c;
	struct queue_config q;

	memset(&c, 0xa5, sizeof(c));
	config_defaults(&c);
	ck_assert_str_eq(c.socket_path, "");
	ck_assert_uint_eq(c.socket_mode, 0660);
	ck_assert_int_eq(c.backend, CONF_BACKEND_AUTO);
	ck_assert_int_eq(c.force_epoll, 0);
	ck_assert_uint_eq(c.max_connections, 256);
	ck_assert_uint_eq(c.drain_timeout_ms, 10000);
	ck_assert_uint_eq(c.n_allow_uid, 0);
	ck_assert_uint_eq(c.n_allow_gid, 0);
	ck_assert_int_eq(c.verbose, 0);
	ck_assert_uint_eq(c.nqueues, 0);

	config_queue_defaults(&q, "dq");
	ck_assert_str_eq(q.name, "dq");
	ck_assert_str_eq(q.handler, "echo");
	ck_assert_uint_eq(q.capacity, 4096);
	ck_assert_uint_eq(q.slot_bytes, 256);
	ck_assert_uint_eq(q.result_bytes, 0);
	ck_assert_uint_eq(q.cq_capacity, 0);
	ck_assert_uint_eq(q.max_clients, 64);
	ck_assert_uint_eq(q.workers, 1);
	ck_assert_int_eq(q.backend, -1);
}
END_TEST

START_TEST(test_good_buffer)
{
	struct gpuqd_config c;
	char err[256];

	ck_assert_int_eq(load(&c, good_conf, err, sizeof(err)), 0);
	ck_assert_str_eq(err, "");
	check_good(&c);
	ck_assert_int_eq(config_validate(&c, err, sizeof(err)), 0);
}
END_TEST

START_TEST(test_good_file)
{
	char path[] = "/tmp/check_config.XXXXXX";
	struct gpuqd_config c;
	char err[256];
	int fd = mkstemp(path);
	size_t len = strlen(good_conf);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, good_conf, len), (ssize_t)len);
	close(fd);
	config_defaults(&c);
	ck_assert_int_eq(config_load_file(&c, path, err, sizeof(err)), 0);
	unlink(path);
	check_good(&c);
}
END_TEST

START_TEST(test_missing_file)
{
	const char *path = "/nonexistent/gpuq/check_config.conf";
	struct gpuqd_config c;
	char err[256] = "";

	config_defaults(&c);
	ck_assert_int_eq(config_load_file(&c, path, err, sizeof(err)),
			 -ENOENT);
	ck_assert_ptr_nonnull(strstr(err, path));
	ck_assert_uint_eq(c.nqueues, 0);
}
END_TEST

/* The documented example message, to the letter. */
START_TEST(test_error_exact)
{
	struct gpuqd_config c;
	char err[256];
	int rc = load(&c, "[broker]\n# x\n\n[queue q1]\ncapacty = 8\n", err,
		      sizeof(err));

	ck_assert_int_eq(rc, GPUQ_ECONFIG);
	ck_assert_str_eq(err, ORIGIN ":5: unknown key 'capacty' in [queue q1]");
}
END_TEST

struct bad_case {
	const char *text;
	unsigned int line;
	const char *what; /* must appear in the message */
};

static const struct bad_case bad_cases[] = {
	/* unknown sections */
	{ "[broker]\nverbose = 1\n[brokr]\n", 3, "unknown section [brokr]" },
	{ "# c\n[queue]\n", 2, "needs a name" },
	{ "[broker\n", 1, "']'" },
	/* unknown keys */
	{ "[broker]\n\nverbos = 1\n", 3, "unknown key 'verbos' in [broker]" },
	{ "[queue a]\nsocket = /x\n", 2, "unknown key 'socket' in [queue a]" },
	/* malformed lines and keys outside sections */
	{ "[broker]\nverbose\n", 2, "key = value" },
	{ "[broker]\n = 3\n", 2, "missing key" },
	{ "verbose = 1\n[broker]\n", 1, "before any [section]" },
	{ "[broker]\r\n; c\r\nverbose 1\r\n", 3, "key = value" },
	/* duplicate queue sections */
	{ "[queue a]\n[queue b]\n\n[queue a]\n", 4, "duplicate section [queue a]" },
	/* bad queue names */
	{ "[queue a/b]\n", 1, "bad queue name 'a/b'" },
	{ "[queue a b]\n", 1, "bad queue name" },
	{ "[queue "
	  "0123456789012345678901234567890123456789012345678901234567890123]\n",
	  1, "bad queue name" },
	/* bad values */
	{ "[queue a]\ncapacity = 1000\n", 2, "bad capacity '1000'" },
	{ "[queue a]\ncapacity = 1\n", 2, "bad capacity" },
	{ "[queue a]\ncapacity = 32M\n", 2, "bad capacity" },
	{ "[queue a]\ncapacity = 99999999999999999999999\n", 2, "bad capacity" },
	{ "[queue a]\nslot_bytes = 0\n", 2, "bad slot_bytes" },
	{ "[queue a]\nslot_bytes = -1\n", 2, "bad slot_bytes" },
	{ "[queue a]\nslot_bytes = 12x\n", 2, "bad slot_bytes" },
	{ "[queue a]\nslot_bytes = 4kk\n", 2, "bad slot_bytes" },
	{ "[queue a]\nslot_bytes = 17M\n", 2, "bad slot_bytes" },
	{ "[queue a]\nslot_bytes =\n", 2, "bad slot_bytes" },
	{ "[queue a]\ncq_capacity = 3\n", 2, "bad cq_capacity" },
	{ "[queue a]\nmax_clients = 65536\n", 2, "bad max_clients" },
	{ "[queue a]\nmax_clients = 1k\n", 2, "bad max_clients" },
	{ "[queue a]\nworkers = 0\n", 2, "bad workers" },
	{ "[queue a]\nworkers = 129\n", 2, "bad workers" },
	{ "[queue a]\nhandler = nope\n", 2, "unknown handler 'nope'" },
	{ "[queue a]\nbackend = gpu\n", 2, "bad backend 'gpu'" },
	{ "[broker]\nsocket_mode = 0800\n", 2, "bad socket_mode" },
	{ "[broker]\nsocket_mode = 017777\n", 2, "bad socket_mode" },
	{ "[broker]\nforce_epoll = maybe\n", 2, "bad force_epoll" },
	{ "[broker]\nverbose = 4\n", 2, "bad verbose" },
	{ "[broker]\nmax_connections = 0\n", 2, "bad max_connections" },
	{ "[broker]\ndrain_timeout_ms = 4294967296\n", 2, "bad drain_timeout_ms" },
	{ "[broker]\nallow_uid = 1,,2\n", 2, "bad allow_uid" },
	{ "[broker]\nallow_gid = -5\n", 2, "bad allow_gid" },
	{ "[broker]\nallow_uid = 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17\n",
	  2, "bad allow_uid" },
	{ "[broker]\nsocket = \n", 2, "bad socket" },
};

START_TEST(test_errors)
{
	const struct bad_case *bc = &bad_cases[_i];
	struct gpuqd_config c;
	char err[512], prefix[32];
	int rc = load(&c, bc->text, err, sizeof(err));

	snprintf(prefix, sizeof(prefix), ORIGIN ":%u: ", bc->line);
	ck_assert_msg(rc == GPUQ_ECONFIG, "case %d: rc %d", _i, rc);
	ck_assert_msg(!strncmp(err, prefix, strlen(prefix)),
		      "case %d: '%s' does not start with '%s'", _i, err, prefix);
	ck_assert_msg(strstr(err, bc->what), "case %d: '%s' lacks '%s'", _i,
		      err, bc->what);
}
END_TEST

START_TEST(test_too_many_queues)
{
	struct gpuqd_config c;
	char text[4096], err[256], prefix[32];
	size_t used = 0;

	/* Two lines per queue, so queue number CONF_MAX_QUEUES + 1 (0-based
	 * CONF_MAX_QUEUES) starts on line 2 * CONF_MAX_QUEUES + 1. */
	for (int i = 0; i <= CONF_MAX_QUEUES; i++)
		used += (size_t)snprintf(text + used, sizeof(text) - used,
					 "[queue q%d]\nworkers = 2\n", i);
	ck_assert_uint_lt(used, sizeof(text));
	ck_assert_int_eq(load(&c, text, err, sizeof(err)), GPUQ_ECONFIG);
	snprintf(prefix, sizeof(prefix), ORIGIN ":%d: ",
		 2 * CONF_MAX_QUEUES + 1);
	ck_assert_msg(!strncmp(err, prefix, strlen(prefix)), "got '%s'", err);
	ck_assert_ptr_nonnull(strstr(err, "too many queues"));
	ck_assert_uint_eq(c.nqueues, CONF_MAX_QUEUES);
}
END_TEST

START_TEST(test_nul_and_long_lines)
{
	static const char nul[] = "[broker]\nverb\0ose = 1\n";
	struct gpuqd_config c;
	char text[2100], err[256];

	config_defaults(&c);
	ck_assert_int_eq(config_load_buffer(&c, nul, sizeof(nul) - 1, ORIGIN,
					    err, sizeof(err)),
			 GPUQ_ECONFIG);
	ck_assert_msg(!strncmp(err, ORIGIN ":2: ", 9), "got '%s'", err);

	memset(text, 0, sizeof(text));
	strcpy(text, "[broker]\n# ");
	memset(text + strlen(text), 'x', 2000);
	ck_assert_int_eq(load(&c, text, err, sizeof(err)), GPUQ_ECONFIG);
	ck_assert_msg(!strncmp(err, ORIGIN ":2: ", 9), "got '%s'", err);
}
END_TEST

/* A second buffer may add to a queue the first declared ("on top"), and a
 * file without a trailing newline still has its last line read. */
START_TEST(test_load_on_top)
{
	static const char second[] = "[queue a]\nmax_clients = 5";
	struct gpuqd_config c;
	char err[256];

	ck_assert_int_eq(load(&c, "[queue a]\nworkers = 3\n", err,
			      sizeof(err)), 0);
	ck_assert_int_eq(config_load_buffer(&c, second, sizeof(second) - 1,
					    "two", err, sizeof(err)),
			 0);
	ck_assert_uint_eq(c.nqueues, 1);
	ck_assert_uint_eq(c.queues[0].workers, 3);
	ck_assert_uint_eq(c.queues[0].max_clients, 5);

	ck_assert_int_eq(config_load_buffer(&c, "", 0, "empty", err,
					    sizeof(err)), 0);
	ck_assert_int_eq(config_load_buffer(&c, NULL, 0, "null", err,
					    sizeof(err)), 0);
	ck_assert_uint_eq(c.nqueues, 1);
}
END_TEST

struct num_case {
	const char *value;
	uint32_t want;
};

static const struct num_case num_cases[] = {
	{ "1", 1 },           { "0100", 100 },     { "4k", 4096 },
	{ "4K", 4096 },       { "1m", 1048576 },   { "3M", 3145728 },
	{ "16M", 16777216 },  { "16384k", 16777216 },
};

START_TEST(test_suffixes)
{
	static const char *const bad[] = { "k", "1.5k", "0x10", "+4", "4 k",
					   "4kb", "16777217", "16385k" };
	struct gpuqd_config c;
	char err[256];

	config_defaults(&c);
	for (size_t i = 0; i < sizeof(num_cases) / sizeof(num_cases[0]); i++) {
		ck_assert_int_eq(config_set(&c, "n", "slot_bytes",
					    num_cases[i].value, err,
					    sizeof(err)),
				 0);
		ck_assert_uint_eq(c.queues[0].slot_bytes, num_cases[i].want);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_msg(config_set(&c, "n", "slot_bytes", bad[i], err,
					 sizeof(err)) == GPUQ_ECONFIG,
			      "'%s' accepted", bad[i]);
		/* A refused value leaves the old one. */
		ck_assert_uint_eq(c.queues[0].slot_bytes, 16777216);
	}
	ck_assert_int_eq(config_set(&c, "n", "capacity", "64k", err,
				    sizeof(err)), 0);
	ck_assert_uint_eq(c.queues[0].capacity, 65536);
	ck_assert_int_eq(config_set(&c, "n", "cq_capacity", "2K", err,
				    sizeof(err)), 0);
	ck_assert_uint_eq(c.queues[0].cq_capacity, 2048);
	/* Counts are not sizes: no suffixes there. */
	ck_assert_int_eq(config_set(&c, "n", "workers", "1k", err,
				    sizeof(err)), GPUQ_ECONFIG);
	ck_assert_int_eq(config_set(&c, NULL, "max_connections", "1k", err,
				    sizeof(err)), GPUQ_ECONFIG);
	/* socket_mode is octal with or without the leading 0. */
	ck_assert_int_eq(config_set(&c, NULL, "socket_mode", "750", err,
				    sizeof(err)), 0);
	ck_assert_uint_eq(c.socket_mode, 0750);
}
END_TEST

START_TEST(test_config_set)
{
	struct gpuqd_config c;
	char err[256];

	config_defaults(&c);
	ck_assert_int_eq(config_set(&c, "q1", "capacty", "8", err,
				    sizeof(err)), GPUQ_ECONFIG);
	ck_assert_str_eq(err, "unknown key 'capacty' in [queue q1]");
	/* Failed settings do not leave a half-made queue behind. */
	ck_assert_uint_eq(c.nqueues, 0);
	ck_assert_int_eq(config_set(&c, "q1", "capacity", "7", err,
				    sizeof(err)), GPUQ_ECONFIG);
	ck_assert_uint_eq(c.nqueues, 0);
	ck_assert_int_eq(config_set(&c, "bad name", "capacity", "8", err,
				    sizeof(err)), GPUQ_ECONFIG);
	ck_assert_int_eq(config_set(&c, NULL, "nope", "1", err, sizeof(err)),
			 GPUQ_ECONFIG);
	ck_assert_str_eq(err, "unknown key 'nope' in [broker]");

	ck_assert_int_eq(config_set(&c, "q1", "capacity", "8", err,
				    sizeof(err)), 0);
	ck_assert_uint_eq(c.nqueues, 1);
	ck_assert_uint_eq(c.queues[0].capacity, 8);
	ck_assert_int_eq(config_set(&c, NULL, "force_epoll", "TRUE", NULL, 0),
			 0);
	ck_assert_int_eq(c.force_epoll, 1);
	ck_assert_int_eq(config_set(&c, NULL, "force_epoll", "0", NULL, 0), 0);
	ck_assert_int_eq(c.force_epoll, 0);
	ck_assert_int_eq(config_set(&c, NULL, "backend", "cuda", NULL, 0), 0);
	ck_assert_int_eq(c.backend, CONF_BACKEND_CUDA);
	/* A later allow_uid replaces the list rather than appending. */
	ck_assert_int_eq(config_set(&c, NULL, "allow_uid", "1,2", NULL, 0), 0);
	ck_assert_int_eq(config_set(&c, NULL, "allow_uid", "7", NULL, 0), 0);
	ck_assert_uint_eq(c.n_allow_uid, 1);
	ck_assert_uint_eq(c.allow_uid[0], 7);
}
END_TEST

START_TEST(test_queue_spec)
{
	struct gpuqd_config c;
	char err[256];

	config_defaults(&c);
	ck_assert_int_eq(config_queue_spec(&c,
			 "jobs,capacity=1k, handler = checksum,workers=4,backend=cpu",
			 err, sizeof(err)), 0);
	ck_assert_uint_eq(c.nqueues, 1);
	ck_assert_str_eq(c.queues[0].name, "jobs");
	ck_assert_uint_eq(c.queues[0].capacity, 1024);
	ck_assert_str_eq(c.queues[0].handler, "checksum");
	ck_assert_uint_eq(c.queues[0].workers, 4);
	ck_assert_int_eq(c.queues[0].backend, CONF_BACKEND_CPU);
	ck_assert_uint_eq(c.queues[0].slot_bytes, 256);

	/* A bare name makes a queue of defaults. */
	ck_assert_int_eq(config_queue_spec(&c, "plain", err, sizeof(err)), 0);
	ck_assert_uint_eq(c.nqueues, 2);
	ck_assert_str_eq(c.queues[1].name, "plain");
	ck_assert_str_eq(c.queues[1].handler, "echo");

	/* Naming an existing queue changes it. */
	ck_assert_int_eq(config_queue_spec(&c, "jobs,workers=2", err,
					   sizeof(err)), 0);
	ck_assert_uint_eq(c.nqueues, 2);
	ck_assert_uint_eq(c.queues[0].workers, 2);
	ck_assert_uint_eq(c.queues[0].capacity, 1024);

	/* All or nothing: a bad item after good ones changes nothing. */
	ck_assert_int_eq(config_queue_spec(&c, "new,workers=3,bogus=1", err,
					   sizeof(err)), GPUQ_ECONFIG);
	ck_assert_str_eq(err, "unknown key 'bogus' in [queue new]");
	ck_assert_int_eq(config_queue_spec(&c, "jobs,workers=3,capacity=3",
					   err, sizeof(err)), GPUQ_ECONFIG);
	ck_assert_uint_eq(c.nqueues, 2);
	ck_assert_uint_eq(c.queues[0].workers, 2);

	ck_assert_int_eq(config_queue_spec(&c, "jobs,workers", err,
					   sizeof(err)), GPUQ_ECONFIG);
	ck_assert_ptr_nonnull(strstr(err, "key=value"));
	ck_assert_int_eq(config_queue_spec(&c, "jobs,", err, sizeof(err)),
			 GPUQ_ECONFIG);
	ck_assert_int_eq(config_queue_spec(&c, "", err, sizeof(err)),
			 GPUQ_ECONFIG);
	ck_assert_int_eq(config_queue_spec(&c, "a*b,workers=1", err,
					   sizeof(err)), GPUQ_ECONFIG);
	ck_assert_ptr_nonnull(strstr(err, "bad queue name"));
	ck_assert_uint_eq(c.nqueues, 2);
}
END_TEST

static void one_queue(struct gpuqd_config *c, const char *name)
{
	config_defaults(c);
	ck_assert_int_eq(config_queue_spec(c, name, NULL, 0), 0);
	ck_assert_int_eq(config_validate(c, NULL, 0), 0);
}

START_TEST(test_validate_handler)
{
	struct gpuqd_config c;
	char err[256];

	one_queue(&c, "vq");
	strcpy(c.queues[0].handler, "nope");
	ck_assert_int_eq(config_validate(&c, err, sizeof(err)), GPUQ_ECONFIG);
	ck_assert_ptr_nonnull(strstr(err, "queue 'vq'"));
	ck_assert_ptr_nonnull(strstr(err, "handler 'nope'"));
}
END_TEST

START_TEST(test_validate_capacity)
{
	struct gpuqd_config c;
	char err[256];

	one_queue(&c, "vq");
	c.queues[0].capacity = 1000;
	ck_assert_int_eq(config_validate(&c, err, sizeof(err)), GPUQ_ECONFIG);
	ck_assert_ptr_nonnull(strstr(err, "queue 'vq'"));
	ck_assert_ptr_nonnull(strstr(err, "capacity 1000"));

	c.queues[0].capacity = 1024;
	c.queues[0].cq_capacity = 100;
	ck_assert_int_eq(config_validate(&c, err, sizeof(err)), GPUQ_ECONFIG);
	ck_assert_ptr_nonnull(strstr(err, "cq_capacity 100"));
	c.queues[0].cq_capacity = 128;
	ck_assert_int_eq(config_validate(&c, err, sizeof(err)), 0);
}
END_TEST

START_TEST(test_validate_result_bytes)
{
	struct gpuqd_config c;
	char err[256];

	/* echo returns the payload, so it needs result_bytes >= slot_bytes;
	 * config_set takes the value, only validate sees both fields. */
	one_queue(&c, "eq");
	ck_assert_int_eq(config_queue_spec(&c, "eq,slot_bytes=256,result_bytes=255",
					   err, sizeof(err)), 0);
	ck_assert_int_eq(config_validate(&c, err, sizeof(err)), GPUQ_ECONFIG);
	ck_assert_ptr_nonnull(strstr(err, "queue 'eq'"));
	ck_assert_ptr_nonnull(strstr(err, "result_bytes"));

	c.queues[0].result_bytes = 256;
	ck_assert_int_eq(config_validate(&c, err, sizeof(err)), 0);

	ck_assert_int_eq(config_queue_spec(&c, "cs,handler=checksum,result_bytes=3",
					   err, sizeof(err)), 0);
	ck_assert_int_eq(config_validate(&c, err, sizeof(err)), GPUQ_ECONFIG);
	ck_assert_ptr_nonnull(strstr(err, "queue 'cs'"));
	c.queues[1].result_bytes = 4;
	ck_assert_int_eq(config_validate(&c, err, sizeof(err)), 0);
}
END_TEST

/* Hash tables: what needs one has one; exactly-once only where it works. */
START_TEST(test_validate_tables)
{
	struct gpuqd_config c;
	char err[256];

	one_queue(&c, "ks");
	ck_assert_int_eq(config_queue_spec(&c, "ks,handler=keysum", err,
					   sizeof(err)), 0);
	ck_assert_int_eq(config_validate(&c, err, sizeof(err)), GPUQ_ECONFIG);
	ck_assert_ptr_nonnull(strstr(err, "table_slots"));
	ck_assert_int_eq(config_queue_spec(&c, "ks,table_slots=1k,table_value_bytes=8",
					   err, sizeof(err)), 0);
	ck_assert_int_eq(config_validate(&c, err, sizeof(err)), GPUQ_ECONFIG);
	ck_assert_ptr_nonnull(strstr(err, "table_value_bytes"));
	ck_assert_int_eq(config_queue_spec(&c, "ks,table_value_bytes=16", err,
					   sizeof(err)), 0);
	ck_assert_int_eq(config_validate(&c, err, sizeof(err)), 0);
	ck_assert_uint_eq(c.queues[0].table_slots, 1024);
	ck_assert_uint_eq(c.queues[0].dedupe_window_ms, 600000);

	/* both backends have the tables */
	ck_assert_int_eq(config_queue_spec(&c, "ks,exactly_once=yes,backend=cuda",
					   err, sizeof(err)), 0);
	ck_assert_int_eq(config_validate(&c, err, sizeof(err)), 0);
	ck_assert_int_eq(config_queue_spec(&c, "ks,backend=cpu,redis_stream=in",
					   err, sizeof(err)), 0);
	ck_assert_int_eq(config_validate(&c, err, sizeof(err)), 0);
	ck_assert_int_eq(config_queue_spec(&c, "ks,ordered=yes", err,
					   sizeof(err)), 0);
	ck_assert_int_eq(config_validate(&c, err, sizeof(err)), GPUQ_ECONFIG);
	ck_assert_ptr_nonnull(strstr(err, "ordered"));
	c.queues[0].ordered = 0;
	c.queues[0].redis.stream[0] = '\0';
	ck_assert_int_eq(config_validate(&c, err, sizeof(err)), 0);
	/* out of range */
	ck_assert_int_eq(config_queue_spec(&c, "ks,table_value_bytes=8k", err,
					   sizeof(err)), GPUQ_ECONFIG);
}
END_TEST

START_TEST(test_validate_names)
{
	struct gpuqd_config c;
	char err[256];

	one_queue(&c, "dup");
	c.queues[1] = c.queues[0];
	c.nqueues = 2;
	ck_assert_int_eq(config_validate(&c, err, sizeof(err)), GPUQ_ECONFIG);
	ck_assert_ptr_nonnull(strstr(err, "queue 'dup'"));

	c.nqueues = 1;
	strcpy(c.queues[0].name, "no/slash");
	ck_assert_int_eq(config_validate(&c, err, sizeof(err)), GPUQ_ECONFIG);
}
END_TEST

static size_t print_to_buf(const struct gpuqd_config *c, char *buf, size_t cap)
{
	FILE *f = tmpfile();
	ssize_t n;

	ck_assert_ptr_nonnull(f);
	config_print(c, fileno(f));
	ck_assert_int_eq(lseek(fileno(f), 0, SEEK_SET), 0);
	n = read(fileno(f), buf, cap - 1);
	fclose(f);
	ck_assert_int_gt(n, 0);
	ck_assert_int_lt(n, (ssize_t)cap - 1);
	buf[n] = '\0';
	return (size_t)n;
}

static void assert_same(const struct gpuqd_config *a,
			const struct gpuqd_config *b)
{
	ck_assert_str_eq(a->socket_path, b->socket_path);
	ck_assert_uint_eq(a->socket_mode, b->socket_mode);
	ck_assert_int_eq(a->backend, b->backend);
	ck_assert_int_eq(a->force_epoll, b->force_epoll);
	ck_assert_uint_eq(a->max_connections, b->max_connections);
	ck_assert_uint_eq(a->drain_timeout_ms, b->drain_timeout_ms);
	ck_assert_uint_eq(a->n_allow_uid, b->n_allow_uid);
	ck_assert_uint_eq(a->n_allow_gid, b->n_allow_gid);
	for (uint32_t i = 0; i < a->n_allow_uid; i++)
		ck_assert_uint_eq(a->allow_uid[i], b->allow_uid[i]);
	for (uint32_t i = 0; i < a->n_allow_gid; i++)
		ck_assert_uint_eq(a->allow_gid[i], b->allow_gid[i]);
	ck_assert_int_eq(a->verbose, b->verbose);
	ck_assert_uint_eq(a->nqueues, b->nqueues);
	for (uint32_t i = 0; i < a->nqueues; i++) {
		const struct queue_config *p = &a->queues[i], *q = &b->queues[i];

		ck_assert_str_eq(p->name, q->name);
		ck_assert_str_eq(p->handler, q->handler);
		ck_assert_uint_eq(p->capacity, q->capacity);
		ck_assert_uint_eq(p->slot_bytes, q->slot_bytes);
		ck_assert_uint_eq(p->result_bytes, q->result_bytes);
		ck_assert_uint_eq(p->cq_capacity, q->cq_capacity);
		ck_assert_uint_eq(p->max_clients, q->max_clients);
		ck_assert_uint_eq(p->workers, q->workers);
		ck_assert_int_eq(p->backend, q->backend);
	}
	/* Field by field above names what differs; this catches a field
	 * added to the struct but not to the lists above. */
	ck_assert_int_eq(memcmp(a, b, sizeof(*a)), 0);
}

static void round_trip(const struct gpuqd_config *a)
{
	struct gpuqd_config b;
	char text[16384], err[256];
	size_t n = print_to_buf(a, text, sizeof(text));

	config_defaults(&b);
	ck_assert_msg(config_load_buffer(&b, text, n, "printed", err,
					 sizeof(err)) == 0,
		      "%s in:\n%s", err, text);
	assert_same(a, &b);
}

START_TEST(test_round_trip)
{
	struct gpuqd_config a;
	char err[256];

	/* Defaults print and read back as defaults. */
	config_defaults(&a);
	round_trip(&a);

	ck_assert_int_eq(load(&a, good_conf, err, sizeof(err)), 0);
	ck_assert_int_eq(config_queue_spec(&a, "big,capacity=16M,slot_bytes=1,"
					   "result_bytes=16M,max_clients=65534,"
					   "workers=128,backend=auto",
					   err, sizeof(err)), 0);
	ck_assert_int_eq(config_set(&a, NULL, "socket_mode", "0", err,
				    sizeof(err)), 0);
	round_trip(&a);

	/* And a full house of queues. */
	config_defaults(&a);
	for (int i = 0; i < CONF_MAX_QUEUES; i++) {
		char spec[64];

		snprintf(spec, sizeof(spec), "q%d,capacity=%u", i, 2u << (i % 20));
		ck_assert_int_eq(config_queue_spec(&a, spec, err, sizeof(err)),
				 0);
	}
	round_trip(&a);
}
END_TEST

/* Track A's keys (docs/tracka.md): defaults, every key set, ranges, and
 * the round trip through --print-config. */
START_TEST(test_redis_keys)
{
	static const char *const bad[] = {
		"r,redis_port=0", "r,redis_port=65536", "r,redis_batch=0",
		"r,redis_batch=65537", "r,redis_claim_idle_ms=9",
		"r,redis_block_ms=60001", "r,redis_max_deliveries=0",
		"r,redis_stream=a#b", "r,redis_host=",
		"r,redis_result_batch=0", "r,redis_result_batch=1025",
	};
	struct gpuqd_config a;
	const struct tracka_config *t;
	char err[256];

	config_defaults(&a);
	ck_assert_int_eq(config_queue_spec(&a, "plain", err, sizeof(err)), 0);
	t = &a.queues[0].redis;
	ck_assert_str_eq(t->stream, ""); /* not bound */
	ck_assert_uint_eq(t->port, 6379);
	ck_assert_uint_eq(t->batch, 256);
	ck_assert_uint_eq(t->result_batch, 1);
	ck_assert_uint_eq(t->block_ms, 100);
	ck_assert_uint_eq(t->max_deliveries, 5);
	ck_assert_uint_eq(t->claim_idle_ms, 30000);
	ck_assert_int_eq(config_queue_spec(&a,
		"bound,redis_host=10.0.0.5,redis_port=7000,redis_password=s3cr:t,"
		"redis_stream=jobs,redis_group=g1,redis_consumer=host-1,"
		"redis_result_stream=out,redis_dlq_stream=dead,redis_batch=64,"
		"redis_block_ms=0,redis_max_deliveries=9,redis_claim_idle_ms=1500,"
		"redis_result_batch=128",
		err, sizeof(err)), 0);
	t = &a.queues[1].redis;
	ck_assert_str_eq(t->host, "10.0.0.5");
	ck_assert_uint_eq(t->port, 7000);
	ck_assert_str_eq(t->password, "s3cr:t");
	ck_assert_str_eq(t->stream, "jobs");
	ck_assert_str_eq(t->group, "g1");
	ck_assert_str_eq(t->consumer, "host-1");
	ck_assert_str_eq(t->result_stream, "out");
	ck_assert_str_eq(t->dlq_stream, "dead");
	ck_assert_uint_eq(t->batch, 64);
	ck_assert_uint_eq(t->result_batch, 128);
	ck_assert_uint_eq(t->block_ms, 0);
	ck_assert_uint_eq(t->max_deliveries, 9);
	ck_assert_uint_eq(t->claim_idle_ms, 1500);
	ck_assert_int_eq(config_validate(&a, err, sizeof(err)), 0);
	round_trip(&a);
	/* Writing results or dead letters into the input stream is refused
	 * at validation. */
	ck_assert_int_eq(config_queue_spec(&a, "loop,redis_stream=s,"
					   "redis_result_stream=s", err,
					   sizeof(err)), 0);
	ck_assert_int_eq(config_validate(&a, err, sizeof(err)), GPUQ_ECONFIG);
	ck_assert_ptr_nonnull(strstr(err, "must differ from redis_stream"));
	ck_assert_int_eq(config_queue_spec(&a, "loop,redis_result_stream=r,"
					   "redis_dlq_stream=s", err,
					   sizeof(err)), 0);
	ck_assert_int_eq(config_validate(&a, err, sizeof(err)), GPUQ_ECONFIG);
	ck_assert_int_eq(config_queue_spec(&a, "loop,redis_dlq_stream=d", err,
					   sizeof(err)), 0);
	ck_assert_int_eq(config_validate(&a, err, sizeof(err)), 0);
	/* A bad value is refused and changes nothing. */
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct gpuqd_config before = a;

		ck_assert_msg(config_queue_spec(&a, bad[i], err, sizeof(err)) ==
				      GPUQ_ECONFIG, "%s accepted", bad[i]);
		ck_assert_int_eq(memcmp(&before, &a, sizeof(a)), 0);
	}
}
END_TEST

/* What --print-config shows must not hide an inherited backend behind a
 * value the reader would then pin. */
START_TEST(test_print_format)
{
	struct gpuqd_config c;
	char text[4096], err[256];

	ck_assert_int_eq(load(&c, good_conf, err, sizeof(err)), 0);
	print_to_buf(&c, text, sizeof(text));
	ck_assert_ptr_nonnull(strstr(text, "[broker]\n"));
	ck_assert_ptr_nonnull(strstr(text, "socket_mode = 0640\n"));
	ck_assert_ptr_nonnull(strstr(text, "allow_uid = 1000, 0, 42\n"));
	ck_assert_ptr_nonnull(strstr(text, "force_epoll = yes\n"));
	ck_assert_ptr_nonnull(strstr(text, "[queue q1]\n"));
	ck_assert_ptr_nonnull(strstr(text, "backend = cuda\n"));
	ck_assert_ptr_nonnull(strstr(text, "[queue jobs.v2-x_]\n"));
	/* jobs.v2-x_ inherits the broker's backend: its section has none. */
	ck_assert_ptr_null(strstr(strstr(text, "[queue jobs.v2-x_]"),
				  "backend"));
}
END_TEST

static Suite *suite_config(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("parse");
	TCase *tv = tcase_create("validate");
	TCase *tp = tcase_create("print");

	tcase_add_test(tc, test_defaults);
	tcase_add_test(tc, test_good_buffer);
	tcase_add_test(tc, test_good_file);
	tcase_add_test(tc, test_missing_file);
	tcase_add_test(tc, test_error_exact);
	tcase_add_loop_test(tc, test_errors, 0,
			    (int)(sizeof(bad_cases) / sizeof(bad_cases[0])));
	tcase_add_test(tc, test_too_many_queues);
	tcase_add_test(tc, test_nul_and_long_lines);
	tcase_add_test(tc, test_load_on_top);
	tcase_add_test(tc, test_suffixes);
	tcase_add_test(tc, test_config_set);
	tcase_add_test(tc, test_queue_spec);
	suite_add_tcase(s, tc);

	tcase_add_test(tv, test_validate_handler);
	tcase_add_test(tv, test_validate_capacity);
	tcase_add_test(tv, test_validate_result_bytes);
	tcase_add_test(tv, test_validate_tables);
	tcase_add_test(tv, test_validate_names);
	suite_add_tcase(s, tv);

	tcase_add_test(tp, test_round_trip);
	tcase_add_test(tp, test_print_format);
	tcase_add_test(tp, test_redis_keys);
	suite_add_tcase(s, tp);
	return s;
}

GPUQ_CHECK_MAIN(suite_config)
