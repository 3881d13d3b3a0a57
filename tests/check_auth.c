/*
 * check_auth.c - an unauthorised uid is refused before it receives any fd
 * or handle.  Needs root (to become another user); otherwise exits 77.
 */
#include "config.h"

#include <check.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ipc/proto.h"
#include "libclient/gpuq.h"
#include "tests/harness.h"

/* Another user: nobody, or one created for the test. */
static uid_t other_uid(gid_t *gid)
{
	struct passwd *pw = getpwnam("nobody");
	if (!pw && system("useradd -M -r gpuqtest >/dev/null 2>&1") == 0)
		pw = getpwnam("gpuqtest");
	ck_assert_ptr_nonnull(pw);
	*gid = pw->pw_gid;
	return pw->pw_uid;
}

/* As the other user: the library's connect is refused, and a raw OPEN
 * (skipping HELLO) gets an error and no file descriptor. */
static int as_other(const char *sock)
{
	_Alignas(8) uint8_t buf[PROTO_MAX_MSG];
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct proto_open req;
	struct proto_msg m;
	gpuq_client *c = NULL;
	int s, n, fd = -1, rc;
	rc = gpuq_connect(sock, &c);
	if (rc != GPUQ_EDENIED)
		return 10;
	s = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	strcpy(sa.sun_path, sock);
	if (connect(s, (struct sockaddr *)&sa, sizeof(sa)))
		return 11;
	memset(&req, 0, sizeof(req));
	strcpy(req.name, "q");
	n = proto_encode(buf, sizeof(buf), PROTO_OPEN, 7, &req, sizeof(req));
	if (proto_send(s, buf, (size_t)n, -1))
		return 12;
	n = proto_recv(s, buf, sizeof(buf), &fd);
	if (fd >= 0)
		return 13; /* a descriptor left the broker */
	if (n <= 0 || proto_decode(buf, (size_t)n, &m) || m.hdr.type != PROTO_ERROR ||
	    ((const struct proto_error *)m.body)->code != GPUQ_EDENIED)
		return 14;
	/* and the broker hangs up after the refusal */
	n = proto_recv(s, buf, sizeof(buf), &fd);
	return n == 0 ? 0 : 15;
}

START_TEST(test_unauthorised_uid)
{
	const char *argv[] = { "-v", "-q", "q,handler=echo", "--set", "socket_mode=0666",
			       NULL };
	struct broker_proc b;
	gpuq_client *c;
	gid_t gid;
	uid_t uid = other_uid(&gid);
	pid_t pid;
	int st;
	ck_assert_int_eq(broker_start(&b, argv), 0);
	/* Let the other user reach the socket: only credentials stop it. */
	ck_assert_int_eq(chmod(b.dir, 0755), 0);
	pid = fork();
	if (pid == 0) {
		if (setgroups(0, NULL) || setgid(gid) || setuid(uid))
			_exit(9);
		_exit(as_other(b.socket));
	}
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %#x", st);
	ck_assert(broker_log_contains(&b, "denied pid"));
	/* The broker's own user still gets in. */
	ck_assert_int_eq(gpuq_connect(b.socket, &c), 0);
	gpuq_disconnect(c);
	st = broker_stop(&b, SIGTERM, 5000);
	ck_assert(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
	broker_cleanup(&b);
}
END_TEST

static Suite *suite_auth(void)
{
	Suite *s = suite_create("auth");
	TCase *tc = tcase_create("uid");
	tcase_add_test(tc, test_unauthorised_uid);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr;
	int failed;
	if (geteuid() != 0) {
		printf("not root: cannot become another user; skipped\n");
		return 77;
	}
	sr = srunner_create(suite_auth());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
