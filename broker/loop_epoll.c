/* loop_epoll.c - the epoll driver: used where io_uring is unavailable. */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "broker/broker.h"
#include "broker/loop.h"
#include "ipc/proto.h"

struct ep {
	int epfd, timerfd;
	int fast_tick; /* the timer runs at LOOP_DRAIN_TICK_NS */
};

/* epoll data is one pointer: these addresses tag the non-connection fds. */
static char tag_listen, tag_timer, tag_signal;

static int ep_add(int epfd, int fd, uint32_t events, void *ptr)
{
	struct epoll_event ev = { .events = events, .data.ptr = ptr };
	return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

static void ep_destroy(struct loop *l)
{
	struct ep *e = l->priv;
	if (!e)
		return;
	if (e->timerfd >= 0)
		close(e->timerfd);
	if (e->epfd >= 0)
		close(e->epfd);
	free(e);
	l->priv = NULL;
}

/* Once draining, tick at LOOP_DRAIN_TICK_NS (set once). */
static void drain_tick(struct loop *l, struct ep *e)
{
	struct itimerspec its = { { 0, LOOP_DRAIN_TICK_NS },
				  { 0, LOOP_DRAIN_TICK_NS } };
	if (!l->b->draining || e->fast_tick)
		return;
	if (timerfd_settime(e->timerfd, 0, &its, NULL) == 0)
		e->fast_tick = 1;
}

static int ep_create(struct loop *l)
{
	struct itimerspec its = { { 0, LOOP_TICK_NS }, { 0, LOOP_TICK_NS } };
	struct ep *e = calloc(1, sizeof(*e));
	int rc;
	if (!e)
		return -ENOMEM;
	l->priv = e;
	e->epfd = epoll_create1(EPOLL_CLOEXEC);
	e->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (e->epfd < 0 || e->timerfd < 0 ||
	    timerfd_settime(e->timerfd, 0, &its, NULL) < 0) {
		rc = -errno;
		goto fail;
	}
	if ((rc = ep_add(e->epfd, l->listen_fd, EPOLLIN, &tag_listen)) ||
	    (rc = ep_add(e->epfd, e->timerfd, EPOLLIN, &tag_timer)) ||
	    (rc = ep_add(e->epfd, l->signal_fd, EPOLLIN, &tag_signal)))
		goto fail;
	return 0;
fail:
	ep_destroy(l);
	return rc;
}

static void on_accept(struct loop *l, struct ep *e)
{
	for (;;) {
		struct bconn *c;
		int fd = accept4(l->listen_fd, NULL, NULL,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return; /* EAGAIN, or EMFILE: retried next wakeup */
		c = loop_conn_new(l, fd);
		if (c && ep_add(e->epfd, fd, EPOLLIN | EPOLLRDHUP, c))
			loop_conn_free(l, c);
	}
}

/* Read every message waiting on c; returns 0 when c was freed. */
static int on_conn(struct loop *l, struct bconn *c, uint32_t events)
{
	for (;;) {
		ssize_t n = recv(c->fd, c->rx, sizeof(c->rx), 0);
		if (n > 0) {
			ctl_message(l->b, c, c->rx, (int)n);
			if (c->dropping)
				break;
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EINTR) &&
		    !(events & (EPOLLHUP | EPOLLERR)))
			return 1;
		break; /* 0 = hang-up, or a socket error */
	}
	loop_conn_free(l, c);
	return 0;
}

static void on_signal(struct loop *l)
{
	struct signalfd_siginfo si;
	while (read(l->signal_fd, &si, sizeof(si)) == sizeof(si))
		loop_signal(l, (int)si.ssi_signo);
}

static int ep_run(struct loop *l)
{
	struct ep *e = l->priv;
	struct epoll_event evs[64];
	while (!l->stopping) {
		int n = epoll_wait(e->epfd, evs, 64, -1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		for (int i = 0; i < n && !l->stopping; i++) {
			void *p = evs[i].data.ptr;
			uint64_t ticks;
			if (p == &tag_listen) {
				on_accept(l, e);
			} else if (p == &tag_timer) {
				if (read(e->timerfd, &ticks, 8) == 8)
					ctl_tick(l->b);
				drain_tick(l, e);
			} else if (p == &tag_signal) {
				on_signal(l);
			} else {
				on_conn(l, p, evs[i].events);
			}
		}
	}
	return 0;
}

static int ep_send(struct loop *l, struct bconn *c, const void *buf,
		   size_t len, int fd)
{
	/* Replies are small and one per request, so the socket buffer has
	 * room unless the peer stopped reading; such a peer is dropped. */
	int rc = proto_send(c->fd, buf, len, fd);
	if (rc)
		loop_drop(l, c);
	return rc;
}

static void ep_drop(struct loop *l, struct bconn *c)
{
	(void)l;
	/* Freed by on_conn() once the current message is handled. */
	shutdown(c->fd, SHUT_RDWR);
	c->dropping = 1;
}

const struct loop_driver loop_epoll_driver = {
	.kind = "epoll",
	.create = ep_create,
	.run = ep_run,
	.send = ep_send,
	.drop = ep_drop,
	.destroy = ep_destroy,
};
