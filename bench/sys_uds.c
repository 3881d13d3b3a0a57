/*
 * sys_uds.c - baseline (c): request/response over a Unix-domain stream
 * socket.  Each producer connects to a server process and pipelines framed
 * requests through the same timed loop as gpuq; the server runs the same
 * built-in handler on each request and writes the result back.  Server
 * processes (one by default, as gpuqd's CPU backend has one worker by
 * default) serve all connections with epoll.
 *
 * Frames are 16-byte aligned, so the handler sees a 16-byte aligned payload
 * as it does in gpuq: a header {len, status, seq} and the bytes, padded.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench.h"
#include "libclient/gpuq.h"

#define A16(x) (((size_t)(x) + 15) & ~(size_t)15)
#define BUF_MIN (1u << 20)
#define MAX_CONNS 1024

struct frame {
	uint32_t len;
	int32_t status;
	uint64_t seq;
};

struct buf {
	uint8_t *p;
	size_t cap, len, off; /* bytes [off, len) are pending */
};

struct uds_arg {
	char path[108];
	int lfd;
};

/* A buffer holds at least a few frames, and reads/writes of about 1 MiB
 * are enough to amortise the system calls. */
static size_t room_for(size_t frame)
{
	return frame * 4 > BUF_MIN ? frame * 4 : BUF_MIN;
}

static int buf_init(struct buf *b, size_t cap)
{
	b->p = aligned_alloc(16, A16(cap));
	b->cap = A16(cap);
	b->len = b->off = 0;
	return b->p ? 0 : -ENOMEM;
}

/* Write what the socket takes; 1 if all is out, 0 if some is left. */
static int buf_flush(struct buf *b, int fd)
{
	while (b->off < b->len) {
		ssize_t n = send(fd, b->p + b->off, b->len - b->off, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return 0;
		if (n < 0)
			return -errno;
		b->off += (size_t)n;
	}
	b->len = b->off = 0;
	return 1;
}

/* Move pending bytes to the front (keeps 16-byte alignment of frames that
 * start at a frame boundary), then read what fits.  0 on EOF. */
static ssize_t buf_fill(struct buf *b, int fd)
{
	ssize_t n;
	if (b->off) {
		memmove(b->p, b->p + b->off, b->len - b->off);
		b->len -= b->off;
		b->off = 0;
	}
	if (b->len == b->cap)
		return -EAGAIN;
	do
		n = read(fd, b->p + b->len, b->cap - b->len);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	b->len += (size_t)n;
	return n;
}

/* The next complete frame at b->off, or NULL. */
static const struct frame *buf_frame(const struct buf *b)
{
	struct frame f;
	if (b->len - b->off < sizeof(f))
		return NULL;
	memcpy(&f, b->p + b->off, sizeof(f));
	if (b->len - b->off < sizeof(f) + A16(f.len))
		return NULL;
	return (const struct frame *)(const void *)(b->p + b->off);
}

/* ---- client (producer) ---- */

struct uctx {
	const struct workload *w;
	int fd;
	struct payload pl;
	struct buf out, in;
	size_t req; /* one request frame */
};

static int u_connect(struct uctx *u, const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	u->fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (u->fd < 0 || connect(u->fd, (struct sockaddr *)&sa, sizeof(sa)))
		return -errno;
	return fcntl(u->fd, F_SETFL, O_NONBLOCK) ? -errno : 0;
}

static int u_open(const struct run_env *e, int idx, void **out,
		  struct proc_result *o)
{
	const struct uds_arg *a = e->arg;
	struct uctx *u = calloc(1, sizeof(*u));
	size_t res;
	int rc;
	if (!u)
		return -ENOMEM;
	*out = u;
	u->w = e->w;
	u->fd = -1;
	u->req = sizeof(struct frame) + A16(e->w->size);
	res = sizeof(struct frame) + A16(payload_result_bytes(e->w->handler, e->w->size));
	if (payload_init(&u->pl, e->w->handler, e->w->size, idx) ||
	    buf_init(&u->out, room_for(u->req)) || buf_init(&u->in, room_for(res)))
		return -ENOMEM;
	close(a->lfd);
	rc = u_connect(u, a->path);
	if (rc)
		snprintf(o->what, sizeof(o->what), "connect %.80s", a->path);
	return rc;
}

static int u_send(void *ctx, uint64_t seq, uint32_t k, const uint64_t *stamp,
		  struct proc_result *o)
{
	struct uctx *u = ctx;
	int rc = buf_flush(&u->out, u->fd);
	(void)stamp;
	if (rc <= 0) {
		if (rc < 0)
			loop_note(o, "write to server", seq);
		return rc; /* the last batch is still going out */
	}
	if (k > u->out.cap / u->req)
		k = (uint32_t)(u->out.cap / u->req);
	for (uint32_t i = 0; i < k; i++) {
		uint8_t *p = u->out.p + (size_t)i * u->req;
		struct frame f = { 0, 0, seq + i };
		f.len = (uint32_t)payload_fill(&u->pl, seq + i, p + sizeof(f), u->w->size);
		memcpy(p, &f, sizeof(f));
	}
	u->out.len = (size_t)k * u->req;
	rc = buf_flush(&u->out, u->fd);
	if (rc < 0) {
		loop_note(o, "write to server", seq);
		return rc;
	}
	return (int)k;
}

static int u_poll(void *ctx, struct loop_done *d, uint32_t max,
		  struct proc_result *o)
{
	struct uctx *u = ctx;
	const struct frame *f;
	uint32_t n = 0;
	ssize_t r;
	if (buf_flush(&u->out, u->fd) < 0) {
		loop_note(o, "write to server", 0);
		return -EPIPE;
	}
	r = buf_fill(&u->in, u->fd);
	if (r == 0 || (r < 0 && r != -EAGAIN)) {
		loop_note(o, r ? "read from server" : "server closed", 0);
		return r ? (int)r : -EPIPE;
	}
	while (n < max && (f = buf_frame(&u->in))) {
		d[n].seq = f->seq;
		d[n].status = f->status;
		d[n].len = f->len;
		d[n].res = f + 1;
		u->in.off += sizeof(*f) + A16(f->len);
		n++;
	}
	return (int)n;
}

static int u_run(void *ctx, const struct loop_spec *ls, struct proc_result *o,
		 uint64_t *end_ns)
{
	struct uctx *u = ctx;
	struct loop_port port = { u_send, u_poll, u };
	struct loop_spec s = *ls;
	if (u->w->verify) {
		s.check = payload_check;
		s.check_ctx = &u->pl;
	}
	return loop_run(&port, &s, o, end_ns);
}

static void u_close(void *ctx)
{
	struct uctx *u = ctx;
	if (u->fd >= 0)
		close(u->fd);
	payload_free(&u->pl);
	free(u->out.p);
	free(u->in.p);
	free(u);
}

/* ---- server (helper) ---- */

struct conn {
	int fd;
	uint32_t events;
	struct buf in, out;
};

struct server {
	const struct workload *w;
	int ep, lfd, open;
	size_t req_frame, res_frame; /* largest request, response */
	uint32_t res_cap;
	uint64_t handled;
};

static void conn_close(struct server *s, struct conn *c)
{
	epoll_ctl(s->ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	free(c->in.p);
	free(c->out.p);
	free(c);
	s->open--;
}

static void accept_all(struct server *s)
{
	for (;;) {
		struct epoll_event ev = { .events = EPOLLIN };
		int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK);
		struct conn *c;
		if (fd < 0)
			return; /* EAGAIN: another server took it, or none left */
		c = calloc(1, sizeof(*c));
		if (!c || buf_init(&c->in, room_for(s->req_frame)) ||
		    buf_init(&c->out, room_for(s->res_frame))) {
			if (c) {
				free(c->in.p);
				free(c);
			}
			close(fd);
			continue;
		}
		c->fd = fd;
		c->events = ev.events;
		ev.data.ptr = c;
		epoll_ctl(s->ep, EPOLL_CTL_ADD, fd, &ev);
		s->open++;
	}
}

/* Answer every complete request there is room to answer. */
static void serve(struct server *s, struct conn *c)
{
	const struct frame *f;
	if (!c->out.len)
		c->out.off = 0;
	while ((f = buf_frame(&c->in)) && c->out.cap - c->out.len >= s->res_frame) {
		uint8_t *p = c->out.p + c->out.len;
		struct frame r = { 0, 0, f->seq };
		r.status = payload_handle(s->w->handler, f + 1, f->len, f->seq,
					  p + sizeof(r), s->res_cap, &r.len);
		memcpy(p, &r, sizeof(r));
		c->out.len += sizeof(r) + A16(r.len);
		c->in.off += sizeof(*f) + A16(f->len);
		s->handled++;
	}
}

static int conn_event(struct server *s, struct conn *c)
{
	struct epoll_event ev = { .data.ptr = c };
	ssize_t r = buf_fill(&c->in, c->fd);
	int eof = r == 0 || (r < 0 && r != -EAGAIN), out;
	/* Until the requests read are all answered or the socket is full:
	 * a client waiting for these answers sends nothing that would wake
	 * us again. */
	do {
		serve(s, c);
		out = buf_flush(&c->out, c->fd);
	} while (out > 0 && buf_frame(&c->in));
	if (out < 0 || (eof && !buf_frame(&c->in))) {
		conn_close(s, c);
		return 0;
	}
	/* Wait for room to write before taking more requests in. */
	ev.events = c->out.len ? EPOLLOUT : EPOLLIN;
	if (ev.events != c->events) {
		c->events = ev.events;
		epoll_ctl(s->ep, EPOLL_CTL_MOD, c->fd, &ev);
	}
	return 0;
}

static int server_loop(const struct run_env *e, struct server *s)
{
	struct epoll_event evs[64];
	for (;;) {
		int n = epoll_wait(s->ep, evs, 64, 20);
		if (n < 0 && errno != EINTR)
			return -errno;
		for (int i = 0; i < n; i++) {
			if (!evs[i].data.ptr)
				accept_all(s);
			else
				conn_event(s, evs[i].data.ptr);
		}
		if (n <= 0 && !s->open &&
		    !__atomic_load_n(&e->sh->producers_left, __ATOMIC_ACQUIRE))
			return 0;
	}
}

static int u_server(const struct run_env *e, int idx, struct proc_result *o)
{
	const struct uds_arg *a = e->arg;
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
	struct server s = { .w = e->w, .lfd = a->lfd };
	int rc;
	(void)idx;
	s.res_cap = payload_result_bytes(e->w->handler, e->w->size);
	s.res_frame = sizeof(struct frame) + A16(s.res_cap);
	s.req_frame = sizeof(struct frame) + A16(e->w->size);
	s.ep = epoll_create1(0);
	rc = s.ep < 0 || epoll_ctl(s.ep, EPOLL_CTL_ADD, s.lfd, &ev) ? -errno : 0;
	procs_gate_wait(&e->sh->ready, 60000);
	if (!rc)
		rc = server_loop(e, &s);
	if (rc)
		snprintf(o->what, sizeof(o->what), "server: epoll");
	o->verified = s.handled;
	return rc;
}

static const struct sys_ops uds_ops = {
	.open = u_open, .run = u_run, .close = u_close, .helper = u_server,
};

static int listen_on(struct uds_arg *a, char *dir)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (!mkdtemp(dir))
		return -errno;
	snprintf(a->path, sizeof(a->path), "%s/uds.sock", dir);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", a->path);
	a->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (a->lfd < 0 || bind(a->lfd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    listen(a->lfd, PROCS_MAX))
		return -errno;
	return 0;
}

int sys_uds_run(const struct workload *w, int servers, struct sys_result *r,
		const char *label)
{
	char dir[] = "/tmp/gpuq-bench-XXXXXX";
	struct uds_arg a = { .lfd = -1 };
	int rc = listen_on(&a, dir);
	if (rc)
		sys_result_none(r, SYS_UDS, ST_ERROR, "listen: %s", strerror(-rc));
	else
		rc = run_system(SYS_UDS, w, &uds_ops, &a, servers, r, label);
	if (a.lfd >= 0)
		close(a.lfd);
	unlink(a.path);
	rmdir(dir);
	return rc;
}
