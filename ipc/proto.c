/* proto.c - control message framing, validation and fd passing. */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "ipc/proto.h"
#include "libclient/gpuq.h"

/* Body size each type must have; UINT32_MAX means "variable" (STATUS_OK). */
static uint32_t body_size(uint16_t type)
{
	switch (type) {
	case PROTO_HELLO:
	case PROTO_STATUS:
	case PROTO_SHUTDOWN:
		return 0;
	case PROTO_HELLO_OK:
		return sizeof(struct proto_hello_ok);
	case PROTO_OPEN:
		return sizeof(struct proto_open);
	case PROTO_OPEN_OK:
		return sizeof(struct proto_open_ok);
	case PROTO_CLOSE:
		return sizeof(struct proto_close);
	case PROTO_ERROR:
		return sizeof(struct proto_error);
	case PROTO_DLQ:
		return sizeof(struct proto_dlq_req);
	case PROTO_PAUSE:
	case PROTO_RESUME:
		return sizeof(struct proto_name);
	case PROTO_CLIENTS:
		return sizeof(struct proto_clients_req);
	case PROTO_STATUS_OK:
	case PROTO_DLQ_OK:
	case PROTO_CLIENTS_OK:
		return UINT32_MAX;
	default:
		return 0;
	}
}

static int has_nul(const char *s, size_t cap) { return memchr(s, 0, cap) != NULL; }

static int check_dlq_ok(const struct proto_dlq_ok *d, uint32_t len)
{
	if (len < sizeof(*d) || d->nitems > PROTO_DLQ_MAX_ITEMS ||
	    d->data_len > PROTO_DLQ_MAX_DATA || (d->data_len && d->nitems != 1) ||
	    len != sizeof(*d) + d->nitems * sizeof(d->items[0]) + d->data_len)
		return GPUQ_EPROTO;
	return 0;
}

static int check_clients_ok(const struct proto_clients_ok *c, uint32_t len)
{
	if (len < sizeof(*c) || c->nitems > PROTO_CLIENTS_MAX_ITEMS ||
	    len != sizeof(*c) + c->nitems * sizeof(c->items[0]))
		return GPUQ_EPROTO;
	for (uint32_t i = 0; i < c->nitems; i++)
		if (!has_nul(c->items[i].queue, IPC_NAME_MAX))
			return GPUQ_EPROTO;
	return 0;
}

static int check_body(uint16_t type, const void *body, uint32_t len)
{
	const struct proto_status_ok *st = body;
	switch (type) {
	case PROTO_DLQ:
		return has_nul(((const struct proto_dlq_req *)body)->name,
			       IPC_NAME_MAX) ? 0 : GPUQ_EPROTO;
	case PROTO_DLQ_OK:
		return check_dlq_ok(body, len);
	case PROTO_PAUSE:
	case PROTO_RESUME:
		return has_nul(((const struct proto_name *)body)->name,
			       IPC_NAME_MAX) ? 0 : GPUQ_EPROTO;
	case PROTO_CLIENTS_OK:
		return check_clients_ok(body, len);
	case PROTO_OPEN:
		return has_nul(((const struct proto_open *)body)->name,
			       IPC_NAME_MAX) ? 0 : GPUQ_EPROTO;
	case PROTO_CLOSE:
		return has_nul(((const struct proto_close *)body)->name,
			       IPC_NAME_MAX) ? 0 : GPUQ_EPROTO;
	case PROTO_ERROR:
		return has_nul(((const struct proto_error *)body)->text,
			       sizeof(((struct proto_error *)0)->text))
			       ? 0 : GPUQ_EPROTO;
	case PROTO_STATUS_OK:
		if (len < sizeof(*st) || st->nqueues > PROTO_MAX_QUEUES ||
		    len != sizeof(*st) + st->nqueues * sizeof(st->q[0]))
			return GPUQ_EPROTO;
		for (uint32_t i = 0; i < st->nqueues; i++)
			if (!has_nul(st->q[i].name, IPC_NAME_MAX) ||
			    !has_nul(st->q[i].handler, IPC_HANDLER_MAX))
				return GPUQ_EPROTO;
		return 0;
	default:
		return 0;
	}
}

int proto_decode(const void *buf, size_t n, struct proto_msg *m)
{
	uint32_t want;
	if (!buf || !m || n < sizeof(struct proto_hdr) || n > PROTO_MAX_MSG)
		return GPUQ_EPROTO;
	memcpy(&m->hdr, buf, sizeof(m->hdr));
	if (m->hdr.magic != PROTO_MAGIC)
		return GPUQ_EPROTO;
	if (m->hdr.version != PROTO_VERSION)
		return GPUQ_EVERSION;
	if (m->hdr.type == 0 || m->hdr.type >= PROTO_TYPE_MAX)
		return GPUQ_EPROTO;
	if (m->hdr.body_len != n - sizeof(struct proto_hdr))
		return GPUQ_EPROTO;
	want = body_size(m->hdr.type);
	if (want != UINT32_MAX && want != m->hdr.body_len)
		return GPUQ_EPROTO;
	/* Bodies are read in place; the header keeps them 8-byte aligned
	 * provided buf is. */
	m->body = (const uint8_t *)buf + sizeof(struct proto_hdr);
	return check_body(m->hdr.type, m->body, m->hdr.body_len);
}

int proto_encode(void *buf, size_t cap, uint16_t type, uint32_t seq,
		 const void *body, uint32_t body_len)
{
	struct proto_hdr h = { PROTO_MAGIC, PROTO_VERSION, type, body_len, seq };
	size_t total = sizeof(h) + body_len;
	if (total > cap || total > PROTO_MAX_MSG)
		return -EMSGSIZE;
	memcpy(buf, &h, sizeof(h));
	if (body_len)
		memcpy((uint8_t *)buf + sizeof(h), body, body_len);
	return (int)total;
}

void proto_msghdr_fd(struct msghdr *mh, struct iovec *iov, void *cmsgbuf,
		     size_t cmsgcap, void *buf, size_t len, int fd)
{
	memset(mh, 0, sizeof(*mh));
	iov->iov_base = buf;
	iov->iov_len = len;
	mh->msg_iov = iov;
	mh->msg_iovlen = 1;
	if (fd >= 0 && cmsgcap >= CMSG_SPACE(sizeof(int))) {
		struct cmsghdr *c;
		memset(cmsgbuf, 0, CMSG_SPACE(sizeof(int)));
		mh->msg_control = cmsgbuf;
		mh->msg_controllen = CMSG_SPACE(sizeof(int));
		c = CMSG_FIRSTHDR(mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
}

int proto_send(int sock, const void *buf, size_t len, int fd)
{
	union { char b[CMSG_SPACE(sizeof(int))]; struct cmsghdr a; } cm;
	struct msghdr mh;
	struct iovec iov;
	ssize_t n;
	proto_msghdr_fd(&mh, &iov, cm.b, sizeof(cm.b), (void *)buf, len, fd);
	do
		n = sendmsg(sock, &mh, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return (size_t)n == len ? 0 : -EIO;
}

int proto_recv(int sock, void *buf, size_t cap, int *fd)
{
	union { char b[CMSG_SPACE(sizeof(int))]; struct cmsghdr a; } cm;
	struct msghdr mh;
	struct iovec iov = { buf, cap };
	struct cmsghdr *c;
	ssize_t n;
	*fd = -1;
	memset(&mh, 0, sizeof(mh));
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = cm.b;
	mh.msg_controllen = sizeof(cm.b);
	do
		n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	for (c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
		    c->cmsg_len == CMSG_LEN(sizeof(int)))
			memcpy(fd, CMSG_DATA(c), sizeof(int));
	if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
		if (*fd >= 0)
			close(*fd);
		*fd = -1;
		return GPUQ_EPROTO;
	}
	return (int)n;
}
