/*
 * redis_conn.h - one pipelined connection to Redis for Track A.
 *
 * Every socket operation (connect, send, recv, shutdown) goes through
 * io_uring, or through a non-blocking socket and epoll where io_uring is
 * unavailable or gpuqd runs with force_epoll.  hiredis is used only as a
 * codec: redisFormatCommandArgv() to encode commands and redisReader to
 * parse replies.  Commands are appended to an output buffer and sent in as
 * few writes as the kernel allows; replies come back in command order.
 *
 * Not thread-safe: one connection belongs to one thread.
 */
#ifndef GPUQ_BROKER_REDIS_CONN_H
#define GPUQ_BROKER_REDIS_CONN_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

struct rconn;

/* A connection object with its own io_uring (or epoll) instance; not yet
 * connected.  Returns 0, -ENOMEM, or a negated errno from epoll_create. */
int rconn_new(struct rconn **out, int force_epoll);
void rconn_free(struct rconn *c);
/* "io_uring" or "epoll": which I/O path this connection uses. */
const char *rconn_kind(const struct rconn *c);

/* Connect (TCP) to host:port, waiting at most timeout_ms.  Errors: a
 * negated errno (-ECONNREFUSED, -ETIMEDOUT, -EHOSTUNREACH ...), or
 * -ENOENT when host does not resolve. */
int rconn_connect(struct rconn *c, const char *host, uint16_t port,
		  int timeout_ms);
/* Drop the connection: unsent commands and unread replies are discarded.
 * The object can connect again. */
void rconn_close(struct rconn *c);
int rconn_connected(const struct rconn *c);

/* Append one command (binary-safe arguments).  Returns 0 or -ENOMEM. */
int rconn_append(struct rconn *c, int argc, const char **argv,
		 const size_t *lens);
/* Bytes appended but not yet sent. */
size_t rconn_unsent(const struct rconn *c);

/*
 * Send what can be sent and take in what has arrived, waiting up to
 * timeout_us for some progress (0: do not wait).  Returns 0, or a negated
 * errno once the connection has failed (-ECONNRESET when Redis closed it,
 * -EPROTO when its replies could not be parsed); then only rconn_close()
 * and rconn_connect() make sense.
 */
int rconn_io(struct rconn *c, uint64_t timeout_us);

/* The next complete reply: 1 and *out (free with freeReplyObject), 0 when
 * none is buffered, -EPROTO on a protocol error. */
int rconn_reply(struct rconn *c, redisReply **out);

#endif
