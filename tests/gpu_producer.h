/* gpu_producer.h - the GPU-producer side of check_gpu, built with nvcc
 * (tests/gpu_producer.cu) because it uses the CUDA runtime itself. */
#ifndef GPUQ_TESTS_GPU_PRODUCER_H
#define GPUQ_TESTS_GPU_PRODUCER_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * In this process, with its own CUDA context: make n 256-byte payloads in
 * device memory, put each into queue's VRAM ring with a device-to-device
 * copy (batches of batch), commit them with gpuq_commit_device, then read
 * every result and check it is the payload's CRC32C (the queue must run
 * the checksum handler).  Returns 0, or -1 with the reason in err.
 * *msgs_per_s gets the rate from the first reserve to the last result.
 */
int gpu_producer_run(const char *socket, const char *queue, int n, int batch,
		     double *msgs_per_s, char *err, size_t errcap);

#ifdef __cplusplus
}
#endif

#endif
