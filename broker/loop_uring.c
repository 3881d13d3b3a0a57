/*
 * loop_uring.c - the io_uring driver: accept, receive, send (with the queue
 * fd as SCM_RIGHTS), the tick and signals are all ring operations, so an
 * idle broker makes one system call per wakeup.
 */
#include "config.h"

#include <errno.h>
#include <liburing.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "broker/broker.h"
#include "broker/loop.h"
#include "ipc/proto.h"

#define RING_ENTRIES 256

enum op { OP_ACCEPT = 1, OP_RECV, OP_SEND, OP_TIMER, OP_SIGNAL };

struct ur {
	struct io_uring ring;
	struct __kernel_timespec tick;
	struct signalfd_siginfo si;
};

/* Per-connection state that must outlive the submitting call. */
struct uconn {
	int recv_pending, send_pending;
	struct msghdr mh;
	struct iovec iov;
	union { char b[CMSG_SPACE(sizeof(int))]; struct cmsghdr a; } cm;
	uint8_t buf[PROTO_MAX_MSG]; /* the reply in flight */
};

/* user_data: a pointer (8-aligned) with the op in the low 3 bits. */
static uint64_t tag(void *p, enum op o) { return (uint64_t)(uintptr_t)p | o; }

static struct io_uring_sqe *sqe_get(struct ur *u)
{
	struct io_uring_sqe *s = io_uring_get_sqe(&u->ring);
	if (!s) {
		io_uring_submit(&u->ring);
		s = io_uring_get_sqe(&u->ring);
	}
	return s;
}

static void arm_accept(struct loop *l, struct ur *u)
{
	struct io_uring_sqe *s = sqe_get(u);
	io_uring_prep_accept(s, l->listen_fd, NULL, NULL,
			     SOCK_CLOEXEC | SOCK_NONBLOCK);
	io_uring_sqe_set_data64(s, tag(NULL, OP_ACCEPT));
}

static void arm_timer(struct ur *u)
{
	struct io_uring_sqe *s = sqe_get(u);
	io_uring_prep_timeout(s, &u->tick, 0, 0);
	io_uring_sqe_set_data64(s, tag(NULL, OP_TIMER));
}

static void arm_signal(struct loop *l, struct ur *u)
{
	struct io_uring_sqe *s = sqe_get(u);
	io_uring_prep_read(s, l->signal_fd, &u->si, sizeof(u->si), 0);
	io_uring_sqe_set_data64(s, tag(NULL, OP_SIGNAL));
}

static void arm_recv(struct ur *u, struct bconn *c)
{
	struct uconn *uc = c->loop_priv;
	struct io_uring_sqe *s = sqe_get(u);
	io_uring_prep_recv(s, c->fd, c->rx, sizeof(c->rx), 0);
	io_uring_sqe_set_data64(s, tag(c, OP_RECV));
	uc->recv_pending = 1;
}

static void ur_destroy(struct loop *l)
{
	struct ur *u = l->priv;
	if (!u)
		return;
	io_uring_queue_exit(&u->ring);
	free(u);
	l->priv = NULL;
}

static int ur_create(struct loop *l)
{
	struct ur *u = calloc(1, sizeof(*u));
	int rc;
	if (!u)
		return -ENOMEM;
	rc = io_uring_queue_init(RING_ENTRIES, &u->ring, 0);
	if (rc < 0) {
		free(u);
		return rc;
	}
	l->priv = u;
	u->tick.tv_sec = 0;
	u->tick.tv_nsec = (long long)LOOP_TICK_NS;
	arm_accept(l, u);
	arm_timer(u);
	arm_signal(l, u);
	return 0;
}

/* Free c once no operation of ours still refers to it. */
static void maybe_free(struct loop *l, struct bconn *c)
{
	struct uconn *uc = c->loop_priv;
	if (c->dropping && !uc->recv_pending && !uc->send_pending)
		loop_conn_free(l, c);
}

static void on_accept(struct loop *l, struct ur *u, int res)
{
	if (res >= 0) {
		struct bconn *c = loop_conn_new(l, res);
		if (c) {
			c->loop_priv = calloc(1, sizeof(struct uconn));
			if (c->loop_priv)
				arm_recv(u, c);
			else
				loop_conn_free(l, c);
		}
	} else {
		blog(1, "accept: %s", strerror(-res));
	}
	arm_accept(l, u);
}

static void on_recv(struct loop *l, struct ur *u, struct bconn *c, int res)
{
	struct uconn *uc = c->loop_priv;
	uc->recv_pending = 0;
	if (res > 0 && !c->dropping) {
		ctl_message(l->b, c, c->rx, res);
		if (!c->dropping) {
			arm_recv(u, c);
			return;
		}
	}
	/* Hang-up, error, or dropped by ctl. */
	c->dropping = 1;
	maybe_free(l, c);
}

static void dispatch(struct loop *l, struct ur *u, struct io_uring_cqe *cqe)
{
	uint64_t d = cqe->user_data;
	struct bconn *c = (struct bconn *)(uintptr_t)(d & ~7ull);
	switch ((enum op)(d & 7)) {
	case OP_ACCEPT:
		on_accept(l, u, cqe->res);
		break;
	case OP_RECV:
		on_recv(l, u, c, cqe->res);
		break;
	case OP_SEND:
		((struct uconn *)c->loop_priv)->send_pending = 0;
		if (cqe->res < 0)
			loop_drop(l, c);
		maybe_free(l, c);
		break;
	case OP_TIMER:
		ctl_tick(l->b);
		u->tick.tv_nsec = (long long)(l->b->draining ? LOOP_DRAIN_TICK_NS
							     : LOOP_TICK_NS);
		arm_timer(u);
		break;
	case OP_SIGNAL:
		if (cqe->res == sizeof(u->si))
			loop_signal(l, (int)u->si.ssi_signo);
		arm_signal(l, u);
		break;
	}
}

static int ur_run(struct loop *l)
{
	struct ur *u = l->priv;
	while (!l->stopping) {
		struct io_uring_cqe *cqe;
		unsigned head, n = 0;
		int rc = io_uring_submit_and_wait(&u->ring, 1);
		if (rc < 0 && rc != -EINTR)
			return rc;
		io_uring_for_each_cqe(&u->ring, head, cqe)
		{
			dispatch(l, u, cqe);
			n++;
			if (l->stopping)
				break;
		}
		io_uring_cq_advance(&u->ring, n);
	}
	return 0;
}

static int ur_send(struct loop *l, struct bconn *c, const void *buf,
		   size_t len, int fd)
{
	struct ur *u = l->priv;
	struct uconn *uc = c->loop_priv;
	struct io_uring_sqe *s;
	if (uc->send_pending) {
		/* A peer pipelining requests: reply synchronously rather than
		 * keep a queue of buffers for it. */
		int rc = proto_send(c->fd, buf, len, fd);
		if (rc)
			loop_drop(l, c);
		return rc;
	}
	if (len > sizeof(uc->buf))
		return -EMSGSIZE;
	memcpy(uc->buf, buf, len);
	proto_msghdr_fd(&uc->mh, &uc->iov, uc->cm.b, sizeof(uc->cm.b), uc->buf,
			len, fd);
	s = sqe_get(u);
	io_uring_prep_sendmsg(s, c->fd, &uc->mh, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(s, tag(c, OP_SEND));
	uc->send_pending = 1;
	/* Submit now: the fd in the message must be sent while it is still
	 * the queue's (it always is, but a reply should not wait for the
	 * next wakeup either). */
	io_uring_submit(&u->ring);
	return 0;
}

static void ur_drop(struct loop *l, struct bconn *c)
{
	(void)l;
	c->dropping = 1;
	/* Ends the pending receive with 0; the connection is freed when the
	 * last completion for it arrives. */
	shutdown(c->fd, SHUT_RDWR);
}

const struct loop_driver loop_uring_driver = {
	.kind = "io_uring",
	.create = ur_create,
	.run = ur_run,
	.send = ur_send,
	.drop = ur_drop,
	.destroy = ur_destroy,
};
