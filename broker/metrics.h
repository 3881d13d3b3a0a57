/* metrics.h - gpuqd's Prometheus text-format endpoint (GET /metrics). */
#ifndef GPUQ_BROKER_METRICS_H
#define GPUQ_BROKER_METRICS_H

#include <stddef.h>

struct broker;
struct metrics;

/* Listen on addr ("HOST:PORT", numeric IPv4, e.g. 127.0.0.1:9464) and serve
 * from a thread of its own, so a scrape never waits on the event loop and a
 * stuck loop still shows in the metrics.  Returns 0, GPUQ_ECONFIG for a bad
 * address, or a negated errno. */
int metrics_start(struct broker *b, const char *addr, struct metrics **out);
void metrics_stop(struct metrics *m);

/* The exposition text for b (also used by tests); returns its length, or a
 * negated errno.  *out is malloc'd. */
int metrics_render(struct broker *b, char **out);

#endif
