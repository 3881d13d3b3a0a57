/*
 * check_tracka_window.c - Track A's held-entry window (broker/tracka_window.c)
 * without Redis: stream id parsing, and the window's hash set checked
 * against a brute-force search under random holds and releases.
 */
#include "config.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "broker/tracka_window.h"
#include "tests/runner.h"

static int parse(const char *s, struct sid *id)
{
	return sid_parse(s, strlen(s), id);
}

START_TEST(test_sid)
{
	static const char *const bad[] = {
		"", "-", "1", "1-", "-1", "a-1", "1-a", "1-2-3", "1 -2", "+1-2",
		"18446744073709551616-0", "0-18446744073709551616",
		"123456789012345678901-0",
	};
	struct sid id;
	char buf[SID_STR_MAX];
	ck_assert_int_eq(parse("1700000000000-42", &id), 0);
	ck_assert_uint_eq(id.ms, 1700000000000ull);
	ck_assert_uint_eq(id.seq, 42);
	ck_assert_int_eq(parse("18446744073709551615-18446744073709551615", &id), 0);
	ck_assert_uint_eq(id.ms, UINT64_MAX);
	ck_assert_uint_eq(id.seq, UINT64_MAX);
	ck_assert_int_eq(sid_format(&id, buf), 41);
	ck_assert_str_eq(buf, "18446744073709551615-18446744073709551615");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(parse(bad[i], &id) != 0, "'%s' accepted", bad[i]);
}
END_TEST

/* Brute force: the live sequence number holding id, or -1. */
static int64_t slow_find(const struct ta_window *w, const struct sid *id)
{
	for (uint64_t s = w->tail; s < w->head; s++) {
		const struct ta_ent *e = win_ent(w, s);
		if (e->state != E_FREE && e->id.ms == id->ms && e->id.seq == id->seq)
			return (int64_t)s;
	}
	return -1;
}

START_TEST(test_window_random)
{
	struct ta_window w;
	uint64_t x = 0x1234567 + (uint64_t)_i;
	ck_assert_int_eq(win_init(&w, 64), 0);
	for (int step = 0; step < 200000; step++) {
		struct sid id;
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		/* Few distinct ids, so lookups hit and collide often. */
		id.ms = x % 97;
		id.seq = (x >> 8) % 3;
		if ((x >> 20) % 3 && win_room(&w) && slow_find(&w, &id) < 0) {
			uint64_t s = win_add(&w, &id, 1);
			ck_assert_int_eq(win_find(&w, &id), (int64_t)s);
		} else if (w.head > w.tail) {
			/* Release a random held entry (out of order). */
			uint64_t s = w.tail + (x >> 24) % (w.head - w.tail);
			win_release(&w, s);
		}
		ck_assert_int_eq(win_find(&w, &id), slow_find(&w, &id));
		ck_assert_uint_le(w.head - w.tail, w.cap);
		ck_assert(w.tail == w.head || win_ent(&w, w.tail)->state != E_FREE);
	}
	win_fini(&w);
}
END_TEST

START_TEST(test_window_bounds)
{
	struct ta_window w;
	struct sid id = { 5, 0 };
	ck_assert_int_ne(win_init(&w, 3), 0); /* not a power of two */
	ck_assert_int_eq(win_init(&w, 4), 0);
	for (uint64_t i = 0; i < 4; i++) {
		id.seq = i;
		ck_assert_uint_eq(win_add(&w, &id, 1), i);
	}
	ck_assert_uint_eq(win_room(&w), 0);
	/* Releasing a later entry frees no room: the oldest holds it. */
	win_release(&w, 2);
	ck_assert_uint_eq(win_room(&w), 0);
	win_release(&w, 0);
	ck_assert_uint_eq(win_room(&w), 1);
	win_release(&w, 1);
	ck_assert_uint_eq(win_room(&w), 3); /* 0, 1 and 2 are all free now */
	id.seq = 2;
	ck_assert_int_eq(win_find(&w, &id), -1);
	id.seq = 3;
	ck_assert_int_eq(win_find(&w, &id), 3);
	win_fini(&w);
}
END_TEST

static Suite *suite_tracka_window(void)
{
	Suite *s = suite_create("tracka_window");
	TCase *tc = tcase_create("window");
	tcase_add_test(tc, test_sid);
	tcase_add_loop_test(tc, test_window_random, 0, 4);
	tcase_add_test(tc, test_window_bounds);
	suite_add_tcase(s, tc);
	return s;
}

GPUQ_CHECK_MAIN(suite_tracka_window)
