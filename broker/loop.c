/* loop.c - driver selection and the parts both event loops share. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "broker/broker.h"
#include "broker/loop.h"

int loop_create(struct loop **out, struct broker *b, int listen_fd,
		int force_epoll)
{
	struct loop *l = calloc(1, sizeof(*l));
	int rc;
	if (!l)
		return -ENOMEM;
	l->b = b;
	l->listen_fd = listen_fd;
	/* SIGTERM, SIGINT and SIGHUP were blocked in main() before any
	 * thread started; the loop reads them as events. */
	{
		sigset_t set;
		sigemptyset(&set);
		sigaddset(&set, SIGTERM);
		sigaddset(&set, SIGINT);
		sigaddset(&set, SIGHUP);
		l->signal_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
		if (l->signal_fd < 0) {
			rc = -errno;
			free(l);
			return rc;
		}
	}
	l->drv = force_epoll ? &loop_epoll_driver : &loop_uring_driver;
	rc = l->drv->create(l);
	if (rc && !force_epoll) {
		/* io_uring is missing or blocked (seccomp, old kernel, or
		 * kernel.io_uring_disabled): the epoll loop does the same
		 * job with more system calls. */
		blog(0, "io_uring unavailable (%s); using epoll",
		     strerror(-rc));
		l->drv = &loop_epoll_driver;
		rc = l->drv->create(l);
	}
	if (rc) {
		close(l->signal_fd);
		free(l);
		return rc;
	}
	*out = l;
	return 0;
}

int loop_run(struct loop *l) { return l->drv->run(l); }
void loop_stop(struct loop *l) { l->stopping = 1; }
const char *loop_kind(const struct loop *l) { return l->drv->kind; }

int loop_send(struct loop *l, struct bconn *c, const void *buf, size_t len,
	      int fd)
{
	return l->drv->send(l, c, buf, len, fd);
}

void loop_drop(struct loop *l, struct bconn *c) { l->drv->drop(l, c); }

void loop_destroy(struct loop *l)
{
	if (!l)
		return;
	/* The driver first: io_uring must stop using connection buffers
	 * before they are freed. */
	l->drv->destroy(l);
	while (l->conns)
		loop_conn_free(l, l->conns);
	close(l->signal_fd);
	free(l);
}

/* A new connection: read its credentials, then let ctl decide. */
struct bconn *loop_conn_new(struct loop *l, int fd)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);
	struct bconn *c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return NULL;
	}
	c->fd = fd;
	c->lnext = l->conns;
	if (l->conns)
		l->conns->lprev = c;
	l->conns = c;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) == 0) {
		c->pid = cr.pid;
		c->uid = cr.uid;
		c->gid = cr.gid;
	} else {
		/* No credentials, no trust. */
		c->uid = (uid_t)-1;
		c->gid = (gid_t)-1;
	}
	ctl_accept(l->b, c);
	return c;
}

void loop_conn_free(struct loop *l, struct bconn *c)
{
	ctl_hangup(l->b, c);
	if (c->lprev)
		c->lprev->lnext = c->lnext;
	else
		l->conns = c->lnext;
	if (c->lnext)
		c->lnext->lprev = c->lprev;
	free(c->loop_priv);
	close(c->fd);
	free(c);
}

void loop_signal(struct loop *l, int signo)
{
	/* SIGHUP would kill a broker without a drain if left at its default;
	 * there is no config reload yet, so it is logged and ignored. */
	if (signo == SIGHUP) {
		blog(0, "SIGHUP ignored (config reload is not supported)");
		return;
	}
	ctl_begin_drain(l->b, signo == SIGINT ? "SIGINT" : "SIGTERM");
}
