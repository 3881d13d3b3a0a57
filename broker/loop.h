/*
 * loop.h - gpuqd's event loop: the listening socket, client connections, a
 * 100 ms tick and SIGTERM/SIGINT.  Two drivers with one interface:
 * io_uring (default) and epoll (fallback where io_uring is unavailable, e.g.
 * under Docker's default seccomp profile, or forced with --force-epoll).
 * Both call the same ctl_* functions, so the protocol is written once.
 */
#ifndef GPUQ_BROKER_LOOP_H
#define GPUQ_BROKER_LOOP_H

#include <stddef.h>

struct broker;
struct bconn;
struct loop;

#define LOOP_TICK_NS 100000000ull
/* While draining the tick is faster, so that the end of a drain is seen
 * (and timed, and answered) within milliseconds. */
#define LOOP_DRAIN_TICK_NS 5000000ull

struct loop_driver {
	const char *kind;
	int (*create)(struct loop *l);
	int (*run)(struct loop *l);
	int (*send)(struct loop *l, struct bconn *c, const void *buf,
		    size_t len, int fd);
	void (*drop)(struct loop *l, struct bconn *c);
	void (*destroy)(struct loop *l);
};

struct loop {
	const struct loop_driver *drv;
	struct broker *b;
	int listen_fd;
	int signal_fd;
	int stopping;
	void *priv;
	struct bconn *conns; /* all open connections */
};

extern const struct loop_driver loop_uring_driver;
extern const struct loop_driver loop_epoll_driver;

/* io_uring unless force_epoll or io_uring cannot be set up. */
int loop_create(struct loop **out, struct broker *b, int listen_fd,
		int force_epoll);
int loop_run(struct loop *l);
void loop_stop(struct loop *l);
/* Queue a reply (with an fd to pass, or -1). */
int loop_send(struct loop *l, struct bconn *c, const void *buf, size_t len,
	      int fd);
/* Close a connection; ctl_hangup() is called for it. */
void loop_drop(struct loop *l, struct bconn *c);
void loop_destroy(struct loop *l);
const char *loop_kind(const struct loop *l);

/* Shared helpers for the drivers. */
struct bconn *loop_conn_new(struct loop *l, int fd);
/* Detach everything the connection held, close and free it (and its
 * loop_priv). */
void loop_conn_free(struct loop *l, struct bconn *c);
void loop_signal(struct loop *l, int signo);

#endif
