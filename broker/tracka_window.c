/* tracka_window.c - held stream entries: sequence window and id hash set. */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/tracka_window.h"
#include "ipc/ring.h"

static int parse_u64(const char *s, size_t len, uint64_t *out)
{
	uint64_t v = 0;
	if (len == 0 || len > 20)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		uint64_t d;
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		d = (uint64_t)(s[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -EINVAL;
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}

int sid_parse(const char *s, size_t len, struct sid *out)
{
	const char *dash = memchr(s, '-', len);
	if (!dash)
		return -EINVAL;
	if (parse_u64(s, (size_t)(dash - s), &out->ms) ||
	    parse_u64(dash + 1, len - (size_t)(dash - s) - 1, &out->seq))
		return -EINVAL;
	return 0;
}

int sid_format(const struct sid *id, char *buf)
{
	return snprintf(buf, SID_STR_MAX, "%" PRIu64 "-%" PRIu64, id->ms,
			id->seq);
}

int win_init(struct ta_window *w, uint32_t cap)
{
	memset(w, 0, sizeof(*w));
	if (!cap || (cap & (cap - 1)))
		return -EINVAL;
	w->cap = cap;
	w->mask = cap - 1;
	/* Load factor at most 1/2 keeps linear probing short. */
	w->hmask = 2ull * cap - 1;
	w->ent = calloc(cap, sizeof(*w->ent));
	w->hs = calloc(2ull * cap, sizeof(*w->hs));
	if (!w->ent || !w->hs) {
		win_fini(w);
		return -ENOMEM;
	}
	return 0;
}

void win_fini(struct ta_window *w)
{
	free(w->ent);
	free(w->hs);
	w->ent = NULL;
	w->hs = NULL;
}

static uint64_t home(const struct ta_window *w, const struct sid *id)
{
	return ipc_mix64(id->ms ^ ipc_mix64(id->seq)) & w->hmask;
}

static int same(const struct sid *a, const struct sid *b)
{
	return a->ms == b->ms && a->seq == b->seq;
}

int64_t win_find(const struct ta_window *w, const struct sid *id)
{
	for (uint64_t i = home(w, id);; i = (i + 1) & w->hmask) {
		uint64_t v = w->hs[i];
		if (!v)
			return -1;
		if (same(&win_ent(w, v - 1)->id, id))
			return (int64_t)(v - 1);
	}
}

uint64_t win_add(struct ta_window *w, const struct sid *id,
		 uint32_t deliveries)
{
	uint64_t seq = w->head++;
	struct ta_ent *e = win_ent(w, seq);
	uint64_t i = home(w, id);
	memset(e, 0, sizeof(*e));
	e->id = *id;
	e->deliveries = deliveries;
	e->state = E_RING; /* the caller sets the real one */
	while (w->hs[i])
		i = (i + 1) & w->hmask;
	w->hs[i] = seq + 1;
	w->held++;
	return seq;
}

/* Remove seq from the hash set by backward-shift deletion (no
 * tombstones, so lookups never slow down over time). */
static void hs_remove(struct ta_window *w, uint64_t seq)
{
	uint64_t i = home(w, &win_ent(w, seq)->id), j;
	while (w->hs[i] != seq + 1)
		i = (i + 1) & w->hmask;
	for (j = (i + 1) & w->hmask; w->hs[j]; j = (j + 1) & w->hmask) {
		uint64_t k = home(w, &win_ent(w, w->hs[j] - 1)->id);
		/* Move j into the hole at i unless its home lies in (i, j]. */
		int stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
		if (!stays) {
			w->hs[i] = w->hs[j];
			i = j;
		}
	}
	w->hs[i] = 0;
}

void win_release(struct ta_window *w, uint64_t seq)
{
	struct ta_ent *e = win_ent(w, seq);
	if (e->state == E_FREE)
		return;
	hs_remove(w, seq);
	e->state = E_FREE;
	w->held--;
	while (w->tail < w->head && win_ent(w, w->tail)->state == E_FREE)
		w->tail++;
}
