/*
 * check_notify.c - gpuqd speaks systemd's notify protocol (broker/notify.h):
 * a real gpuqd started with $NOTIFY_SOCKET pointing at a datagram socket of
 * ours sends READY=1 with its MAINPID, WATCHDOG=1 pings while
 * $WATCHDOG_USEC is set for it, and STOPPING=1 when a SIGTERM stops it.
 * Every datagram must come from the broker's own pid (SCM_CREDENTIALS), as
 * NotifyAccess=main requires.
 */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/harness.h"
#include "tests/runner.h"

static const char *const queue_args[] = { "-q", "echo", NULL };

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Bind a datagram socket at path (or, with '@', an abstract name) that
 * receives the sender's credentials with every datagram. */
static int listen_notify(const char *addr)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t n = strlen(addr);
	int one = 1, fd;

	ck_assert_uint_lt(n, sizeof(sa.sun_path));
	memcpy(sa.sun_path, addr, n);
	if (addr[0] == '@')
		sa.sun_path[0] = '\0';
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one,
				    sizeof(one)), 0);
	ck_assert_msg(bind(fd, (struct sockaddr *)&sa,
			   (socklen_t)(offsetof(struct sockaddr_un, sun_path) +
				       n + (addr[0] == '/'))) == 0,
		      "bind %s: %s", addr, strerror(errno));
	return fd;
}

/* One datagram within timeout_ms into buf (NUL-terminated); returns its
 * length, or -1 on timeout.  *pid gets the sender's pid. */
static int recv_notify(int fd, char *buf, size_t cap, int timeout_ms,
		       pid_t *pid)
{
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(sizeof(struct ucred))];
	} ctl;
	struct iovec iov = { buf, cap - 1 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
			     .msg_control = &ctl, .msg_controllen = sizeof(ctl) };
	struct pollfd p = { fd, POLLIN, 0 };
	ssize_t n;

	if (poll(&p, 1, timeout_ms) != 1)
		return -1;
	n = recvmsg(fd, &mh, MSG_DONTWAIT);
	if (n < 0)
		return -1;
	buf[n] = '\0';
	*pid = 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
		if (c->cmsg_level == SOL_SOCKET &&
		    c->cmsg_type == SCM_CREDENTIALS) {
			struct ucred u;
			memcpy(&u, CMSG_DATA(c), sizeof(u));
			*pid = u.pid;
		}
	return (int)n;
}

/* 1 if the newline-separated assignments in msg include line. */
static int has_line(const char *msg, const char *line)
{
	size_t n = strlen(line);
	for (const char *p = msg; p; p = strchr(p, '\n'), p = p ? p + 1 : p)
		if (!strncmp(p, line, n) && (p[n] == '\n' || !p[n]))
			return 1;
	return 0;
}

struct seen {
	int ready, watchdog, stopping, other_pid;
	int mainpid_ok;
	uint64_t first_wd_ms, last_wd_ms;
};

/* Read datagrams for up to ms (or until STOPPING=1 when until_stop); each
 * must come from pid broker (harness clears b->pid once it has stopped). */
static void collect(int fd, pid_t broker, struct seen *s, int ms,
		    int until_stop)
{
	uint64_t end = now_ms() + (uint64_t)ms;
	char buf[1024], want[32];
	pid_t pid;

	snprintf(want, sizeof(want), "MAINPID=%d", (int)broker);
	while (now_ms() < end && !(until_stop && s->stopping)) {
		int left = (int)(end - now_ms());
		if (recv_notify(fd, buf, sizeof(buf), left > 0 ? left : 0,
				&pid) < 0)
			continue;
		if (pid != broker)
			s->other_pid++;
		if (has_line(buf, "READY=1")) {
			s->ready++;
			s->mainpid_ok = has_line(buf, want);
			ck_assert_msg(strstr(buf, "\nSTATUS=") != NULL,
				      "READY without STATUS: '%s'", buf);
		}
		if (has_line(buf, "WATCHDOG=1")) {
			ck_assert_msg(s->ready, "WATCHDOG=1 before READY=1");
			if (!s->watchdog++)
				s->first_wd_ms = now_ms();
			s->last_wd_ms = now_ms();
		}
		if (has_line(buf, "STOPPING=1"))
			s->stopping++;
	}
}

/* Start gpuqd with $NOTIFY_SOCKET = addr and the given watchdog variables
 * (NULL: unset). */
static void start_with(struct broker_proc *b, const char *addr,
		       const char *wd_usec, const char *wd_pid)
{
	setenv("NOTIFY_SOCKET", addr, 1);
	if (wd_usec)
		setenv("WATCHDOG_USEC", wd_usec, 1);
	else
		unsetenv("WATCHDOG_USEC");
	if (wd_pid)
		setenv("WATCHDOG_PID", wd_pid, 1);
	else
		unsetenv("WATCHDOG_PID");
	ck_assert_msg(broker_start(b, queue_args) == 0, "gpuqd did not start");
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
}

static void check_full_cycle(const char *addr_fmt, int abstract)
{
	struct broker_proc b;
	struct seen s = { 0 };
	char addr[108], dir[] = "/tmp/gpuq-notify-XXXXXX";
	pid_t pid;
	int fd, st;

	if (abstract) {
		snprintf(addr, sizeof(addr), addr_fmt, (int)getpid());
	} else {
		ck_assert_ptr_nonnull(mkdtemp(dir));
		snprintf(addr, sizeof(addr), addr_fmt, dir);
	}
	fd = listen_notify(addr);
	start_with(&b, addr, "200000", NULL);
	pid = b.pid;

	/* READY=1 came before the socket answered; then ~10 pings/s (half of
	 * 200 ms, on the 100 ms tick).  At least 2 within a second. */
	collect(fd, pid, &s, 1100, 0);
	ck_assert_int_eq(s.ready, 1);
	ck_assert_msg(s.mainpid_ok, "READY=1 without MAINPID=%d", (int)pid);
	ck_assert_msg(s.watchdog >= 2, "%d WATCHDOG=1 pings in 1.1 s",
		      s.watchdog);
	ck_assert_int_eq(s.stopping, 0);

	st = broker_stop(&b, SIGTERM, 5000);
	ck_assert_msg(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
		      "gpuqd exit status %#x", st);
	collect(fd, pid, &s, 1000, 1);
	ck_assert_int_eq(s.stopping, 1);
	ck_assert_int_eq(s.other_pid, 0);
	ck_assert_int_eq(s.ready, 1);

	close(fd);
	broker_cleanup(&b);
	if (!abstract) {
		char sock[160];
		snprintf(sock, sizeof(sock), "%s/notify.sock", dir);
		unlink(sock);
		rmdir(dir);
	}
}

START_TEST(test_path_socket)
{
	check_full_cycle("%s/notify.sock", 0);
}
END_TEST

START_TEST(test_abstract_socket)
{
	check_full_cycle("@gpuq-check-notify-%d", 1);
}
END_TEST

/* WATCHDOG_PID naming another process: READY and STOPPING, no pings. */
START_TEST(test_watchdog_other_pid)
{
	struct broker_proc b;
	struct seen s = { 0 };
	char addr[64];
	pid_t pid;
	int fd;

	snprintf(addr, sizeof(addr), "@gpuq-check-notify-pid-%d", (int)getpid());
	fd = listen_notify(addr);
	start_with(&b, addr, "200000", "1");
	pid = b.pid;
	collect(fd, pid, &s, 500, 0);
	ck_assert_int_eq(s.ready, 1);
	ck_assert_int_eq(s.watchdog, 0);
	ck_assert_int_eq(broker_stop(&b, SIGTERM, 5000), 0);
	collect(fd, pid, &s, 1000, 1);
	ck_assert_int_eq(s.stopping, 1);
	ck_assert_int_eq(s.watchdog, 0);
	close(fd);
	broker_cleanup(&b);
}
END_TEST

/* No WATCHDOG_USEC: no pings, and no NOTIFY_SOCKET at all still runs. */
START_TEST(test_no_watchdog)
{
	struct broker_proc b;
	struct seen s = { 0 };
	char addr[64];
	pid_t pid;
	int fd;

	snprintf(addr, sizeof(addr), "@gpuq-check-notify-nowd-%d", (int)getpid());
	fd = listen_notify(addr);
	start_with(&b, addr, NULL, NULL);
	pid = b.pid;
	collect(fd, pid, &s, 400, 0);
	ck_assert_int_eq(s.ready, 1);
	ck_assert_int_eq(s.watchdog, 0);
	ck_assert_int_eq(broker_stop(&b, SIGTERM, 5000), 0);
	close(fd);
	broker_cleanup(&b);

	/* Unset $NOTIFY_SOCKET: nothing to do, clean start and stop. */
	ck_assert_msg(broker_start(&b, queue_args) == 0, "gpuqd did not start");
	ck_assert_int_eq(broker_stop(&b, SIGTERM, 5000), 0);
	broker_cleanup(&b);
}
END_TEST

static Suite *suite_notify(void)
{
	Suite *s = suite_create("notify");
	TCase *tc = tcase_create("sd_notify");

	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_path_socket);
	tcase_add_test(tc, test_abstract_socket);
	tcase_add_test(tc, test_watchdog_other_pid);
	tcase_add_test(tc, test_no_watchdog);
	suite_add_tcase(s, tc);
	return s;
}

GPUQ_CHECK_MAIN(suite_notify)
