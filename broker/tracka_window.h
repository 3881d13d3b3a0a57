/*
 * tracka_window.h - the stream entries a Track A binding holds: read from
 * Redis and not yet acknowledged (or given up).
 *
 * Each held entry gets the next sequence number, which is also its message
 * id in the ring and so names its completion entry.  The window never holds
 * more than `cap` (the queue's completion capacity) sequence numbers from
 * the oldest held one, which is what keeps completion entries from being
 * reused while unread.  A hash set finds a held entry by its stream id, so
 * an entry delivered again while still in progress here (own pending
 * entries re-read after a reconnect, or claimed back) is not run twice.
 */
#ifndef GPUQ_BROKER_TRACKA_WINDOW_H
#define GPUQ_BROKER_TRACKA_WINDOW_H

#include <stddef.h>
#include <stdint.h>

/* A stream entry id, "<ms>-<seq>". */
struct sid {
	uint64_t ms, seq;
};

/* Longest "<ms>-<seq>" plus NUL. */
#define SID_STR_MAX 42

/* Parse exactly "<digits>-<digits>" (each below 2^64).  0 or -EINVAL. */
int sid_parse(const char *s, size_t len, struct sid *out);
/* Format into buf (SID_STR_MAX bytes); returns the length. */
int sid_format(const struct sid *id, char *buf);

enum ent_state {
	E_FREE = 0,
	E_RING,    /* published into the ring, result not yet read */
	E_FETCH,   /* failed in the ring: reading its payload back for the DLQ */
	E_WRITING, /* result or dead letter sent, waiting for Redis's reply */
	E_ACKING,  /* XACK sent, waiting for its reply */
};

struct ta_ent {
	struct sid id;
	uint32_t deliveries; /* as Redis counted them when we took it */
	uint8_t state;       /* enum ent_state */
	uint8_t dlq;         /* 1: written to the dead-letter stream */
	uint16_t ring;       /* the ring it went into */
	uint32_t attempts;   /* handler runs, once its result is read */
};

struct ta_window {
	uint32_t cap;   /* power of two */
	uint64_t mask;
	struct ta_ent *ent;
	uint64_t head, tail; /* sequence numbers [tail, head) may be held */
	uint64_t *hs;        /* hash set: seq + 1, or 0 for empty */
	uint64_t hmask;
	uint32_t held;
};

int win_init(struct ta_window *w, uint32_t cap);
void win_fini(struct ta_window *w);
static inline uint32_t win_room(const struct ta_window *w)
{
	return w->cap - (uint32_t)(w->head - w->tail);
}
static inline struct ta_ent *win_ent(const struct ta_window *w, uint64_t seq)
{
	return &w->ent[seq & w->mask];
}
/* The sequence number holding id, or -1. */
int64_t win_find(const struct ta_window *w, const struct sid *id);
/* Hold id under the next sequence number (the caller checked win_room). */
uint64_t win_add(struct ta_window *w, const struct sid *id,
		 uint32_t deliveries);
/* Let go of seq: its id may be taken again. */
void win_release(struct ta_window *w, uint64_t seq);

#endif
