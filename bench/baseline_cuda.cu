// baseline_cuda.cu - baseline (b), the predecessor's design: a producer
// with its own CUDA context copies every message into VRAM with its own
// cudaMemcpyAsync, launches the handler kernel on it, and copies the result
// back.  One event per send call tells the loop when its messages are done.
//
// This is the design gpuq replaced (design.md §2): next to a running
// persistent kernel the contexts time-slice, and small copies crawl.  The
// baseline measures exactly that when gpuqd's CUDA backend is up.
#include <cuda_runtime.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "config.h"
#include "bench/baseline_cuda.h"
#include "libclient/gpuq.h"
}
#include "broker/handlers.h"

#define A16(x) (((size_t)(x) + 15) & ~(size_t)15)

// The result record the kernel writes and the host reads back.
struct rec {
	int32_t status;
	uint32_t len;
	uint64_t seq;
};

struct cudabase {
	struct cudabase_conf conf;
	cudaStream_t stream;
	uint8_t *h_in, *d_in;   // window payload slots, pinned / VRAM
	uint8_t *h_out, *d_out; // window result records
	size_t in_stride, out_stride;
	uint32_t res_cap;
	cudaEvent_t *ev;        // one per send call, in order
	uint64_t *ev_end;       // seq just past that call's messages
	uint32_t nev;
	uint64_t ev_head, ev_tail;
	uint64_t sent, done, ready; // ready: every seq below has completed
	int failed;
	char err[160];
};

// Every runtime call goes through here, so a failure names the call.
#define CUDA_CALL(b, call)                                                    \
	({                                                                    \
		cudaError_t e_ = (call);                                      \
		if (e_ != cudaSuccess && !(b)->err[0])                        \
			snprintf((b)->err, sizeof((b)->err), "%s: %s", #call, \
				 cudaGetErrorString(e_));                     \
		e_;                                                           \
	})

static __global__ void handle_one(const uint8_t *in, uint32_t len, uint64_t seq,
			   uint8_t *out, uint32_t handler, uint32_t cap)
{
	struct gpuq_hmsg m;
	struct gpuq_hres r;
	struct rec h;
	memset(&m, 0, sizeof(m));
	m.data = in;
	m.len = len;
	m.id = seq;
	r.data = out + sizeof(struct rec);
	r.cap = cap;
	r.len = 0;
	h.status = gpuq_handler_run(handler, &m, &r) ? GPUQ_EHANDLER : 0;
	h.len = h.status ? 0 : r.len;
	h.seq = seq;
	memcpy(out, &h, sizeof(h));
}

static uint32_t result_cap(uint32_t handler, uint32_t size)
{
	if (handler == GPUQ_H_ECHO)
		return size;
	return handler == GPUQ_H_CHECKSUM ? 4 : sizeof(struct gpuq_vector_result);
}

static int alloc_all(struct cudabase *b)
{
	size_t w = b->conf.window;
	if (CUDA_CALL(b, cudaStreamCreateWithFlags(&b->stream, cudaStreamNonBlocking)) ||
	    CUDA_CALL(b, cudaHostAlloc((void **)&b->h_in, w * b->in_stride, cudaHostAllocDefault)) ||
	    CUDA_CALL(b, cudaHostAlloc((void **)&b->h_out, w * b->out_stride, cudaHostAllocDefault)) ||
	    CUDA_CALL(b, cudaMalloc((void **)&b->d_in, w * b->in_stride)) ||
	    CUDA_CALL(b, cudaMalloc((void **)&b->d_out, w * b->out_stride)))
		return -EIO;
	b->ev = (cudaEvent_t *)calloc(b->nev, sizeof(*b->ev));
	b->ev_end = (uint64_t *)calloc(b->nev, sizeof(*b->ev_end));
	if (!b->ev || !b->ev_end)
		return -ENOMEM;
	for (uint32_t i = 0; i < b->nev; i++)
		if (CUDA_CALL(b, cudaEventCreateWithFlags(&b->ev[i], cudaEventDisableTiming)))
			return -EIO;
	return 0;
}

extern "C" int cudabase_open(const struct cudabase_conf *c,
			     struct cudabase **out, char *err, size_t errcap)
{
	struct cudabase *b = (struct cudabase *)calloc(1, sizeof(*b));
	int n = 0, rc;
	cudaError_t e;
	*out = b;
	if (!b)
		return -ENOMEM;
	b->conf = *c;
	b->nev = c->window;
	b->in_stride = A16(c->size);
	b->res_cap = result_cap(c->handler, c->size);
	b->out_stride = sizeof(struct rec) + A16(b->res_cap);
	e = cudaGetDeviceCount(&n);
	if (e != cudaSuccess || n == 0) {
		snprintf(err, errcap, "no CUDA device (%s)",
			 e != cudaSuccess ? cudaGetErrorString(e) : "none found");
		return -ENODEV;
	}
	// cudaFree(0) creates the context now, inside the timed setup.
	if (CUDA_CALL(b, cudaSetDevice(0)) || CUDA_CALL(b, cudaFree(0)))
		rc = -EIO;
	else
		rc = alloc_all(b);
	if (rc)
		snprintf(err, errcap, "%s", b->err[0] ? b->err : "out of memory");
	return rc;
}

// One message: its own copy in, its own kernel, its own copy out.
static int one(struct cudabase *b, uint64_t seq)
{
	size_t s = (size_t)(seq % b->conf.window);
	uint8_t *hin = b->h_in + s * b->in_stride;
	uint8_t *din = b->d_in + s * b->in_stride;
	uint8_t *dout = b->d_out + s * b->out_stride;
	size_t len = b->conf.fill(b->conf.fill_ctx, seq, hin, b->conf.size);
	if (CUDA_CALL(b, cudaMemcpyAsync(din, hin, len, cudaMemcpyHostToDevice, b->stream)))
		return -EIO;
	handle_one<<<1, 1, 0, b->stream>>>(din, (uint32_t)len, seq, dout,
					   b->conf.handler, b->res_cap);
	if (CUDA_CALL(b, cudaMemcpyAsync(b->h_out + s * b->out_stride, dout,
					 b->out_stride, cudaMemcpyDeviceToHost,
					 b->stream)))
		return -EIO;
	return 0;
}

extern "C" int cudabase_send(void *ctx, uint64_t seq, uint32_t k,
			     const uint64_t *stamp, struct proc_result *o)
{
	struct cudabase *b = (struct cudabase *)ctx;
	uint32_t i;
	(void)stamp;
	/* Each run of the loop (the untimed warm-up, then the timed one)
	 * numbers its messages from 0 again: start this run's counters over,
	 * or completions would be reported against the previous run's
	 * numbers and never match. */
	if (seq == 0 && b->sent) {
		if (CUDA_CALL(b, cudaStreamSynchronize(b->stream)))
			goto fail;
		b->sent = b->done = b->ready = 0;
		b->ev_head = b->ev_tail = 0;
	}
	/* An event per message, as the predecessor synchronised per message:
	 * next to a persistent kernel each operation waits for a GPU time
	 * slice, and per-message events let even that slow rate be
	 * measured rather than look like no progress at all. */
	for (i = 0; i < k && b->ev_head - b->ev_tail < b->nev; i++) {
		uint32_t e = (uint32_t)(b->ev_head % b->nev);
		if (one(b, seq + i) || CUDA_CALL(b, cudaPeekAtLastError()) ||
		    CUDA_CALL(b, cudaEventRecord(b->ev[e], b->stream)))
			goto fail;
		b->ev_end[e] = seq + i + 1;
		b->ev_head++;
	}
	b->sent = seq + i;
	return (int)i;
fail:
	loop_note(o, b->err, seq);
	return -EIO;
}

// Advance b->ready past every send call whose event has fired.
static int advance(struct cudabase *b)
{
	while (b->ev_tail < b->ev_head) {
		uint32_t e = (uint32_t)(b->ev_tail % b->nev);
		cudaError_t r = cudaEventQuery(b->ev[e]);
		if (r == cudaErrorNotReady)
			return 0;
		if (CUDA_CALL(b, r))
			return -EIO;
		b->ready = b->ev_end[e];
		b->ev_tail++;
	}
	return 0;
}

extern "C" int cudabase_poll(void *ctx, struct loop_done *d, uint32_t max,
			     struct proc_result *o)
{
	struct cudabase *b = (struct cudabase *)ctx;
	uint32_t n = 0;
	if (b->done == b->ready && advance(b)) {
		loop_note(o, b->err, b->done);
		return -EIO;
	}
	for (; n < max && b->done < b->ready; n++, b->done++) {
		const uint8_t *p = b->h_out + (size_t)(b->done % b->conf.window) * b->out_stride;
		struct rec h;
		memcpy(&h, p, sizeof(h));
		d[n].seq = b->done;
		d[n].status = h.status;
		d[n].len = h.len;
		d[n].res = p + sizeof(h);
	}
	return (int)n;
}

extern "C" void cudabase_close(struct cudabase *b)
{
	if (!b)
		return;
	if (b->stream)
		cudaStreamSynchronize(b->stream);
	for (uint32_t i = 0; b->ev && i < b->nev; i++)
		if (b->ev[i])
			cudaEventDestroy(b->ev[i]);
	cudaFree(b->d_in);
	cudaFree(b->d_out);
	cudaFreeHost(b->h_in);
	cudaFreeHost(b->h_out);
	if (b->stream)
		cudaStreamDestroy(b->stream);
	free(b->ev);
	free(b->ev_end);
	free(b);
}
