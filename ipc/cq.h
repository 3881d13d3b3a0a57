/*
 * cq.h - completion entries, written and read in the queue's format.
 *
 * Every host-side writer of a completion entry (the CPU backend's workers,
 * the broker failing a dead consumer's messages) and every reader (the
 * client library, Track A) goes through here, so the two formats of
 * layout.h's struct ipc_cq_entry live in one place.  The GPU kernels write
 * the same formats in gpu/consume.cuh (copy_out).
 *
 * Why a stamped format.  A plain entry needs its result visible before its
 * done word, which on the GPU takes a system fence: a PCIe round trip
 * (about 0.9 us) on every message's path, and once per round on a busy
 * queue.  A stamped entry proves itself chunk by chunk (stamp.h), so the
 * consumer writes it in one go with no fence, and the reader gathers the
 * result out of the chunks instead of using it in place.
 */
#ifndef GPUQ_IPC_CQ_H
#define GPUQ_IPC_CQ_H

#include <stdint.h>
#include <string.h>

#include "ipc/atomics.h"
#include "ipc/ring.h"
#include "ipc/stamp.h"

/* How a message ended, as its completion entry reports it.  worker is
 * UINT32_MAX where no worker ran it (IPC_CQ_NO_WORKER in the entry). */
struct ipc_outcome {
	int32_t status;
	uint32_t len;
	uint32_t attempts;
	uint32_t worker;
	uint64_t seq;
};

/*
 * Publish id's outcome in its entry e, with o->len result bytes at result.
 * On a plain queue result may be e + 1 itself (the CPU backend's handlers
 * write there in place); a stamped entry is written from a separate buffer.
 */
static inline void ipc_cq_publish(const struct ipc_ring *r,
				  struct ipc_cq_entry *e, uint64_t id,
				  const struct ipc_outcome *o,
				  const void *result)
{
	struct ipc_cq_entry h;
	memset(&h, 0, sizeof(h));
	h.done = id + 1;
	h.status = o->status;
	h.len = o->len;
	h.seq = o->seq;
	h.attempts = (uint16_t)o->attempts;
	h.worker = o->worker >= IPC_CQ_NO_WORKER ? IPC_CQ_NO_WORKER
						 : (uint16_t)o->worker;
#if IPC_HAVE_STAMPS
	if (r->hdr->cq_stamped) {
		h.stamp = ipc_stamp(id);
		ipc_stamp_write(e + 1, result, o->len, h.stamp);
		ipc_chunk_store((uint8_t *)e + 16, (const uint8_t *)&h + 16);
		ipc_chunk_store(e, &h);
		return;
	}
#else
	(void)r;
#endif
	if (o->len && result != (const void *)(e + 1))
		memcpy(e + 1, result, o->len);
	e->status = h.status;
	e->len = h.len;
	e->seq = h.seq;
	e->attempts = h.attempts;
	e->worker = h.worker;
	e->stamp = 0;
	ipc_store_release(&e->done, h.done);
}

#if IPC_HAVE_STAMPS
/* A stamped entry's header into *h, each chunk from one load: 1 if both
 * chunks are id's and the length it gives is in range. */
static inline int cq_stamped_hdr(const struct ipc_ring *r,
				 const struct ipc_cq_entry *e, uint64_t id,
				 struct ipc_cq_entry *h)
{
	ipc_chunk_load(h, e);
	if (h->done != id + 1)
		return 0;
	ipc_chunk_load((uint8_t *)h + 16, (const uint8_t *)e + 16);
	return h->stamp == ipc_stamp(id) && h->len <= r->hdr->result_bytes;
}
#endif

/*
 * 1 if id's entry e is complete: *o is its outcome and *result its result
 * bytes, in place on a plain queue and gathered into buf (result_bytes of
 * room) on a stamped one.  0 if it is not complete yet.
 */
static inline int ipc_cq_read(const struct ipc_ring *r,
			      const struct ipc_cq_entry *e, uint64_t id,
			      struct ipc_outcome *o, const uint8_t **result,
			      uint8_t *buf)
{
	struct ipc_cq_entry h;
#if IPC_HAVE_STAMPS
	if (r->hdr->cq_stamped) {
		if (!cq_stamped_hdr(r, e, id, &h) ||
		    !ipc_stamp_gather(buf, e + 1, h.len, h.stamp))
			return 0;
		*result = buf;
		goto out;
	}
#else
	(void)buf;
#endif
	if (ipc_load_acquire(&e->done) != id + 1)
		return 0;
	memcpy(&h, e, sizeof(h));
	*result = (const uint8_t *)(e + 1);
#if IPC_HAVE_STAMPS
out:
#endif
	o->status = h.status;
	o->len = h.len;
	o->attempts = h.attempts;
	o->worker = h.worker == IPC_CQ_NO_WORKER ? UINT32_MAX : h.worker;
	o->seq = h.seq;
	return 1;
}

/* 1 if id's entry e is complete; for a writer that must not overwrite a
 * finished entry (the broker failing a dead consumer's messages). */
static inline int ipc_cq_done(const struct ipc_ring *r,
			      const struct ipc_cq_entry *e, uint64_t id)
{
#if IPC_HAVE_STAMPS
	if (r->hdr->cq_stamped) {
		struct ipc_cq_entry h;
		return cq_stamped_hdr(r, e, id, &h) &&
		       ipc_stamp_check(e + 1, h.len, h.stamp);
	}
#else
	(void)r;
#endif
	return ipc_load_acquire(&e->done) == id + 1;
}

/* Make entry e unable to pass for any id of the next client of its
 * index (ids start again at 0): done cleared, and on a stamped queue every
 * stamp it holds as well, since the next client's id may equal the last
 * one's and a chunk still holding that stamp would pass a torn read. */
static inline void ipc_cq_scrub(const struct ipc_ring *r,
				struct ipc_cq_entry *e)
{
	e->done = 0;
	if (r->hdr->cq_stamped) {
		uint32_t len = e->len < r->hdr->result_bytes ? e->len
							     : r->hdr->result_bytes;
		uint8_t *c = (uint8_t *)(e + 1) + IPC_STAMP_DATA;
		e->stamp = 0;
		for (uint32_t j = 0; j < ipc_stamp_chunks(len); j++)
			memset(c + (size_t)j * IPC_STAMP_CHUNK, 0, 4);
	}
}

#endif
