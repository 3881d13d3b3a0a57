/*
 * notify.c - the sd_notify protocol without libsystemd (see notify.h).
 * One datagram per notification on a fresh SOCK_DGRAM socket; systemd
 * reads the sender's pid from SCM_CREDENTIALS, so with NotifyAccess=main
 * only gpuqd's own process (any of its threads) is listened to.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "broker/broker.h"
#include "broker/notify.h"

#define NOTIFY_MSG_MAX 512

/* Digits only, no sign or blanks; 0 on anything else. */
static unsigned long long env_number(const char *name, int *ok)
{
	const char *s = getenv(name);
	unsigned long long v = 0;

	*ok = 0;
	if (!s || !*s)
		return 0;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9' || v > (~0ull - 9) / 10)
			return 0;
		v = v * 10 + (unsigned long long)(*p - '0');
	}
	*ok = 1;
	return v;
}

int notify_send(const char *msg)
{
	static int warned;
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	socklen_t salen;
	size_t n, len = strlen(msg);
	ssize_t sent;
	int fd, rc = 0;

	if (!path || (path[0] != '/' && path[0] != '@'))
		return 0; /* unset, or an address family we do not speak */
	n = strlen(path);
	if (n >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, n);
	if (path[0] == '@')
		sa.sun_path[0] = '\0'; /* abstract: no terminating NUL counted */
	salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n +
			    (path[0] == '/'));
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* Never block the event loop on a slow or full manager socket. */
	sent = sendto(fd, msg, len, MSG_NOSIGNAL | MSG_DONTWAIT,
		      (struct sockaddr *)&sa, salen);
	if (sent < 0)
		rc = -errno;
	else
		rc = (size_t)sent == len ? 1 : -EMSGSIZE;
	close(fd);
	if (rc < 0 && !warned) {
		warned = 1;
		blog(0, "NOTIFY_SOCKET %s: %s", path, strerror(-rc));
	}
	return rc;
}

static int notify_vf(const char *head, const char *fmt, va_list ap,
		     const char *tail)
{
	char msg[NOTIFY_MSG_MAX];
	size_t hlen = strlen(head), tlen = tail ? strlen(tail) : 0, n;

	if (hlen + tlen >= sizeof(msg))
		return -EMSGSIZE;
	memcpy(msg, head, hlen + 1);
	/* Leave room for the tail: a long status is cut, MAINPID is not. */
	vsnprintf(msg + hlen, sizeof(msg) - hlen - tlen, fmt, ap);
	/* A status is one line: a newline would start a new assignment. */
	for (char *p = msg + hlen; *p; p++)
		if (*p == '\n')
			*p = ' ';
	n = strlen(msg);
	if (tail)
		snprintf(msg + n, sizeof(msg) - n, "%s", tail);
	return notify_send(msg);
}

int notify_ready(const char *fmt, ...)
{
	char tail[32];
	va_list ap;
	int rc;

	snprintf(tail, sizeof(tail), "\nMAINPID=%d", (int)getpid());
	va_start(ap, fmt);
	rc = notify_vf("READY=1\nSTATUS=", fmt, ap, tail);
	va_end(ap);
	return rc;
}

int notify_status(const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = notify_vf("STATUS=", fmt, ap, NULL);
	va_end(ap);
	return rc;
}

int notify_stopping(void)
{
	return notify_send("STOPPING=1\nSTATUS=stopping");
}

/* ------------------------------------------------------------------------ */
/* Watchdog                                                                 */
/* ------------------------------------------------------------------------ */

static struct {
	int init;
	uint64_t interval_ns; /* 0: off */
	uint64_t last_ns;
	int pinged;
} wd;

uint64_t notify_watchdog_ns(void)
{
	unsigned long long usec, pid;
	int ok;

	if (wd.init)
		return wd.interval_ns;
	wd.init = 1;
	usec = env_number("WATCHDOG_USEC", &ok);
	if (!ok || !usec || usec > UINT64_MAX / 1000)
		return 0;
	/* WATCHDOG_PID names the process the watchdog is meant for; a child
	 * that inherited the variables must stay quiet. */
	if (getenv("WATCHDOG_PID")) {
		pid = env_number("WATCHDOG_PID", &ok);
		if (!ok || pid != (unsigned long long)getpid())
			return 0;
	}
	wd.interval_ns = (uint64_t)usec * 1000u;
	return wd.interval_ns;
}

int notify_watchdog_due(uint64_t now_ns)
{
	uint64_t iv = notify_watchdog_ns();

	if (!iv || !getenv("NOTIFY_SOCKET"))
		return 0;
	/* Half the interval, less a tenth for the jitter of the loop's tick:
	 * a ping that just misses the half must not wait a whole tick more. */
	return !wd.pinged || now_ns - wd.last_ns >= iv / 2 - iv / 10;
}

int notify_watchdog(uint64_t now_ns)
{
	wd.pinged = 1;
	wd.last_ns = now_ns;
	return notify_send("WATCHDOG=1");
}
