/* drive.c - the shared pipelined producer loop. */
#include "config.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/drive.h"

#define POLL_MAX 256

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Copying path: fill a staging area, one enqueue_batch call. */
static int send_copy(gpuq_queue *q, const struct drive_spec *s, uint8_t *stage,
		     gpuq_iov *iov, uint64_t *ids, uint32_t slot, uint64_t seq,
		     uint32_t k)
{
	for (uint32_t i = 0; i < k; i++) {
		iov[i].data = stage + (size_t)i * slot;
		iov[i].len = s->fill(s->ctx, seq + i, stage + (size_t)i * slot, slot);
	}
	return gpuq_enqueue_batch(q, iov, k, ids, 0);
}

/* Zero-copy path: fill the loaned slots in place. */
static int send_loan(gpuq_queue *q, const struct drive_spec *s, uint32_t *lens,
		     uint64_t *ids, uint64_t seq, uint32_t k)
{
	gpuq_loan loan;
	int rc = gpuq_reserve(q, k, &loan, 0);
	if (rc)
		return rc;
	for (uint32_t i = 0; i < k; i++)
		lens[i] = (uint32_t)s->fill(s->ctx, seq + i,
					    gpuq_loan_slot(q, &loan, i),
					    loan.slot_bytes);
	rc = gpuq_commit(q, &loan, lens);
	ids[0] = loan.first_id;
	return rc ? rc : (int)k;
}

static void note(struct proc_result *o, const char *what, uint64_t seq)
{
	if (!o->what[0])
		snprintf(o->what, sizeof(o->what), "%s (message %llu)", what,
			 (unsigned long long)seq);
}

int drive(gpuq_queue *q, const struct drive_spec *s, struct proc_result *o)
{
	gpuq_queue_info info;
	gpuq_completion comp[POLL_MAX];
	uint64_t sent = 0, done = 0, id0 = UINT64_MAX;
	uint32_t window = s->window, batch = s->batch ? s->batch : 1;
	uint8_t *stage = NULL;
	gpuq_iov *iov = NULL;
	uint32_t *lens = NULL;
	uint64_t *ids = NULL;
	double t0, last_progress;
	int rc = 0;
	gpuq_queue_info_get(q, &info);
	if (!window || window > info.cq_capacity)
		window = info.cq_capacity;
	if (batch > window)
		batch = window;
	stage = malloc((size_t)batch * info.slot_bytes);
	iov = calloc(batch, sizeof(*iov));
	lens = calloc(batch, sizeof(*lens));
	ids = calloc(batch, sizeof(*ids));
	if (!stage || !iov || !lens || !ids) {
		rc = -ENOMEM;
		goto out;
	}
	t0 = last_progress = now_s();
	while (done < s->count) {
		int progressed = 0, n;
		uint64_t inflight = sent - done;
		if (sent < s->count && inflight < window) {
			uint64_t k = s->count - sent;
			if (k > batch)
				k = batch;
			if (k > window - inflight)
				k = window - inflight;
			n = s->zero_copy
				    ? send_loan(q, s, lens, ids, sent, (uint32_t)k)
				    : send_copy(q, s, stage, iov, ids,
						info.slot_bytes, sent, (uint32_t)k);
			if (n > 0) {
				/* A handle's ids are consecutive, so message
				 * seq has id id0 + seq. */
				if (id0 == UINT64_MAX)
					id0 = ids[0];
				sent += (uint64_t)n;
				progressed = 1;
			} else if (n != GPUQ_EFULL && n != GPUQ_ECQFULL) {
				rc = n;
				note(o, gpuq_strerror(n), sent);
				break;
			}
		}
		n = gpuq_poll(q, comp, POLL_MAX);
		if (n < 0) {
			rc = n;
			note(o, gpuq_strerror(n), done);
			break;
		}
		for (int i = 0; i < n; i++) {
			uint64_t seq = comp[i].id - id0;
			if (comp[i].status)
				o->failed++;
			if (!s->check)
				o->verified++;
			else if (s->check(s->ctx, seq, comp[i].status,
					  comp[i].result, comp[i].len))
				o->verified++;
			else {
				o->bad++;
				note(o, "wrong result", seq);
			}
		}
		done += (uint64_t)n;
		if (n > 0)
			progressed = 1;
		if (progressed) {
			last_progress = now_s();
		} else {
			if (now_s() - last_progress >
			    (s->stall_ms ? s->stall_ms : 10000) / 1e3) {
				rc = GPUQ_ETIMEDOUT;
				note(o, "no progress", done);
				break;
			}
			sched_yield();
		}
	}
	o->seconds = now_s() - t0;
	o->sent += sent;
out:
	free(stage);
	free(iov);
	free(lens);
	free(ids);
	return rc;
}
