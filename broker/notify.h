/*
 * notify.h - readiness, stop and watchdog notifications to a service
 * manager (systemd's sd_notify protocol, without libsystemd).
 *
 * The protocol (sd_notify(3), systemd.io/NOTIFY): when $NOTIFY_SOCKET is
 * set it names a Unix datagram socket, a file system path ("/run/...") or
 * an abstract one ("@name"); each notification is one datagram of
 * newline-separated VAR=value assignments.  With $NOTIFY_SOCKET unset every
 * call here is a no-op that returns 0, so gpuqd runs the same outside
 * systemd.
 *
 * The watchdog is on when $WATCHDOG_USEC is a positive number and
 * $WATCHDOG_PID is unset or names this process.  The manager then expects
 * "WATCHDOG=1" at least every WATCHDOG_USEC microseconds; gpuqd sends one
 * from its event-loop tick whenever notify_watchdog_due() says half the
 * interval has passed, so a stuck loop stops the pings and the manager
 * restarts the broker.
 *
 * Returns: 1 sent, 0 nothing to do (no $NOTIFY_SOCKET, or an address that is
 * neither a path nor "@"), or a negated errno.  Sends never block.
 */
#ifndef GPUQ_BROKER_NOTIFY_H
#define GPUQ_BROKER_NOTIFY_H

#include <stdint.h>

/* "READY=1\nSTATUS=<fmt...>\nMAINPID=<getpid()>". */
int notify_ready(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "STOPPING=1\nSTATUS=stopping": the broker is shutting down. */
int notify_stopping(void);
/* "STATUS=<fmt...>": free-form status line for `systemctl status`. */
int notify_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The watchdog interval from the environment in ns, 0 when it is off. */
uint64_t notify_watchdog_ns(void);
/* 1 when the watchdog is on and half its interval (less a tenth, for tick
 * jitter) has passed since the last notify_watchdog(), or none was sent
 * yet; now_ns is CLOCK_MONOTONIC. */
int notify_watchdog_due(uint64_t now_ns);
/* "WATCHDOG=1"; remembers now_ns as the time of the last ping. */
int notify_watchdog(uint64_t now_ns);

/* Send one raw datagram (msg as is) to $NOTIFY_SOCKET. */
int notify_send(const char *msg);

#endif
