// gpu_producer.cu - a GPU producer for check_gpu: payloads that live in
// device memory go straight into the queue's VRAM ring (device-to-device
// copies through the CUDA IPC handle) and are committed through the
// control block, without a host copy.  Results are checked against the
// independent reference CRC32C (bench/reference.h), not the handler's code.
#include <cuda_runtime.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

extern "C" {
#include "libclient/gpuq.h"
}
#include "bench/reference.h"
#include "tests/gpu_producer.h"

#define PAYLOAD 256

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct gp {
	gpuq_client *c;
	gpuq_queue *q;
	uint8_t *ring, *dev, *host;
	cudaStream_t stream;
	uint64_t *ids;
};

#define FAIL(...)                                                    \
	do {                                                         \
		snprintf(err, errcap, __VA_ARGS__);                  \
		goto out;                                            \
	} while (0)

// Reserve a batch, copy each payload from device memory into the VRAM
// ring, wait for the copies, commit.  Returns 0 or a message in err.
static int send_batch(struct gp *g, int first, int count, char *err,
		      size_t errcap)
{
	gpuq_loan loan;
	uint32_t lens[1024];
	int rc = gpuq_reserve(g->q, (uint32_t)count, &loan, 10000);
	if (rc) {
		snprintf(err, errcap, "reserve: %s", gpuq_strerror(rc));
		return -1;
	}
	// Consecutive tickets sit slot_stride apart in the VRAM ring until it
	// wraps, so each run of them is one strided copy, not one per message
	// (without MPS every copy waits for a time slice beside gpuqd's kernel).
	for (int i = 0; i < count;) {
		int64_t off = gpuq_vram_offset(g->q, &loan, (uint32_t)i), next;
		int run = 1;
		size_t pitch = 0;
		if (off < 0) {
			snprintf(err, errcap, "vram_offset: %s",
				 gpuq_strerror((int)off));
			return -1;
		}
		if (i + 1 < count) {
			next = gpuq_vram_offset(g->q, &loan, (uint32_t)i + 1);
			pitch = next > off ? (size_t)(next - off) : 0;
		}
		while (pitch && i + run < count &&
		       gpuq_vram_offset(g->q, &loan, (uint32_t)(i + run)) ==
			       off + (int64_t)(pitch * run))
			run++;
		if (cudaMemcpy2DAsync(g->ring + off, pitch ? pitch : PAYLOAD,
				      g->dev + (size_t)(first + i) * PAYLOAD,
				      PAYLOAD, PAYLOAD, (size_t)run,
				      cudaMemcpyDeviceToDevice,
				      g->stream) != cudaSuccess) {
			snprintf(err, errcap, "cudaMemcpy2DAsync D2D failed");
			return -1;
		}
		for (int k = i; k < i + run; k++) {
			lens[k] = PAYLOAD;
			g->ids[first + k] = loan.first_id + (uint64_t)k;
		}
		i += run;
	}
	if (cudaStreamSynchronize(g->stream) != cudaSuccess) {
		snprintf(err, errcap, "cudaStreamSynchronize failed");
		return -1;
	}
	rc = gpuq_commit_device(g->q, &loan, lens);
	if (rc) {
		snprintf(err, errcap, "commit_device: %s", gpuq_strerror(rc));
		return -1;
	}
	return 0;
}

// Wait for message i's result and check it against the reference CRC.
static int check_result(struct gp *g, int i, char *err, size_t errcap)
{
	uint8_t res[16];
	size_t got = 0;
	int st = gpuq_wait(g->q, g->ids[i], res, sizeof(res), &got, 20000);
	if (ref_crc_result_ok(g->host + (size_t)i * PAYLOAD, PAYLOAD, st, res,
			      got))
		return 0;
	snprintf(err, errcap, "message %d: %s, result %zu bytes, wrong or missing",
		 i, gpuq_err_name(st), got);
	return -1;
}

extern "C" int gpu_producer_run(const char *socket, const char *queue, int n,
				int batch, double *msgs_per_s, char *err,
				size_t errcap)
{
	struct gp g;
	unsigned char h[64];
	cudaIpcMemHandle_t ih;
	gpuq_queue_info info;
	int rc = -1, done = 0;
	double t0;
	memset(&g, 0, sizeof(g));
	if (batch > 1024)
		batch = 1024;
	if (gpuq_connect(socket, &g.c) || gpuq_open(g.c, queue, &g.q))
		FAIL("cannot attach to %s on %s", queue, socket);
	if (gpuq_vram_handle(g.q, h, sizeof(h)) != (int)sizeof(h))
		FAIL("queue %s has no VRAM ring handle", queue);
	memcpy(&ih, h, sizeof(ih));
	if (cudaIpcOpenMemHandle((void **)&g.ring, ih,
				 cudaIpcMemLazyEnablePeerAccess) != cudaSuccess)
		FAIL("cudaIpcOpenMemHandle failed");
	g.host = (uint8_t *)malloc((size_t)n * PAYLOAD);
	g.ids = (uint64_t *)calloc((size_t)n, sizeof(uint64_t));
	if (!g.host || !g.ids)
		FAIL("out of memory");
	ref_fill(g.host, (size_t)n * PAYLOAD, (uint64_t)time(NULL));
	if (cudaMalloc((void **)&g.dev, (size_t)n * PAYLOAD) != cudaSuccess ||
	    cudaMemcpy(g.dev, g.host, (size_t)n * PAYLOAD,
		       cudaMemcpyHostToDevice) != cudaSuccess ||
	    cudaStreamCreateWithFlags(&g.stream, cudaStreamNonBlocking) !=
		    cudaSuccess)
		FAIL("device buffers could not be set up");
	if (gpuq_queue_info_get(g.q, &info))
		FAIL("gpuq_queue_info_get failed");
	if ((uint32_t)batch > info.cq_capacity)
		batch = (int)info.cq_capacity;
	t0 = now_s();
	// Read the oldest results whenever the next batch would leave more
	// than cq_capacity unread (the client refuses it with ECQFULL).
	for (int i = 0; i < n; i += batch) {
		int count = n - i < batch ? n - i : batch;
		while (i + count - done > (int)info.cq_capacity)
			if (check_result(&g, done++, err, errcap))
				goto out;
		if (send_batch(&g, i, count, err, errcap))
			goto out;
	}
	while (done < n)
		if (check_result(&g, done++, err, errcap))
			goto out;
	if (msgs_per_s)
		*msgs_per_s = n / (now_s() - t0);
	rc = 0;
out:
	if (g.stream)
		cudaStreamDestroy(g.stream);
	if (g.dev)
		cudaFree(g.dev);
	if (g.ring)
		cudaIpcCloseMemHandle(g.ring);
	free(g.host);
	free(g.ids);
	if (g.q)
		gpuq_close(g.q);
	if (g.c)
		gpuq_disconnect(g.c);
	return rc;
}
