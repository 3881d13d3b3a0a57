/* lincheck.c - see lincheck.h. */
#include "tests/lincheck.h"

#include <string.h>

#include "libclient/gpuq.h"

/* Apply op to the sequential model's state s; 1 if its outcome matches. */
static int model_step(const struct lin_op *o, uint64_t s, uint64_t *next)
{
	*next = s;
	switch (o->k) {
	case LIN_GET:
		return o->rc == (s ? 0 : GPUQ_ENOKEY) && o->res == s;
	case LIN_UPSERT:
		*next = o->arg;
		return o->rc == 0;
	case LIN_INSERT:
		if (s)
			return o->rc == GPUQ_EEXISTS;
		*next = o->arg;
		return o->rc == 0;
	case LIN_UPDATE:
		if (!s)
			return o->rc == GPUQ_ENOKEY;
		*next = o->arg;
		return o->rc == 0;
	case LIN_DEL:
		*next = 0;
		return o->rc == (s ? 0 : GPUQ_ENOKEY);
	case LIN_CAS:
		if (!s)
			return o->rc == GPUQ_ENOKEY;
		if (s != o->expect)
			return o->rc == GPUQ_ECASFAIL;
		*next = o->arg;
		return o->rc == 0;
	default:
		return 0;
	}
}

#define MEMO 4096

struct search {
	const struct lin_op *ops;
	int n;
	uint64_t final;
	struct { uint64_t mask, state; } memo[MEMO];
	uint8_t used[MEMO];
};

/* Has the search been here (same operations placed, same state)? */
static int memo_seen(struct search *s, uint64_t mask, uint64_t state)
{
	uint64_t h = (mask * 0x9e3779b97f4a7c15ull) ^ (state * 0xc2b2ae3d27d4eb4full);
	for (uint32_t i = 0; i < MEMO; i++) {
		uint32_t j = (uint32_t)((h + i) % MEMO);
		if (!s->used[j]) {
			s->used[j] = 1;
			s->memo[j].mask = mask;
			s->memo[j].state = state;
			return 0;
		}
		if (s->memo[j].mask == mask && s->memo[j].state == state)
			return 1;
	}
	return 0; /* memo full: search on without it */
}

/* Pick any op that no pending op precedes in real time, if the model
 * agrees with its outcome; backtrack otherwise. */
static int lin_dfs(struct search *s, uint64_t mask, uint64_t state)
{
	uint64_t all = s->n == 64 ? ~0ull : (1ull << s->n) - 1;
	uint64_t min_resp = UINT64_MAX;
	if (mask == all)
		return state == s->final;
	if (memo_seen(s, mask, state))
		return 0;
	for (int i = 0; i < s->n; i++)
		if (!(mask >> i & 1) && s->ops[i].resp < min_resp)
			min_resp = s->ops[i].resp;
	for (int i = 0; i < s->n; i++) {
		uint64_t next;
		if (mask >> i & 1 || s->ops[i].inv > min_resp)
			continue;
		if (model_step(&s->ops[i], state, &next) &&
		    lin_dfs(s, mask | 1ull << i, next))
			return 1;
	}
	return 0;
}

int lin_check(const struct lin_op *ops, int n, uint64_t initial,
	      uint64_t final)
{
	static struct search s;
	if (n < 0 || n > LIN_MAXOPS)
		return -1;
	memset(s.used, 0, sizeof(s.used));
	s.ops = ops;
	s.n = n;
	s.final = final;
	return lin_dfs(&s, 0, initial);
}
