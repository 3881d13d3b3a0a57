/*
 * check_queue.c - broker queue logic driven in-process, on real shared
 * memory: what the device fault policy does to in-flight messages
 * (bqueue_fail_inflight).  A paused CPU queue stands still while the test
 * publishes, so the messages are exactly "published, not consumed", which
 * is what a dead GPU context leaves behind.
 */
#include "config.h"

#include <check.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "broker/broker.h"
#include "broker/conf.h"
#include "ipc/clock.h"
#include "ipc/cq.h"
#include "ipc/ring.h"
#include "libclient/gpuq.h"
#include "tests/runner.h"

/* The config every test starts from: a CPU queue of the checksum handler
 * with capacity slots. */
static struct queue_config cpu_conf(const char *name, uint32_t capacity)
{
	struct queue_config c;
	config_queue_defaults(&c, name);
	strcpy(c.handler, "checksum");
	c.capacity = capacity;
	c.backend = CONF_BACKEND_CPU;
	return c;
}

/* Create q from c, with the broker's own client attached as *client. */
static void create_attached(struct bqueue *q, const struct queue_config *c,
			    uint32_t *client)
{
	ck_assert_int_eq(bqueue_create(q, c, CONF_BACKEND_CPU, 1), 0);
	ck_assert_int_eq(bqueue_attach_internal(q, client), 0);
}

static void make_paused_queue_as(struct bqueue *q, uint32_t *client,
				 int stamped_results)
{
	struct queue_config c = cpu_conf("f", 64);
	c.stamped_results = stamped_results;
	create_attached(q, &c, client);
	bqueue_pause(q, 1);
}

static void make_paused_queue(struct bqueue *q, uint32_t *client)
{
	make_paused_queue_as(q, client, 0);
}

/* Publish n messages as client, ids first..first+n-1; returns the first
 * ticket. */
static uint64_t publish(struct bqueue *q, uint32_t client, uint64_t first,
			uint32_t n, uint16_t flags)
{
	struct ipc_client *me = &q->r.clients[client];
	uint64_t t;
	ipc_resv_begin(me);
	ck_assert_int_eq(ipc_reserve(&q->r, 0, n, &t), 0);
	for (uint32_t i = 0; i < n; i++) {
		struct ipc_msg_meta mm = { .id = first + i, .len = 8,
					   .client = (uint16_t)client,
					   .flags = flags };
		memset(ipc_slot(&q->r, 0, t + i) + 1, 'x', 8);
		ipc_publish(&q->r, 0, t + i, &mm);
	}
	ipc_resv_end(me);
	return t;
}

START_TEST(test_fail_inflight)
{
	static struct bqueue q;
	uint32_t client;
	make_paused_queue(&q, &client);
	publish(&q, client, 0, 10, 0);
	/* The broker's own replays want no result: none is written. */
	publish(&q, q.r.hdr->max_clients, 100, 3, IPC_MSG_NORESULT);
	/* One of them was already finished by its consumer before the
	 * fault: its result must stay. */
	{
		struct ipc_cq_entry *e = ipc_cq_entry(&q.r, client, 4);
		e->status = 0;
		e->len = 4;
		ipc_store_release(&e->done, 4 + 1);
	}
	ck_assert_uint_eq(bqueue_fail_inflight(&q), 9);
	for (uint64_t id = 0; id < 10; id++) {
		struct ipc_cq_entry *e = ipc_cq_entry(&q.r, client, id);
		ck_assert_uint_eq(ipc_load_acquire(&e->done), id + 1);
		ck_assert_int_eq(e->status, id == 4 ? 0 : GPUQ_EDEVICE);
		ck_assert_uint_eq(e->len, id == 4 ? 4 : 0);
	}
	/* Twice is harmless: nothing is completed again. */
	ck_assert_uint_eq(bqueue_fail_inflight(&q), 0);
	bqueue_destroy(&q);
}
END_TEST

/* Stamped results (ipc/cq.h): an entry the consumer finished stays; one
 * it left half-written (its first chunk landed, its second did not, as a
 * dead context can leave it) is not complete, and is failed like the
 * rest; the failures read back through the client's reader. */
START_TEST(test_fail_inflight_stamped)
{
	static struct bqueue q;
	struct ipc_outcome ok = { 0, 4, 1, 0, 0 }, got;
	const uint8_t *res;
	uint8_t buf[64], half[16];
	uint32_t client;
	make_paused_queue_as(&q, &client, 1);
	ck_assert_uint_eq(q.r.hdr->cq_stamped, 1);
	publish(&q, client, 0, 10, 0);
	ipc_cq_publish(&q.r, ipc_cq_entry(&q.r, client, 4), 4, &ok, "abcd");
	ipc_cq_publish(&q.r, ipc_cq_entry(&q.r, client, 6), 6, &ok, "efgh");
	memcpy(half, ipc_cq_entry(&q.r, client, 6), 16);
	memset(ipc_cq_entry(&q.r, client, 6), 0, 32);
	memcpy(ipc_cq_entry(&q.r, client, 6), half, 16);
	ck_assert_uint_eq(bqueue_fail_inflight(&q), 9);
	for (uint64_t id = 0; id < 10; id++) {
		const struct ipc_cq_entry *e = ipc_cq_entry(&q.r, client, id);
		ck_assert(ipc_cq_read(&q.r, e, id, &got, &res, buf));
		ck_assert_int_eq(got.status, id == 4 ? 0 : GPUQ_EDEVICE);
		ck_assert_uint_eq(got.len, id == 4 ? 4 : 0);
		ck_assert_uint_eq(got.worker, id == 4 ? 0 : UINT32_MAX);
	}
	ck_assert(ipc_cq_read(&q.r, ipc_cq_entry(&q.r, client, 4), 4, &got,
			      &res, buf));
	ck_assert_int_eq(memcmp(res, "abcd", 4), 0);
	ck_assert_uint_eq(bqueue_fail_inflight(&q), 0);
	bqueue_destroy(&q);
}
END_TEST

/* A detached client's completion area is cleared by the queue's recycler
 * thread, not in the tick (recycle.c): the tick that ends the quarantine
 * hands it over, and the entry is FREE once every entry is clear, not
 * before. */
START_TEST(test_recycle)
{
	static struct bqueue q;
	struct queue_config c = cpu_conf("r", 65536);
	uint32_t client;
	int waited = 0;
	create_attached(&q, &c, &client);
	ck_assert_uint_eq(q.r.hdr->cq_capacity, 65536);
	for (uint64_t id = 0; id < 65536; id++)
		ipc_cq_entry(&q.r, client, id)->done = id + 1;
	bqueue_detach(&q, client);
	ck_assert_uint_eq(ipc_load_acquire(&q.r.clients[client].state),
			  IPC_CLIENT_DEAD);
	bqueue_tick(&q, ipc_now_ns());
	while (ipc_load_acquire(&q.r.clients[client].state) != IPC_CLIENT_FREE) {
		struct timespec ms = { 0, 1000000 };
		ck_assert_uint_eq(ipc_load_acquire(&q.r.clients[client].state),
				  IPC_CLIENT_DEAD);
		ck_assert_int_lt(waited++, 10000);
		nanosleep(&ms, NULL);
	}
	for (uint64_t id = 0; id < 65536; id++)
		ck_assert_uint_eq(ipc_cq_entry(&q.r, client, id)->done, 0);
	/* Further ticks ask for nothing: the entry stays free. */
	bqueue_tick(&q, ipc_now_ns());
	ck_assert_uint_eq(ipc_load_acquire(&q.r.clients[client].state),
			  IPC_CLIENT_FREE);
	bqueue_destroy(&q);
}
END_TEST

/* A reserved but unpublished ticket is not a message yet: it is left for
 * the producer (which will see the broker gone), not failed. */
START_TEST(test_fail_inflight_skips_unpublished)
{
	static struct bqueue q;
	struct ipc_client *me;
	uint32_t client;
	uint64_t t;
	make_paused_queue(&q, &client);
	me = &q.r.clients[client];
	publish(&q, client, 0, 2, 0);
	ipc_resv_begin(me);
	ck_assert_int_eq(ipc_reserve(&q.r, 0, 3, &t), 0);
	ipc_resv_end(me);
	ck_assert_uint_eq(bqueue_fail_inflight(&q), 2);
	ck_assert_uint_ne(ipc_load_acquire(&ipc_cq_entry(&q.r, client, 2)->done),
			  3);
	bqueue_destroy(&q);
}
END_TEST

/* ---- pause confirmation ---- */

static void make_queue(struct bqueue *q, uint32_t *client, uint32_t workers)
{
	struct queue_config c = cpu_conf("p", 64);
	c.workers = workers;
	create_attached(q, &c, client);
}

static uint64_t in_ms(uint64_t ms)
{
	return ipc_now_ns() + ms * 1000000ull;
}

static int done(struct bqueue *q, uint32_t client, uint64_t id)
{
	return ipc_load_acquire(&ipc_cq_entry(&q->r, client, id)->done) ==
	       id + 1;
}

/* PAUSE waits for every worker to confirm the new generation; once it has,
 * a message published is not run until RESUME.  Pausing a paused queue
 * starts no new generation. */
START_TEST(test_pause_confirmed)
{
	static struct bqueue q;
	struct timespec ms20 = { 0, 20000000 };
	uint32_t client;
	make_queue(&q, &client, 3);
	bqueue_pause(&q, 1);
	ck_assert_uint_eq(q.r.hdr->pause_gen, 1);
	ck_assert_int_eq(bqueue_pause_wait(&q, in_ms(5000)), 0);
	for (uint32_t w = 0; w < 3; w++)
		ck_assert_uint_eq(ipc_load_acquire(&q.r.workers[w].pause_ack), 1);
	publish(&q, client, 0, 4, 0);
	nanosleep(&ms20, NULL);
	for (uint64_t id = 0; id < 4; id++)
		ck_assert(!done(&q, client, id));
	bqueue_pause(&q, 1);
	ck_assert_uint_eq(q.r.hdr->pause_gen, 1);
	bqueue_pause(&q, 0);
	ck_assert_int_eq(bqueue_pause_wait(&q, in_ms(0)), 0); /* not paused */
	for (uint64_t id = 0; id < 4; id++) {
		uint64_t deadline = in_ms(5000);
		while (!done(&q, client, id))
			ck_assert(ipc_now_ns() < deadline);
	}
	bqueue_pause(&q, 1);
	ck_assert_uint_eq(q.r.hdr->pause_gen, 2);
	ck_assert_int_eq(bqueue_pause_wait(&q, in_ms(5000)), 0);
	bqueue_destroy(&q);
}
END_TEST

/* A worker that cannot look (here: waiting for room in a full dead-letter
 * ring) cannot confirm: the wait ends at its deadline with an error. */
START_TEST(test_pause_unconfirmed)
{
	static struct bqueue q;
	struct queue_config c = cpu_conf("d", 64);
	uint32_t client;
	c.max_attempts = 1;
	c.fail_ppm = 1000000; /* every message fails */
	c.dlq_capacity = 1;
	create_attached(&q, &c, &client);
	publish(&q, client, 0, 2, 0);
	{
		uint64_t deadline = in_ms(5000);
		while (ipc_load_acquire(&q.r.workers[0].dlq_waits) == 0)
			ck_assert(ipc_now_ns() < deadline);
	}
	bqueue_pause(&q, 1);
	ck_assert_int_eq(bqueue_pause_wait(&q, in_ms(50)), GPUQ_ETIMEDOUT);
	bqueue_destroy(&q);
}
END_TEST

static Suite *suite_queue(void)
{
	Suite *s = suite_create("queue");
	TCase *tc = tcase_create("device_fault");
	tcase_add_test(tc, test_fail_inflight);
	tcase_add_test(tc, test_fail_inflight_skips_unpublished);
	tcase_add_test(tc, test_fail_inflight_stamped);
	tcase_add_test(tc, test_recycle);
	suite_add_tcase(s, tc);
	tc = tcase_create("pause");
	tcase_add_test(tc, test_pause_confirmed);
	tcase_add_test(tc, test_pause_unconfirmed);
	suite_add_tcase(s, tc);
	return s;
}

GPUQ_CHECK_MAIN(suite_queue)
