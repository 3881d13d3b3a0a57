/*
 * redis_conn.c - a pipelined Redis connection whose socket I/O is io_uring
 * operations (or epoll and non-blocking calls as the fallback), with
 * hiredis as the codec only.  redis_conn.h has the contract.
 *
 * Output is double-buffered: commands are appended to one buffer while the
 * other is being sent, because an io_uring send holds a pointer into its
 * buffer until it completes and the buffer may not move (realloc) until
 * then.  One recv is kept armed at all times while connected.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/read.h>

#include "broker/redis_conn.h"

#define RING_ENTRIES 16
#define RECV_BYTES (256u * 1024u)
/* The most a socket may wait for an operation being torn down. */
#define TEARDOWN_MS 1000

enum op { OP_RECV = 1, OP_SEND, OP_CONNECT, OP_TIMEOUT, OP_SHUTDOWN };

struct obuf {
	char *p;
	size_t len, cap;
};

struct rconn {
	int fd;
	int connected;
	int failed; /* negated errno once the connection broke */
	int uring;  /* 1: io_uring, 0: epoll */
	struct io_uring ring;
	int epfd;
	uint32_t ep_events; /* what epfd watches now */
	redisReader *rd;
	struct obuf out[2];
	int cur;         /* appends go to out[cur] */
	int sending;     /* out[sending] is being sent, or -1 */
	size_t send_off; /* bytes of out[sending] already sent */
	int send_armed, recv_armed;
	char *rbuf;
};

int rconn_new(struct rconn **out, int force_epoll)
{
	struct rconn *c = calloc(1, sizeof(*c));
	int rc = -ENOMEM;
	if (!c)
		return -ENOMEM;
	c->fd = c->epfd = -1;
	c->sending = -1;
	c->rbuf = malloc(RECV_BYTES);
	c->rd = redisReaderCreate();
	if (!c->rbuf || !c->rd)
		goto fail;
	/* Where io_uring is blocked (seccomp, old kernel) use epoll, as the
	 * broker's own loop does. */
	if (!force_epoll && io_uring_queue_init(RING_ENTRIES, &c->ring, 0) == 0)
		c->uring = 1;
	if (!c->uring) {
		c->epfd = epoll_create1(EPOLL_CLOEXEC);
		if (c->epfd < 0) {
			rc = -errno;
			goto fail;
		}
	}
	*out = c;
	return 0;
fail:
	rconn_free(c);
	return rc;
}

const char *rconn_kind(const struct rconn *c)
{
	return c->uring ? "io_uring" : "epoll";
}

int rconn_connected(const struct rconn *c)
{
	return c->connected && !c->failed;
}

size_t rconn_unsent(const struct rconn *c)
{
	size_t n = c->out[c->cur].len;
	if (c->sending >= 0)
		n += c->out[c->sending].len - c->send_off;
	return n;
}

/* ---- io_uring ---- */

static struct io_uring_sqe *sqe_get(struct rconn *c)
{
	struct io_uring_sqe *s = io_uring_get_sqe(&c->ring);
	if (!s) {
		io_uring_submit(&c->ring);
		s = io_uring_get_sqe(&c->ring);
	}
	return s; /* never NULL: at most 4 operations are ever in flight */
}

static void arm_recv(struct rconn *c)
{
	struct io_uring_sqe *s = sqe_get(c);
	io_uring_prep_recv(s, c->fd, c->rbuf, RECV_BYTES, 0);
	io_uring_sqe_set_data64(s, OP_RECV);
	c->recv_armed = 1;
}

static void arm_send(struct rconn *c)
{
	struct obuf *b = &c->out[c->sending];
	struct io_uring_sqe *s = sqe_get(c);
	io_uring_prep_send(s, c->fd, b->p + c->send_off, b->len - c->send_off,
			   MSG_NOSIGNAL);
	io_uring_sqe_set_data64(s, OP_SEND);
	c->send_armed = 1;
}

static void feed(struct rconn *c, const char *p, size_t n)
{
	if (redisReaderFeed(c->rd, p, n) != REDIS_OK && !c->failed)
		c->failed = -EPROTO;
}

/* Bytes of the buffer being sent went out; start the next buffer when the
 * whole of this one has. */
static void sent(struct rconn *c, size_t n)
{
	c->send_off += n;
	if (c->send_off == c->out[c->sending].len) {
		c->out[c->sending].len = 0;
		c->sending = -1;
		c->send_off = 0;
	}
}

static void fail(struct rconn *c, int err)
{
	if (!c->failed)
		c->failed = err;
}

static void uring_complete(struct rconn *c, uint64_t op, int res)
{
	switch (op) {
	case OP_RECV:
		c->recv_armed = 0;
		if (res > 0)
			feed(c, c->rbuf, (size_t)res);
		else if (res == 0)
			fail(c, -ECONNRESET);
		else if (res != -EINTR && res != -EAGAIN)
			fail(c, res);
		break;
	case OP_SEND:
		c->send_armed = 0;
		if (res > 0)
			sent(c, (size_t)res);
		else if (res != -EINTR && res != -EAGAIN)
			fail(c, res ? res : -EIO);
		break;
	case OP_SHUTDOWN:
		/* Kernels before 5.11 have no io_uring shutdown: the armed
		 * recv must still end before its buffer is reused. */
		if (res < 0)
			shutdown(c->fd, SHUT_RDWR);
		break;
	default:
		break;
	}
}

/* Take the next buffer to send, if nothing is being sent. */
static void next_send(struct rconn *c)
{
	if (c->sending < 0 && c->out[c->cur].len) {
		c->sending = c->cur;
		c->cur ^= 1;
		c->send_off = 0;
	}
}

static int uring_io(struct rconn *c, uint64_t timeout_us)
{
	struct __kernel_timespec ts = { (long long)(timeout_us / 1000000),
					(long long)(timeout_us % 1000000) * 1000 };
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;
	int rc;
	next_send(c);
	if (c->sending >= 0 && !c->send_armed)
		arm_send(c);
	if (!c->recv_armed)
		arm_recv(c);
	if (timeout_us)
		rc = io_uring_submit_and_wait_timeout(&c->ring, &cqe, 1, &ts,
						      NULL);
	else
		rc = io_uring_submit(&c->ring);
	if (rc < 0 && rc != -ETIME && rc != -EINTR)
		return rc;
	io_uring_for_each_cqe(&c->ring, head, cqe) {
		uring_complete(c, cqe->user_data, cqe->res);
		n++;
	}
	io_uring_cq_advance(&c->ring, n);
	/* A send that finished may have uncovered more to send: start it
	 * now rather than a wait later. */
	if (!c->failed && !c->send_armed) {
		next_send(c);
		if (c->sending >= 0) {
			arm_send(c);
			io_uring_submit(&c->ring);
		}
	}
	return c->failed;
}

/* Wait for every armed operation to finish, after a shutdown. */
static void uring_teardown(struct rconn *c)
{
	struct io_uring_sqe *s;
	struct io_uring_cqe *cqe;
	if (!c->send_armed && !c->recv_armed)
		return;
	s = sqe_get(c);
	io_uring_prep_shutdown(s, c->fd, SHUT_RDWR);
	io_uring_sqe_set_data64(s, OP_SHUTDOWN);
	io_uring_submit(&c->ring);
	for (int i = 0; i < TEARDOWN_MS && (c->send_armed || c->recv_armed);
	     i++) {
		struct __kernel_timespec ts = { 0, 1000000 };
		if (io_uring_wait_cqe_timeout(&c->ring, &cqe, &ts) == 0) {
			uring_complete(c, cqe->user_data, cqe->res);
			io_uring_cqe_seen(&c->ring, cqe);
		}
	}
	/* A recv that never ended may still write into its buffer: leave
	 * that buffer to it and take a new one (a leak, in a case that
	 * should not happen, rather than a corruption). */
	if (c->recv_armed) {
		char *nb = malloc(RECV_BYTES);
		if (nb)
			c->rbuf = nb;
	}
}

/* connect, linked to a timeout so that it cannot hang. */
static int uring_connect(struct rconn *c, const struct sockaddr *sa,
			 socklen_t len, int timeout_ms)
{
	struct __kernel_timespec ts = { timeout_ms / 1000,
					(long long)(timeout_ms % 1000) * 1000000 };
	struct io_uring_sqe *s = sqe_get(c);
	struct io_uring_cqe *cqe;
	int rc = -ETIMEDOUT, pending = 2;
	io_uring_prep_connect(s, c->fd, sa, len);
	io_uring_sqe_set_data64(s, OP_CONNECT);
	s->flags |= IOSQE_IO_LINK;
	s = sqe_get(c);
	io_uring_prep_link_timeout(s, &ts, 0);
	io_uring_sqe_set_data64(s, OP_TIMEOUT);
	io_uring_submit(&c->ring);
	while (pending) {
		int w = io_uring_wait_cqe(&c->ring, &cqe);
		if (w == -EINTR)
			continue;
		if (w < 0)
			return w;
		if (cqe->user_data == OP_CONNECT)
			rc = cqe->res == -ECANCELED ? -ETIMEDOUT : cqe->res;
		io_uring_cqe_seen(&c->ring, cqe);
		pending--;
	}
	return rc;
}

/* ---- epoll ---- */

static int ep_watch(struct rconn *c, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.u64 = 0 };
	int op = c->ep_events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
	if (events == c->ep_events)
		return 0;
	if (epoll_ctl(c->epfd, op, c->fd, &ev) < 0)
		return -errno;
	c->ep_events = events;
	return 0;
}

static int ep_wait(struct rconn *c, uint64_t timeout_us)
{
	struct epoll_event ev;
	int n = -1;
#ifdef HAVE_EPOLL_PWAIT2
	/* Microseconds where the kernel has it (5.11); the libc may have it
	 * where the kernel does not. */
	static int no_pwait2;
	if (!__atomic_load_n(&no_pwait2, __ATOMIC_RELAXED)) {
		struct timespec ts = { (time_t)(timeout_us / 1000000),
				       (long)(timeout_us % 1000000) * 1000 };
		n = epoll_pwait2(c->epfd, &ev, 1, &ts, NULL);
		if (n < 0 && errno == ENOSYS)
			__atomic_store_n(&no_pwait2, 1, __ATOMIC_RELAXED);
		else
			return n < 0 && errno != EINTR ? -errno : 0;
	}
#endif
	n = epoll_wait(c->epfd, &ev, 1, (int)((timeout_us + 999) / 1000));
	return n < 0 && errno != EINTR ? -errno : 0;
}

/* Non-blocking send and recv until the kernel has nothing more for us;
 * returns 1 if any bytes moved. */
static int ep_move(struct rconn *c)
{
	int moved = 0;
	ssize_t n;
	next_send(c);
	while (!c->failed && c->sending >= 0) {
		struct obuf *b = &c->out[c->sending];
		n = send(c->fd, b->p + c->send_off, b->len - c->send_off,
			 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno != EAGAIN && errno != EINTR)
				fail(c, -errno);
			break;
		}
		sent(c, (size_t)n);
		next_send(c);
		moved = 1;
	}
	/* A bounded number of reads: the caller has replies to act on. */
	for (int i = 0; i < 4 && !c->failed; i++) {
		n = recv(c->fd, c->rbuf, RECV_BYTES, MSG_DONTWAIT);
		if (n > 0) {
			feed(c, c->rbuf, (size_t)n);
			moved = 1;
			continue;
		}
		if (n == 0)
			fail(c, -ECONNRESET);
		else if (errno != EAGAIN && errno != EINTR)
			fail(c, -errno);
		break;
	}
	return moved;
}

static int epoll_io(struct rconn *c, uint64_t timeout_us)
{
	int rc;
	if (ep_move(c) || !timeout_us || c->failed)
		return c->failed;
	rc = ep_watch(c, EPOLLIN | (rconn_unsent(c) ? EPOLLOUT : 0u));
	if (!rc)
		rc = ep_wait(c, timeout_us);
	if (rc)
		return rc;
	ep_move(c);
	return c->failed;
}

static int epoll_connect(struct rconn *c, const struct sockaddr *sa,
			 socklen_t len, int timeout_ms)
{
	int err = 0, rc;
	socklen_t el = sizeof(err);
	if (connect(c->fd, sa, len) == 0)
		return 0;
	if (errno != EINPROGRESS)
		return -errno;
	rc = ep_watch(c, EPOLLOUT);
	if (!rc)
		rc = ep_wait(c, (uint64_t)timeout_ms * 1000);
	if (rc)
		return rc;
	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
		return -errno;
	if (err)
		return -err;
	/* Still in progress after the wait: a timeout. */
	if (connect(c->fd, sa, len) < 0 && errno != EISCONN)
		return errno == EALREADY || errno == EINPROGRESS ? -ETIMEDOUT
								 : -errno;
	return 0;
}

/* ---- both ---- */

static int try_addr(struct rconn *c, const struct addrinfo *ai, int timeout_ms)
{
	int one = 1, flags = SOCK_CLOEXEC | (c->uring ? 0 : SOCK_NONBLOCK);
	int rc;
	c->fd = socket(ai->ai_family, ai->ai_socktype | flags, ai->ai_protocol);
	if (c->fd < 0)
		return -errno;
	/* Pipelined small commands: never wait for Nagle. */
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->ep_events = 0;
	rc = c->uring ? uring_connect(c, ai->ai_addr, ai->ai_addrlen, timeout_ms)
		      : epoll_connect(c, ai->ai_addr, ai->ai_addrlen, timeout_ms);
	if (rc) {
		close(c->fd);
		c->fd = -1;
	}
	return rc;
}

int rconn_connect(struct rconn *c, const char *host, uint16_t port,
		  int timeout_ms)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res, *ai;
	char service[8];
	int rc = -ENOENT;
	rconn_close(c);
	snprintf(service, sizeof(service), "%u", port);
	/* Name resolution is not socket I/O to Redis; a numeric address,
	 * the usual case, resolves without any. */
	if (getaddrinfo(host, service, &hints, &res) != 0)
		return -ENOENT;
	for (ai = res; ai; ai = ai->ai_next) {
		rc = try_addr(c, ai, timeout_ms);
		if (!rc)
			break;
	}
	freeaddrinfo(res);
	if (rc)
		return rc;
	c->connected = 1;
	c->failed = 0;
	return 0;
}

void rconn_close(struct rconn *c)
{
	if (c->fd >= 0) {
		if (c->uring)
			uring_teardown(c);
		else if (c->ep_events)
			epoll_ctl(c->epfd, EPOLL_CTL_DEL, c->fd, NULL);
		close(c->fd);
	}
	c->fd = -1;
	c->connected = 0;
	c->failed = 0;
	c->ep_events = 0;
	c->send_armed = c->recv_armed = 0;
	c->out[0].len = c->out[1].len = 0;
	c->sending = -1;
	c->send_off = 0;
	/* A fresh reader: a half-parsed reply of the old connection must not
	 * prefix the new one's. */
	if (c->rd) {
		redisReader *nr = redisReaderCreate();
		if (nr) {
			redisReaderFree(c->rd);
			c->rd = nr;
		}
	}
}

void rconn_free(struct rconn *c)
{
	if (!c)
		return;
	rconn_close(c);
	if (c->uring)
		io_uring_queue_exit(&c->ring);
	if (c->epfd >= 0)
		close(c->epfd);
	if (c->rd)
		redisReaderFree(c->rd);
	free(c->out[0].p);
	free(c->out[1].p);
	free(c->rbuf);
	free(c);
}

int rconn_append(struct rconn *c, int argc, const char **argv,
		 const size_t *lens)
{
	struct obuf *b = &c->out[c->cur];
	char *cmd = NULL;
	int n = redisFormatCommandArgv(&cmd, argc, argv, lens);
	if (n < 0)
		return -ENOMEM;
	if (b->len + (size_t)n > b->cap) {
		size_t cap = b->cap ? b->cap : 64 * 1024;
		char *np;
		while (cap < b->len + (size_t)n)
			cap *= 2;
		np = realloc(b->p, cap);
		if (!np) {
			redisFreeCommand(cmd);
			return -ENOMEM;
		}
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->len, cmd, (size_t)n);
	b->len += (size_t)n;
	redisFreeCommand(cmd);
	return 0;
}

int rconn_io(struct rconn *c, uint64_t timeout_us)
{
	if (c->fd < 0 || !c->connected)
		return -ENOTCONN;
	if (c->failed)
		return c->failed;
	return c->uring ? uring_io(c, timeout_us) : epoll_io(c, timeout_us);
}

int rconn_reply(struct rconn *c, redisReply **out)
{
	void *r = NULL;
	if (redisReaderGetReply(c->rd, &r) != REDIS_OK)
		return -EPROTO;
	*out = r;
	return r != NULL;
}
